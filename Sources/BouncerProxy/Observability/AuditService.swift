import BouncerCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// Runs the audit trail's writer for the life of the gateway: SIGUSR1 reopens the file
/// (logrotate); graceful shutdown writes `stop` and the last checkpoint, after the server has
/// finished its requests (the service group stops services in reverse order, and this one is
/// first).
struct AuditService: Service {
    let trail: AuditTrail
    let startDetails: [String: JSONValue]
    let logger: Logger

    func run() async throws {
        self.trail.start(details: self.startDetails)
        let signals = await UnixSignalsSequence(trapping: .sigusr1)
        for await _ in signals.cancelOnGracefulShutdown() {
            self.logger.notice("SIGUSR1: reopening the audit file", metadata: ["file": "\(self.trail.settings.file)"])
            self.trail.reopen()
        }
        self.trail.stop()
    }
}
