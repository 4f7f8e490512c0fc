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
import UnixSignals
import BouncerDevServer

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
