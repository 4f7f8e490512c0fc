import ArgumentParser
import BouncerCore
import BouncerDemo
import BouncerProxy
import BouncerTLS
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway with a policy file.")

    @Option(name: .long, help: "The policy file.")
    var config: String

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical. Per-request decisions are logged at debug; the audit trail records them.")
    var logLevel: String = "info"

    @Option(name: .long, help: "text, or json (one object per line, for log shippers).")
    var logFormat: String = "text"

    @Option(name: .long, help: "Event loop threads (default: one per core).")
    var threads: Int = System.coreCount

    @Flag(name: .long, help: "Reload the policy when its file, or any file it names, changes (noticed within 5 s; files replaced by rename, as Kubernetes does with ConfigMaps, count). SIGHUP reloads it in any case.")
    var watch = false

    func run() async throws {
        guard let level = Logger.Level(rawValue: self.logLevel) else {
            throw ValidationError("unknown log level \(self.logLevel)")
        }
        guard let format = LogFormat(rawValue: self.logFormat) else {
            throw ValidationError("unknown log format \(self.logFormat) (text or json)")
        }
        format.bootstrap(level: level)
        let logger = Logger(label: "mcp-bouncer")
        let (policy, files) = try loadPolicy(self.config)
        let application: GatewayApplication
        do {
            application = try GatewayApplication(
                policy: policy, threads: self.threads, reload: (PolicyFile(path: self.config), files, self.watch), logger: logger,
                // Machine-readable lines for scripts that start the gateway on port 0.
                onListening: { address in say("mcp-bouncer listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)") },
                onAdminListening: { address in say("mcp-bouncer admin listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)") }
            )
        } catch let error as TLSLoadErrors {
            var stderr = FileHandle.standardError
            for problem in error.errors { print("\(self.config):\(problem)", to: &stderr) }
            throw ExitCode(1)
        } catch let error as AuditSinkError {
            var stderr = FileHandle.standardError
            print("\(self.config): audit.file: \(error.reason)", to: &stderr)
            throw ExitCode(1)
        }
        try await application.run()
    }
}
