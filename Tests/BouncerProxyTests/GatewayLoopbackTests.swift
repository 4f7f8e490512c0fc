import BouncerCore
import Foundation
import BouncerTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Testing

@testable import BouncerProxy

/// The gateway on real loopback sockets, between a test client and a stand-in backend that
/// serves the JWKS and plays the upstream.
@Suite("Gateway on loopback", .serialized)
struct GatewayLoopbackTests {
    typealias Running = LoopbackHarness.Running
    let harness: LoopbackHarness
    var group: MultiThreadedEventLoopGroup { self.harness.group }
    var backend: LoopbackBackend { self.harness.backend }
    var signer: TestSigner { self.harness.signer }
    var issuer: String { self.harness.issuer }

    init() throws {
        self.harness = try LoopbackHarness()
    }

    func start(upstream: String? = nil) throws -> Running {
        var policy = LoopbackPolicy(self.harness).limits("upstream_response_timeout_seconds: 1").server("jwks_refresh_min_interval_seconds: 60")
            .resource("scopes_supported: [read]", "upstream_credentials:\n  static: { header: X-Api-Key, value: gateway-secret }")
        if let upstream { policy = policy.upstream(upstream) }
        return try self.harness.start(policy)
    }

    func token(scope: String = "read", signer: TestSigner? = nil) -> String {
        self.harness.token(scope: scope, signer: signer)
    }

    func call(_ running: Running, token: String?, id: Int = 1, tool: String = "echo", headers: [(String, String)] = []) throws -> TestClient.Response {
        try self.harness.call(port: running.port, token: token, id: id, tool: tool, headers: headers)
    }

    @Test func forwardsWithoutTheClientTokenAndWithTheGatewayCredential() throws {
        let running = try self.start()
        defer { try? running.server.close().wait() }
        let response = try self.call(running, token: self.token(), headers: [("X-Api-Key", "client-forged"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("X-Forwarded-For", "203.0.113.7")])
        #expect(response.status == .ok)
        #expect(response.body.contains(#""echo":{"jsonrpc":"2.0""#))
        let recorded = try #require(self.backend.requests.last)
        #expect(recorded.uri == "/upstream/mcp")
        #expect(recorded.headers["Authorization"].isEmpty)
        #expect(recorded.headers["X-Api-Key"] == ["gateway-secret"])
        #expect(recorded.headers["X-Hop"].isEmpty)
        #expect(recorded.headers["X-Forwarded-For"] == ["127.0.0.1"], "the client is no trusted proxy: its X-Forwarded-For is replaced by its address")
        #expect(recorded.headers.first(name: "X-Forwarded-Proto") == "http")
        #expect(recorded.headers.first(name: "Host") == "127.0.0.1:\(self.backend.port)")
    }

    @Test func keepAliveConnectionsToTheUpstreamAreReused() throws {
        let running = try self.start()
        defer { try? running.server.close().wait() }
        let token = self.token()
        let before = self.backend.connections
        for id in 1...5 {
            #expect(try self.call(running, token: token, id: id).status == .ok)
        }
        // One JWKS connection plus upstream connections: far fewer than one per request.
        #expect(self.backend.connections - before <= 3)
    }

    /// RFC 9110 9.2.2: a request the upstream may have read and acted on is not sent again. The
    /// upstream here reads the second request whole on the reused connection, then hangs up.
    @Test func aRequestWrittenOnAReusedConnectionThatThenFailsIsA502NotASecondCall() async throws {
        let (upstream, requests) = try scriptedUpstream(group: self.group, replies: [
            ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", false),
            ("", true),
            ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", false),
        ])
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        // Two requests on one client connection: the second leases the connection the first returned.
        let wire = self.harness.wire(id: 1) + self.harness.wire(id: 2)
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { received.withLockedValue { $0.contains("HTTP/1.1 502 ") } })
        #expect(received.withLockedValue { $0.components(separatedBy: "HTTP/1.1 200 OK").count - 1 } == 1)
        // A retry would have come before the 502, never after it.
        #expect(requests.withLockedValue { $0 } == 2, "the tools/call the upstream read was not sent again")
        try? await channel.close().get()
        try await running.server.close().get()
        try await upstream.close().get()
    }

