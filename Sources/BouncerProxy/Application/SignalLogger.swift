import BouncerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// Traps the signals an operator or logrotate habitually sends that no other service handles,
/// so that none of them ends the process (their default action): SIGHUP without a policy file
/// or certificate to reload, SIGUSR1 without an audit file to reopen. Each is logged.
struct SignalLogger: Service {
    let handlesSIGHUP: Bool
    let handlesSIGUSR1: Bool
    let logger: Logger

    func run() async throws {
        var trapped: [UnixSignal] = []
        if !self.handlesSIGHUP { trapped.append(.sighup) }
        if !self.handlesSIGUSR1 { trapped.append(.sigusr1) }
        guard !trapped.isEmpty else {
            try? await gracefulShutdown()
            return
        }
        for await signal in await UnixSignalsSequence(trapping: trapped).cancelOnGracefulShutdown() {
            if signal == .sighup {
                self.logger.notice("SIGHUP: nothing to reload (the policy did not come from a file, and there is no TLS certificate)")
            } else {
                self.logger.notice("SIGUSR1: no audit file to reopen")
            }
        }
    }
}
