import BouncerCore
import BouncerDevServer
import BouncerProxy
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The three processes of the demo, in one: the development authorization server, the legacy
/// MCP server (no auth) and mcp-bouncer in front of it, all on 127.0.0.1.
package final class DemoEnvironment: Sendable {
    package let authorizationServer: DevAuthorizationServer
    package let mcpServer: DemoMCPServer
    package let gateway: Gateway
    package let issuer: String
    package let upstreamURL: String
    package let gatewayURL: String
    /// A confidential client the walkthrough uses for its token requests.
    package let walkthroughClient: (id: String, secret: String)
    private let channels: [any Channel]
    private let group: any EventLoopGroup

    package var resourceURL: String { self.gatewayURL + "/mcp" }
    /// A resource the development server also issues tokens for: another MCP server.
    package static let otherResource = "https://other-server.example/mcp"

    /// Starts everything. `gatewayPort` 0 picks a free port.
    package static func start(group: any EventLoopGroup, gatewayPort: Int = 0, logger: Logger) async throws -> DemoEnvironment {
        let gatewayPort = gatewayPort == 0 ? try Self.freePort() : gatewayPort
        let gatewayURL = "http://127.0.0.1:\(gatewayPort)"
        let scopes = ["jira:read", "jira:write", "jira:admin"]
        let authorizationServer = try DevAuthorizationServer(audiences: [
            .init(name: gatewayURL + "/mcp", scopes: scopes),
            .init(name: Self.otherResource, scopes: scopes),
            .init(name: "demo-upstream", scopes: scopes),
        ])
        let asChannel = try await DevHTTPServer(group: group, handler: authorizationServer.handle).bind(host: "127.0.0.1", port: 0).get()
        let issuer = "http://127.0.0.1:\(asChannel.localAddress!.port!)"
        authorizationServer.issuer = issuer
        logger.warning("development-only authorization server started: it auto-approves every request and must never protect anything real", metadata: ["issuer": "\(issuer)"])
        let gatewaySecret = DevAuthorizationServer.random()
        authorizationServer.registerClient(id: "mcp-bouncer-demo", secret: gatewaySecret, scope: scopes, grantTypes: [TokenType.grantType, "client_credentials"])
        let walkthroughSecret = DevAuthorizationServer.random()
        authorizationServer.registerClient(id: "demo-agent", secret: walkthroughSecret, scope: scopes)

        let mcpServer = DemoMCPServer()
        let mcpChannel = try await DevHTTPServer(group: group, handler: mcpServer.handle).bind(host: "127.0.0.1", port: 0).get()
        let upstreamURL = "http://127.0.0.1:\(mcpChannel.localAddress!.port!)"

        // The pins of the server as it starts, as `mcp-bouncer pin` would write them; the
        // demo keeps them in memory rather than in a file.
        var pins = ToolPins(upstream: upstreamURL + "/mcp", tools: [:])
        for case let (name, digest)? in DemoMCPServer.reviewedDefinitions.map(ToolPins.digest(of:)) { pins.tools[name] = digest }
        let pinsName = "demo-tool-pins.yaml"
        let pinsYAML = pins.yaml
        let environment = [
            "DEMO_GATEWAY_PORT": String(gatewayPort), "DEMO_ISSUER": issuer, "DEMO_UPSTREAM": upstreamURL,
            "DEMO_GATEWAY_CLIENT_SECRET": gatewaySecret, "DEMO_TOOL_PINS": pinsName,
        ]
        let policy = try PolicyLoader.load(yaml: DemoPolicy.yaml, secrets: SecretSource(
            environment: { environment[$0] },
            readFile: { $0 == pinsName ? .success(pinsYAML) : .failure(SecretReadError(reason: "the demo policy reads no files")) }
        ))
        let application = try GatewayApplication(policy: policy, group: group, allowDevelopmentAuthorizationServer: true, logger: logger)
        let gateway = application.gateway
        let gatewayChannel = try await application.bind()
        _ = try? await gateway.warmUp(on: gatewayChannel.eventLoop).get()
        return DemoEnvironment(
            authorizationServer: authorizationServer, mcpServer: mcpServer, gateway: gateway, issuer: issuer, upstreamURL: upstreamURL,
            gatewayURL: gatewayURL, walkthroughClient: ("demo-agent", walkthroughSecret), channels: [gatewayChannel, mcpChannel, asChannel], group: group
        )
    }

    private init(authorizationServer: DevAuthorizationServer, mcpServer: DemoMCPServer, gateway: Gateway, issuer: String, upstreamURL: String,
                 gatewayURL: String, walkthroughClient: (id: String, secret: String), channels: [any Channel], group: any EventLoopGroup) {
        self.authorizationServer = authorizationServer
        self.mcpServer = mcpServer
        self.gateway = gateway
        self.issuer = issuer
        self.upstreamURL = upstreamURL
        self.gatewayURL = gatewayURL
        self.walkthroughClient = walkthroughClient
        self.channels = channels
        self.group = group
    }

    /// Stops accepting and closes the listeners.
    package func stop() async {
        for channel in self.channels { try? await channel.close().get() }
    }

    static func freePort() throws -> Int {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }
}