    @Test func insufficientScopeNeverReachesTheUpstream() throws {
        let running = try self.start()
        defer { try? running.server.close().wait() }
        let before = self.backend.requests.count
        let response = try self.call(running, token: self.token(scope: "other"), id: 9)
        #expect(response.status == .forbidden)
        #expect(response.headers.first(name: "WWW-Authenticate")?.contains(#"scope="read""#) == true)
        #expect(response.body.contains(#""id":9"#))
        #expect(self.backend.requests.count == before)
    }

    @Test func unknownKidRefreshesTheKeySetOnceThenIsRateLimited() throws {
        let running = try self.start()
        defer { try? running.server.close().wait() }
        #expect(try self.call(running, token: self.token()).status == .ok)
        let fetches = self.backend.jwksFetches
        // The identity provider rotates its key.
        let rotated = TestSigner.p256(kid: "k2")
        self.backend.setJWKS(TestSigner.jwks([self.signer, rotated]))
        #expect(try self.call(running, token: self.token(signer: rotated)).status == .ok)
        #expect(self.backend.jwksFetches == fetches + 1)
        // A forged kid right after: no new fetch (interval 60 s), refused.
        let forged = TestSigner.p256(kid: "k3")
        #expect(try self.call(running, token: self.token(signer: forged)).status == .unauthorized)
        #expect(self.backend.jwksFetches == fetches + 1)
    }

    @Test func aCloseDelimitedUpstreamBodyReachesTheClientChunked() throws {
        let upstream = try rawUpstream(group: self.group, reply: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: one\n\ndata: two\n\n", close: true)
        defer { try? upstream.close().wait() }
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        defer { try? running.server.close().wait() }
        let response = try self.call(running, token: self.token())
        #expect(response.status == .ok)
        #expect(response.body == "data: one\n\ndata: two\n\n")
        #expect(response.headers.first(name: "Transfer-Encoding") == "chunked")
        #expect(response.headers.first(name: "X-Accel-Buffering") == "no")
        #expect(response.headers["Connection"].isEmpty, "the upstream's Connection header is its own")
    }

    @Test func anHTTP10ClientGetsABodyOfUnknownLengthUnchunkedAndTheConnectionEnds() async throws {
        // RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client; the body ends with the
        // connection. And no 100 Continue for its Expect (RFC 9110 10.1.1).
        let upstream = try rawUpstream(group: self.group, reply: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: one\n\ndata: two\n\n", close: true)
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        let body = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#
        let wire = "POST /mcp HTTP/1.0\r\nHost: gw\r\nAuthorization: Bearer \(self.token())\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            + "Connection: keep-alive\r\nAccept: application/json, text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { !channel.isActive }, "the end of the body is the end of the connection")
        let text = received.withLockedValue { $0 }
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "no interim response first: \(text.debugDescription)")
        let head = text.components(separatedBy: "\r\n\r\n")[0]
        #expect(!head.lowercased().contains("transfer-encoding"))
        #expect(head.contains("\r\nConnection: close"))
        #expect(text.hasSuffix("\r\n\r\ndata: one\n\ndata: two\n\n"), "the body as the upstream sent it: \(text.debugDescription)")
        try await running.server.close().get()
        try await upstream.close().get()
    }

