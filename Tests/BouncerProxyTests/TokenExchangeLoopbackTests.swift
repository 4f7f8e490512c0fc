import BouncerCore
import BouncerTestSupport
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import NIOPosix
import Testing

@testable import BouncerProxy

/// Token exchange against a stand-in token endpoint that records what it is asked.
@Suite("Token exchange on loopback", .serialized)
struct TokenExchangeLoopbackTests {
    let harness: LoopbackHarness
    var group: MultiThreadedEventLoopGroup { self.harness.group }
    var backend: LoopbackBackend { self.harness.backend }
    var issuer: String { self.harness.issuer }

    init() throws {
        self.harness = try LoopbackHarness()
    }

    func start(actor: Bool = false) throws -> (server: any Channel, port: Int) {
        let running = try self.harness.start(LoopbackPolicy(self.harness).upstream("\(self.backend.url)/upstream")
            .server("token_endpoint: \(self.backend.url)/token", #"client: { id: "gw:1", secret: "s e" }"#)
            .resource("upstream_credentials:", "  token_exchange: { audience: jira-internal, scope: jira.read, actor: \(actor) }")
            .methods("tools/call: { echo: [] }"))
        return (running.server, running.port)
    }

    func token(sub: String = "alice") -> String {
        self.harness.token(subject: sub)
    }

    func call(_ port: Int, _ token: String, id: Int = 1) throws -> TestClient.Response {
        try self.harness.call(port: port, token: token, id: id)
    }

    @Test func theExchangedTokenGoesUpstreamWithTheRightRequest() throws {
        let (server, port) = try self.start()
        defer { try? server.close().wait() }
        let token = self.token()
        #expect(try self.call(port, token).status == .ok)
        let form = try #require(self.backend.tokenRequests.last)
        #expect(form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"))
        #expect(form.contains("subject_token=\(token)"))
        #expect(form.contains("audience=jira-internal") && form.contains("scope=jira.read"))
        #expect(!form.contains("actor_token"))
        let upstream = try #require(self.backend.requests.last)
        #expect(upstream.headers["Authorization"] == ["Bearer exchanged-1"])
    }

    @Test func concurrentMissesShareOneExchangeAndLaterCallsUseTheCache() throws {
        let (server, port) = try self.start()
        defer { try? server.close().wait() }
        self.backend.setTokenReply(.ok, #"{"access_token":"exchanged-slow","token_type":"Bearer","expires_in":300}"#, delay: .milliseconds(300))
        let before = self.backend.tokenRequests.count
        let token = self.token(sub: "bob")
        let statuses = NIOLockedValueBox([HTTPResponseStatus]())
        let group = self.group
        DispatchQueue.concurrentPerform(iterations: 4) { index in
            let response = try? TestClient(group: group).send(
                port: port, uri: "/mcp", headers: [("Authorization", "Bearer \(token)")],
                body: #"{"jsonrpc":"2.0","id":\#(index),"method":"tools/call","params":{"name":"echo"}}"#
            )
            statuses.withLockedValue { $0.append(response?.status ?? .internalServerError) }
        }
        #expect(statuses.withLockedValue { $0 } == Array(repeating: .ok, count: 4))
        #expect(try self.call(port, token).status == .ok)
        #expect(self.backend.tokenRequests.count == before + 1)
        self.backend.setTokenReply(.ok, #"{"access_token":"exchanged-1","token_type":"Bearer","expires_in":300}"#)
    }

    @Test func eachSubjectTokenHasItsOwnCachedExchange() throws {
        let (server, port) = try self.start()
        defer { try? server.close().wait() }
        let before = self.backend.tokenRequests.count
        let dave = self.token(sub: "dave"), erin = self.token(sub: "erin")
        #expect(try self.call(port, dave).status == .ok)
        #expect(try self.call(port, dave, id: 2).status == .ok)
        #expect(self.backend.tokenRequests.count == before + 1, "the second call used the cache")
        #expect(try self.call(port, erin).status == .ok)
        #expect(self.backend.tokenRequests.count == before + 2, "another subject token is exchanged for itself")
        #expect(self.backend.tokenRequests.last?.contains("subject_token=\(erin)") == true)
    }

    @Test func actorTokenIsTheGatewaysOwnClientCredentialsToken() throws {
        let (server, port) = try self.start(actor: true)
        defer { try? server.close().wait() }
        let before = self.backend.tokenRequests.count
        #expect(try self.call(port, self.token(sub: "carol")).status == .ok)
        let requests = Array(self.backend.tokenRequests.dropFirst(before))
        #expect(requests.count == 2)
        #expect(requests.first?.hasPrefix("grant_type=client_credentials") == true)
        #expect(requests.last?.contains("actor_token=exchanged-1&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token") == true)
    }

    @Test func refusalsMapToTheRightStatus() throws {
        let (server, port) = try self.start()
        defer { try? server.close().wait() }
        let before = self.backend.requests.count
        self.backend.setTokenReply(.badRequest, #"{"error":"invalid_target"}"#)
        let target = try self.call(port, self.token(sub: "dave"), id: 31)
        #expect(target.status == .badGateway)
        #expect(target.body.contains(#""cause":"invalid_target""#) && target.body.contains(#""id":31"#))
        self.backend.setTokenReply(.badRequest, #"{"error":"invalid_grant"}"#)
        let grant = try self.call(port, self.token(sub: "erin"))
        #expect(grant.status == .unauthorized)
        #expect(grant.headers.first(name: "WWW-Authenticate")?.contains(#"error="invalid_token""#) == true)
        #expect(self.backend.requests.count == before, "nothing reached the upstream")
        self.backend.setTokenReply(.ok, #"{"access_token":"exchanged-1","token_type":"Bearer","expires_in":300}"#)
    }
}
