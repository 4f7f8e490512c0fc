import ArgumentParser
import BouncerCore
import BouncerProxy
import BouncerTLS
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

@main
struct MCPBouncer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp-bouncer",
        abstract: "An OAuth 2.1 resource-server gateway for MCP servers.",
        subcommands: [Run.self, Check.self]
    )
}

/// Reads `${env:...}` from the process environment and `${file:...}` from disk.
let processSecrets = SecretSource(
    environment: { ProcessInfo.processInfo.environment[$0] },
    readFile: { path in
        do {
            return .success(try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            return .failure(SecretReadError(reason: (error as NSError).localizedDescription))
        }
    }
)

func loadPolicy(_ path: String) throws -> GatewayPolicy {
    let text: String
    do {
        text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw ValidationError("cannot read \(path): \((error as NSError).localizedDescription)")
    }
    return try PolicyLoader.load(yaml: text, secrets: processSecrets)
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a policy file and report every problem with its line and key path.")

    @Argument(help: "The policy file.")
    var file: String

    func run() throws {
        do {
            let policy = try loadPolicy(self.file)
            // Certificates, keys and CA files are loaded exactly as `run` would, so a key that
            // does not match its certificate fails here, not at 3 a.m.
            _ = try GatewayTLSContexts.load(policy, logger: Logger(label: "mcp-bouncer"))
            print("\(self.file): OK")
            print("  listen \(policy.listen), public URL \(policy.publicURL)")
            for resource in policy.resources {
                print("  \(resource.uri) -> \(resource.upstream) (authorization server \(resource.authorizationServer))")
            }
        } catch let error as PolicyValidationError {
            var stderr = FileHandle.standardError
            print("\(self.file): \(error.problems.count) problem\(error.problems.count == 1 ? "" : "s")", to: &stderr)
            for problem in error.problems {
                print("\(self.file):\(problem)", to: &stderr)
            }
            throw ExitCode(1)
        } catch let error as TLSLoadErrors {
            var stderr = FileHandle.standardError
            print("\(self.file): \(error.errors.count) TLS problem\(error.errors.count == 1 ? "" : "s")", to: &stderr)
            for problem in error.errors { print("\(self.file):\(problem)", to: &stderr) }
            throw ExitCode(1)
        }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway with a policy file.")

    @Option(name: .long, help: "The policy file.")
    var config: String

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Event loop threads (default: one per core).")
    var threads: Int = System.coreCount

    func run() async throws {
        guard let level = Logger.Level(rawValue: self.logLevel) else {
            throw ValidationError("unknown log level \(self.logLevel)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mcp-bouncer")
        let policy: GatewayPolicy
        do {
            policy = try loadPolicy(self.config)
        } catch let error as PolicyValidationError {
            var stderr = FileHandle.standardError
            for problem in error.problems { print("\(self.config):\(problem)", to: &stderr) }
            throw ExitCode(1)
        }
        let tls: GatewayTLSContexts
        do {
            tls = try GatewayTLSContexts.load(policy, logger: logger)
        } catch {
            var stderr = FileHandle.standardError
            for problem in error.errors { print("\(self.config):\(problem)", to: &stderr) }
            throw ExitCode(1)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, self.threads))
        let timeout = TimeAmount.seconds(policy.limits.authorizationServerTimeoutSeconds)
        let fetcher = HTTPFetcher(group: group, connectTimeout: timeout, responseTimeout: timeout)
        let gateway = Gateway(policy: policy, fetcher: fetcher, tls: tls, logger: logger)
        let server = GatewayServer(gateway: gateway, group: group) { address in
            // A machine-readable line for scripts that start the gateway on port 0.
            FileHandle.standardOutput.write("mcp-bouncer listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)\n")
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: server)]
        if let settings = policy.tls, let box = tls.server {
            services.append(.init(service: TLSReloader(settings: settings, box: box, logger: logger)))
        }
        let serviceGroup = ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await serviceGroup.run()
        try await group.shutdownGracefully()
    }
}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        self.write(Data(string.utf8))
    }
}
