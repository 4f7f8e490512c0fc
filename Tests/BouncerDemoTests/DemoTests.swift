import BouncerCore
import BouncerDemo
import BouncerDevServer
import BouncerProxy
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@Suite("mcp-bouncer demo", .serialized)
struct DemoTests {
    @Test func theScenarioRunsEveryStepEndToEnd() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let environment = try await DemoEnvironment.start(group: group, logger: Logger(label: "test"))
        let steps = await DemoScenario(environment: environment, group: group, print: { _ in }).run()
        await environment.stop()
        try await group.shutdownGracefully()
        #expect(steps.count == DemoScenario.stepCount)
        for step in steps {
            #expect(step.passed, "\(step.title): \(step.outcome)")
        }
        #expect(steps.first?.outcome.hasPrefix("401") == true)
        #expect(steps[4].outcome.contains("hidden: create_issue"), "a read-only token's list is filtered")
        #expect(steps[5].outcome.contains("client saw an elicitation: false"), "the password form never reached the client")
        #expect(steps[6].outcome.contains("changed since it was approved"), "the changed tool is refused")
        #expect(steps[7].outcome.contains(#"scope="jira:write""#))
    }

    @Test func theEmbeddedPolicyIsPoliciesDemoYaml() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("policies/demo.yaml")
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.trimmingCharacters(in: .newlines) == DemoPolicy.yaml.trimmingCharacters(in: .newlines))
    }

    @Test func aGatewayOutsideTheDemoRefusesTheDevelopmentServer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try DevAuthorizationServer(audiences: [.init(name: "http://127.0.0.1:8443/mcp", scopes: ["a"])])
        let channel = try await DevHTTPServer(group: group, handler: server.handle).bind(host: "127.0.0.1", port: 0).get()
        server.issuer = "http://127.0.0.1:\(channel.localAddress!.port!)"
        let policy = try PolicyLoader.load(yaml: """
            listen: 127.0.0.1:0
            public_url: http://127.0.0.1:8443
            authorization_servers:
              dev:
                issuer: \(server.issuer)
            resources:
              - path: /mcp
                authorization_server: dev
                upstream: http://127.0.0.1:1/mcp
                methods: { initialize: [] }
            """, secrets: .empty)
        let refusing = try GatewayApplication(policy: policy, group: group, logger: Logger(label: "test")).gateway
        let store = try #require(refusing.keyStore(named: "dev"))
        await #expect(throws: AuthorizationServerError(.developmentServer, "")) { try await store.keys(on: group.next()).get() }
        let demo = try GatewayApplication(policy: policy, group: group, allowDevelopmentAuthorizationServer: true, logger: Logger(label: "test")).gateway
        let keys = try await #require(demo.keyStore(named: "dev")).keys(on: group.next()).get()
        #expect(keys.keys.count == 2)
        try await channel.close().get()
        try await group.shutdownGracefully()
    }
}