    @Test func aKeepAliveHTTP10ClientIsToldTheConnectionPersists() async throws {
        let running = try self.start()
        let wire = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n"
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { !channel.isActive }, "the second request did not ask to keep the connection")
        let responses = received.withLockedValue { $0 }.components(separatedBy: "HTTP/1.1 200 OK\r\n").dropFirst()
        #expect(responses.count == 2)
        #expect(responses.first?.contains("Connection: keep-alive\r\n") == true, "RFC 9112 9.3: the answer says it persists")
        #expect(responses.last?.contains("Connection: close\r\n") == true)
        try await running.server.close().get()
    }

    @Test func interimResponsesAreRelayedButNotToHTTP10Clients() async throws {
        // RFC 9110 15.2: a proxy forwards 1xx responses, and never sends one to an HTTP/1.0 client.
        let upstream = try rawUpstream(
            group: self.group,
            reply: "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n"
                + "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            close: false
        )
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        let body = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#
        for version in ["1.1", "1.0"] {
            let wire = "POST /mcp HTTP/\(version)\r\nHost: gw\r\nAuthorization: Bearer \(self.token())\r\nContent-Type: application/json\r\n"
                + "Accept: application/json, text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
            #expect(await eventually { received.withLockedValue { $0.hasSuffix("\r\n\r\n{}") } }, "HTTP/\(version)")
            let text = received.withLockedValue { $0 }
            if version == "1.1" {
                // The reason phrase is the standard one for the code, empty where NIO knows none.
                #expect(text.hasPrefix("HTTP/1.1 103 "), "\(text.debugDescription)")
                #expect(text.contains("\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"), "\(text.debugDescription)")
            } else {
                #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(text.debugDescription)")
            }
            #expect(!text.contains("X-Hop"), "the interim response's connection-scoped headers stay behind")
            try? await channel.close().get()  // the HTTP/1.0 one is closed by the gateway already
        }
        try await running.server.close().get()
        try await upstream.close().get()
    }

    @Test func anUnaskedForSwitchingProtocolsIsA502() throws {
        // The gateway never forwards Upgrade, so a 101 is the upstream breaking the protocol:
        // not relayed (it would leave the client waiting for a final response that never comes).
        let upstream = try rawUpstream(group: self.group, reply: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxyz", close: false)
        defer { try? upstream.close().wait() }
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        defer { try? running.server.close().wait() }
        let response = try self.call(running, token: self.token())
        #expect(response.status == .badGateway)
    }

    @Test func anUpstreamThatSentAnInterimResponseHasTheRequestAndItIsNotSentAgain() async throws {
        // A pooled connection that fails before any response is retried once on a new one (the
        // keep-alive race); one that answered 103 first saw the request: a 502, not a second call.
        let (upstream, requests) = try scriptedUpstream(group: self.group, replies: [
            ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", false),
            ("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", false),
        ])
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        // Two requests on one client connection, so the second is served on the same event loop
        // and leases the upstream connection the first one returned to the pool.
        let wire = self.harness.wire(id: 1) + self.harness.wire(id: 2)
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { received.withLockedValue { $0.contains("HTTP/1.1 502 ") } })
        let text = received.withLockedValue { $0 }
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 1, "\(text.debugDescription)")
        #expect(text.contains("HTTP/1.1 103 "))
        #expect(requests.withLockedValue { $0 } == 2, "the request the upstream saw was not sent again")
        try? await channel.close().get()
        try await running.server.close().get()
        try await upstream.close().get()
    }

    @Test func ambiguousOrHostileUpstreamFramingIsA502NotARelay() throws {
        let replies = [
            // Both framings (RFC 9112 6.3: a smuggling vector when relayed).
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            // Two different lengths.
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            // A control character in a header value, and a header name that is not a token.
            "HTTP/1.1 200 OK\r\nX-A: a\u{1}b\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nX-A: a\u{7F}b\r\nContent-Length: 2\r\n\r\n{}",
        ]
        for reply in replies {
            let upstream = try rawUpstream(group: self.group, reply: reply, close: true)
            defer { try? upstream.close().wait() }
            let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
            defer { try? running.server.close().wait() }
            let response = try self.call(running, token: self.token())
            #expect(response.status == .badGateway, "relayed: \(reply.debugDescription)")
        }
    }

    @Test func upstreamDownIs502WithTheRequestID() throws {
        let running = try self.start(upstream: "http://127.0.0.1:1/mcp")
        defer { try? running.server.close().wait() }
        let response = try self.call(running, token: self.token(), id: 77)
        #expect(response.status == .badGateway)
        #expect(response.body.contains(#""id":77"#))
    }

    @Test func slowUpstreamIs504() throws {
        let running = try self.start()
        defer { try? running.server.close().wait() }
        self.backend.setUpstreamDelay(.seconds(3))
        defer { self.backend.setUpstreamDelay(.zero) }
        let response = try self.call(running, token: self.token(), id: 5)
        #expect(response.status == .gatewayTimeout)
        #expect(response.body.contains(#""id":5"#))
    }

    /// The response timeout is one timer per connection, re-armed when it fires: a request on a
    /// kept-alive connection gets its own full timeout, not what was left of the previous one's,
    /// and a slow one on the same connection still times out.
    @Test func eachRequestOnAKeptAliveConnectionGetsItsOwnResponseTimeout() async throws {
        let running = try self.start()  // upstream_response_timeout_seconds: 1
        let token = self.token()
        func request(_ id: Int) -> String { self.harness.wire(id: id, token: token) }
        func answers(_ received: NIOLockedValueBox<String>) -> Int {
            received.withLockedValue { $0.components(separatedBy: "HTTP/1.1 ").count - 1 }
        }
        defer { self.backend.setUpstreamDelay(.zero) }
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: request(1))
        #expect(await eventually { answers(received) == 1 })
        // 0.6 s later, a request that takes 0.7 s: past the first request's deadline, inside its own.
        try await Task.sleep(for: .milliseconds(600))
        self.backend.setUpstreamDelay(.milliseconds(700))
        try await channel.writeAndFlush(ByteBuffer(string: request(2))).get()
        #expect(await eventually { answers(received) == 2 })
        #expect(received.withLockedValue { $0.components(separatedBy: "HTTP/1.1 200 OK").count - 1 } == 2)
        // Then one that takes too long.
        self.backend.setUpstreamDelay(.seconds(3))
        try await channel.writeAndFlush(ByteBuffer(string: request(3))).get()
        #expect(await eventually { answers(received) == 3 })
        #expect(received.withLockedValue { $0.contains("HTTP/1.1 504 Gateway Timeout") })
        try await channel.close().get()
        try await running.server.close().get()
    }

    @Test func unreachableKeySetIs503() throws {
        var policy = LoopbackPolicy(self.harness).upstream("\(self.backend.url)/mcp").methods("tools/call: { echo: [] }")
        policy.jwksURL = "http://127.0.0.1:1/jwks"
        let running = try self.harness.start(policy)
        defer { running.stop() }
        let response = try self.call(running, token: self.token())
        #expect(response.status == .serviceUnavailable)
        // The JSON-RPC error answers the request's id (it used to be null).
        let error = try JSONParser().parse(Array(response.body.utf8))
        #expect(error["id"] == .number("1") && error["error"]?["code"] != nil, "\(response.body)")
    }

    @Test func clientDisconnectClosesTheUpstreamExchange() async throws {
        let running = try self.start()
        self.backend.setUpstreamDelay(.seconds(10))
        let body = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#
        let before = self.backend.requests.count
        let client = try rawConnection(group: self.group, port: running.port, send: """
            POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(self.token())\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)
            """)
        #expect(await eventually { self.backend.requests.count == before + 1 })
        let open = self.backend.openConnections
        try await client.close().get()
        // The gateway hangs up on the upstream too, instead of waiting for its answer.
        #expect(await eventually { self.backend.openConnections == open - 1 })
        self.backend.setUpstreamDelay(.zero)
        try await running.server.close().get()
    }

    @Test func malformedHTTPIsRefusedAndTheGatewayKeepsServing() async throws {
        let running = try self.start()
        for garbage in ["GARBAGE\r\n\r\n", "POST /mcp HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "\u{0}\u{1}\u{2}\r\n\r\n",
                        "POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"] {
            let (channel, received) = try rawExchange(group: self.group, port: running.port, send: garbage)
            #expect(await eventually { !channel.isActive }, "the gateway hangs up on \(garbage.debugDescription)")
            let answer = received.withLockedValue { $0 }
            #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "a 400 before hanging up on \(garbage.debugDescription)")
            #expect(answer.lowercased().contains("connection: close\r\n"))
        }
        let health = try TestClient(group: self.group).send(port: running.port, method: .GET, uri: "/healthz")
        #expect(health.status == .ok)
        #expect(self.backend.requests.isEmpty || !self.backend.requests.contains { $0.uri.contains("GARBAGE") })
        try await running.server.close().get()
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOnePerUpstreamExchange() async throws {
        let running = try self.start()
        let token = self.token()
        // The first answer is slow, so the second request waits behind it in the gateway.
        self.backend.setUpstreamDelay(.milliseconds(200))
        defer { self.backend.setUpstreamDelay(.zero) }
        let before = self.backend.requests.count
        let wire = (1...3).map { self.harness.wire(id: $0, token: token) }.joined()
        // All three in one write: the gateway reads them together.
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { received.withLockedValue { $0.components(separatedBy: "HTTP/1.1 200 OK").count - 1 } == 3 })
        let text = received.withLockedValue { $0 }
        let positions = (1...3).map { id in text.range(of: #""id":\#(id),"#)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "answers in request order")
        #expect(self.backend.requests.count - before == 3)
        #expect(channel.isActive, "pipelining keeps the connection")
        try await channel.close().get()
        try await running.server.close().get()
    }

    @Test func aConnectionCloseRequestEndsTheConnectionAndNothingPipelinedAfterItIsServed() async throws {
        let running = try self.start()
        let wire = "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { !channel.isActive })
        let text = received.withLockedValue { $0 }
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 1)
        try await running.server.close().get()
    }

    /// SIGTERM through the service lifecycle: the listener closes, an idle keep-alive
    /// connection closes at once, a request in flight is answered (its last, with
    /// `Connection: close`) before its connection closes.
    @Test func gracefulShutdownQuiescesIdleConnectionsAtOnceAndLetsInFlightRequestsFinish() async throws {
        let policy = try PolicyLoader.load(yaml: LoopbackPolicy(self.harness).limits("shutdown_grace_seconds: 5").yaml, secrets: .empty)
        let port = NIOLockedValueBox(0)
        let application = try GatewayApplication(policy: policy, group: self.group, logger: Logger(label: "test")) { address in
            port.withLockedValue { $0 = address.port ?? 0 }
        }
        let serviceGroup = ServiceGroup(configuration: .init(services: [.init(service: application.server)], logger: Logger(label: "test")))
        let running = Task { try await serviceGroup.run() }
        #expect(await eventually { port.withLockedValue { $0 } != 0 })
        let gatewayPort = port.withLockedValue { $0 }
        let request = self.harness.wire()
        let (idle, idleReceived) = try rawExchange(group: self.group, port: gatewayPort, send: request)
        #expect(await eventually { idleReceived.withLockedValue { $0.contains("HTTP/1.1 200 OK") } })
        self.backend.setUpstreamDelay(.milliseconds(800))
        defer { self.backend.setUpstreamDelay(.zero) }
        let before = self.backend.requests.count
        let (busy, busyReceived) = try rawExchange(group: self.group, port: gatewayPort, send: request)
        #expect(await eventually { self.backend.requests.count > before }, "the request is with the upstream")
        let clock = ContinuousClock()
        let shutdownAt = clock.now
        await serviceGroup.triggerGracefulShutdown()
        #expect(await eventually(timeout: .milliseconds(400)) { !idle.isActive }, "the idle connection closed at once")
        #expect(busy.isActive, "the busy one is still being answered")
        #expect(await eventually { !busy.isActive })
        let answer = busyReceived.withLockedValue { $0 }
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
        #expect(answer.lowercased().contains("connection: close\r\n"))
        try await running.value
        #expect(clock.now - shutdownAt < .seconds(3), "done when the last exchange ended, not at the grace period")
    }

    @Test func shutdownDrainClosesConnectionsLeftAfterTheGracePeriod() async throws {
        let running = try self.start()
        let server = GatewayServer(gateway: running.gateway, group: self.group)
        let listener = try await server.bind().get()
        let client = try rawConnection(group: self.group, port: listener.localAddress!.port!, send: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(await eventually { server.openConnections == 1 })
        try await listener.close().get()
        await server.drain(grace: .milliseconds(100))
        #expect(await eventually { !client.isActive })
        try await running.server.close().get()
    }
}
