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

@main
struct MCPBouncer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp-bouncer",
        abstract: "An OAuth 2.1 resource-server gateway for MCP servers.",
        version: MCPBouncerVersion.current,
        subcommands: [Demo.self, Run.self, Check.self, Audit.self, Pin.self, Sessions.self, Probe.self, Init.self]
    )
}

/// Reads `${env:...}` from the process environment and `${file:...}` from disk.
let processSecrets = PolicyFile.secrets(environment: { ProcessInfo.processInfo.environment[$0] })

/// The policy and the files it names, read as `check`, `run` and a reload read it. Problems are
/// printed `file:line:column: key.path: message` on standard error, then the command fails.
func loadPolicy(_ path: String) throws -> (policy: GatewayPolicy, files: [String]) {
    do {
        return try PolicyFile(path: path).load()
    } catch {
        var stderr = FileHandle.standardError
        if case .invalid(let invalid) = error {
            print("\(path): \(invalid.problems.count) problem\(invalid.problems.count == 1 ? "" : "s")", to: &stderr)
            for problem in invalid.problems { print("\(path):\(problem)", to: &stderr) }
        } else {
            for problem in error.problems { print("\(path): \(problem)", to: &stderr) }
        }
        throw ExitCode(1)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a policy file and report every problem with its line and key path.")

    @Argument(help: "The policy file.")
    var file: String

    func run() throws {
        let policy = try loadPolicy(self.file).policy
        do {
            // Certificates, keys and CA files are loaded exactly as `run` would, so a key that
            // does not match its certificate fails here, not at 3 a.m.
            _ = try GatewayTLSContexts.load(policy, logger: Logger(label: "mcp-bouncer"))
            var stderr = FileHandle.standardError
            for warning in policy.warnings { print("\(self.file):\(warning) (warning)", to: &stderr) }
            print("\(self.file): OK\(policy.warnings.isEmpty ? "" : " with \(policy.warnings.count) warning\(policy.warnings.count == 1 ? "" : "s")")")
            print("  listen \(policy.listen), public URL \(policy.publicURL)")
            for resource in policy.resources {
                print("  \(resource.uri) -> \(resource.upstream) (authorization server \(resource.authorizationServer))")
            }
        } catch {
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

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        self.write(Data(string.utf8))
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a legacy MCP server, a development authorization server and mcp-bouncer in front, on 127.0.0.1.",
        discussion: "The authorization server started here is for development only; `run` refuses to trust it."
    )

    @Flag(help: "Run the walkthrough: every step's request and outcome, then exit (non-zero if a step fails).")
    var scenario = false

    @Option(help: "The gateway's port (0: a free one).")
    var port: Int = 0

    @Option(name: .long, help: "Log level of the gateway (its decisions are logged at info).")
    var logLevel: String = "warning"

    func run() async throws {
        let level = Logger.Level(rawValue: self.logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "mcp-bouncer")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let environment = try await DemoEnvironment.start(group: group, gatewayPort: self.port, logger: logger)
        say("""
            mcp-bouncer demo (the authorization server here is DEVELOPMENT-ONLY and auto-approves everything)
              legacy MCP server, no auth:  \(environment.upstreamURL)/mcp
              authorization server:        \(environment.issuer)
              mcp-bouncer in front:        \(environment.resourceURL)

            """)
        if self.scenario {
            let steps = await DemoScenario(environment: environment, group: group, print: { say($0) }).run()
            await environment.stop()
            try await group.shutdownGracefully()
            let passed = steps.count == DemoScenario.stepCount && steps.allSatisfy(\.passed)
            say(passed ? "All \(DemoScenario.stepCount) steps behaved as expected." : "A step did not behave as expected.")
            if !passed { throw ExitCode(1) }
            return
        }
        let client = environment.walkthroughClient
        say("""
            Try it (Ctrl-C to stop):

              # 1. No token: 401 and where to find out more
              curl -si -X POST \(environment.resourceURL) -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

              # 2. The protected resource metadata named in the challenge
              curl -s \(environment.gatewayURL)/.well-known/oauth-protected-resource/mcp

              # 3. A token bound to this server (RFC 8707 resource), read scope only
              TOKEN=$(curl -s -u \(client.id):\(client.secret) \(environment.issuer)/token -d grant_type=client_credentials -d scope=jira:read -d resource=\(environment.resourceURL) | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')

              # 4. Allowed, then refused for lack of jira:write (403 with scope="jira:write")
              curl -s -X POST \(environment.resourceURL) -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_issues","arguments":{}}}'
              curl -si -X POST \(environment.resourceURL) -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"create_issue","arguments":{"title":"x"}}}'

              # 5. Change a tool after it was approved (rug pull), then list the tools again: export_issues is gone
              kill -USR1 \(ProcessInfo.processInfo.processIdentifier)

              # Or let mcp-bouncer run every step and check it: mcp-bouncer demo --scenario
            """)
        // SIGUSR1 changes export_issues's description, as a server that turned malicious would.
        signal(SIGUSR1, SIG_IGN)
        // The demo's policy is embedded: there is nothing to reload, and SIGHUP must not end it.
        signal(SIGHUP, SIG_IGN)
        let rugPull = DispatchSource.makeSignalSource(signal: SIGUSR1)
        let server = environment.mcpServer
        rugPull.setEventHandler {
            server.rugPull()
            say("export_issues's description changed (rug pull): the gateway now hides it and refuses its calls")
        }
        rugPull.resume()
        defer { rugPull.cancel() }
        let service = DemoService(environment: environment)
        let serviceGroup = ServiceGroup(configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await serviceGroup.run()
        say("\nstopped")
        try await group.shutdownGracefully()
    }
}

/// Keeps the demo up until SIGINT/SIGTERM, then closes its listeners.
struct DemoService: Service {
    let environment: DemoEnvironment

    func run() async throws {
        try? await gracefulShutdown()
        await self.environment.stop()
    }
}

/// Writes a line to standard output unbuffered, so a script or a test reading the pipe sees it
/// at once.
func say(_ text: String) {
    FileHandle.standardOutput.write(text + "\n")
}
