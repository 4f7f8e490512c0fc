import BouncerCore
import BouncerTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// The protocol bridge's upstream sessions and parked calls on loopback, against a scripted
/// legacy upstream (what the interop suite's real SDK upstream cannot be made to do on cue):
/// a lost session, idle and evicted sessions, an abandoned parked call, the upstream's ping.
@Suite("Protocol bridge on loopback", .serialized)
struct BridgeLoopbackTests {
    let harness: LoopbackHarness

    init() throws {
        self.harness = try LoopbackHarness()
    }

    static let initialize = #"{"jsonrpc":"2.0","id":{id},"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}"#
    static let result = #"{"jsonrpc":"2.0","id":{id},"result":{"content":[],"tools":[]}}"#

    /// The upstream's routes: sessions s-1, s-2... from initialize, and `more`.
    static func routes(_ more: [(needle: String, replies: [(head: String, body: String)])]) -> [(needle: String, replies: [(head: String, body: String)])] {
        [(#""method":"initialize""#, (1...4).map { ("200 OK\r\nMcp-Session-Id: s-\($0)", Self.initialize) }), ("notifications/", [("202 Accepted", "")]), ("DELETE ", [("200 OK", "")])] + more
    }

    func start(_ upstream: any Channel, bridge: String) throws -> LoopbackHarness.Running {
        try self.harness.start(LoopbackPolicy(self.harness).upstream("http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
            .top("bridge: { \(bridge) }").methods("notifications/*: []", "tools/list: [read]", "tools/call: { echo: [read], ask: [read], flood: [read] }"))
    }

    func call(_ running: LoopbackHarness.Running, _ method: String, name: String? = nil, subject: String = "alice", capabilities: String = "{}") throws -> TestClient.Response {
        var headers = [("Authorization", "Bearer \(self.harness.token(subject: subject))"), ("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", method)]
        if let name { headers.append(("Mcp-Name", name)) }
        let target = name.map { #""name":"\#($0)","# } ?? ""
        let body = #"{"jsonrpc":"2.0","id":1,"method":"\#(method)","params":{\#(target)"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":\#(capabilities)}}}"#
        return try TestClient(group: self.harness.group).send(port: running.port, uri: "/mcp", headers: headers, body: body)
    }

    static func count(_ recorded: NIOLockedValueBox<[String]>, _ needle: String) -> Int {
        recorded.withLockedValue { $0.filter { $0.contains(needle) }.count }
    }

    /// A 404 on the held session: the session is opened again, and a read is sent again on it;
    /// a `tools/call`, which may have had an effect, is not (502, once upstream).
    @Test func aLostSessionIsOpenedAgainAndOnlyReadsAreSentAgain() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let upstream = try routedUpstream(group: self.harness.group, routes: Self.routes([
            ("tools/list", [("404 Not Found", #"{"jsonrpc":"2.0","id":"x","error":{"code":-32001,"message":"Session not found"}}"#), ("200 OK", Self.result)]),
            ("tools/call", [("404 Not Found", "")]),
        ]), recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstream, bridge: "enabled: true")
        defer { running.stop() }
        let listed = try self.call(running, "tools/list")
        #expect(listed.status == .ok && listed.body.contains(#""resultType":"complete""#), "\(listed.body)")
        let lists = recorded.withLockedValue { $0.filter { $0.contains("tools/list") } }
        #expect(lists.count == 2 && lists[0].contains("Mcp-Session-Id: s-1") && lists[1].contains("Mcp-Session-Id: s-2"))
        let called = try self.call(running, "tools/call", name: "echo")
        #expect(called.status == .badGateway && called.body.contains("was not sent again"), "\(called.body)")
        #expect(Self.count(recorded, "tools/call") == 1)
    }

    /// `bridge.session_idle_seconds` ends a session nobody used (DELETE with its id), and
    /// `bridge.max_sessions` bounds them: a new user's session evicts the one unused longest.
    @Test func idleAndEvictedSessionsAreEnded() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let upstream = try routedUpstream(group: self.harness.group, routes: Self.routes([("tools/list", [("200 OK", Self.result)])]), recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstream, bridge: "session_idle_seconds: 1, max_sessions: 1")
        defer { running.stop() }
        #expect(try self.call(running, "tools/list", subject: "alice").status == .ok)
        #expect(try self.call(running, "tools/list", subject: "bob").status == .ok)
        #expect(await eventually { recorded.withLockedValue { $0.contains { $0.hasPrefix("DELETE ") && $0.contains("Mcp-Session-Id: s-1") } } }, "alice's session evicted")
        #expect(running.gateway.bridge.sessions.count <= 1)
        #expect(await eventually { recorded.withLockedValue { $0.contains { $0.hasPrefix("DELETE ") && $0.contains("Mcp-Session-Id: s-2") } } }, "bob's session ended when idle")
        #expect(await eventually { running.gateway.bridge.sessions.count == 0 })
        let metrics = String(decoding: running.gateway.metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(metrics, "mcp_bouncer_bridge_events_total", ["resource": "/mcp", "event": "session_ended"]) == 2)
    }

    /// The upstream asks for input; the client never comes back: when
    /// `bridge.input_timeout_seconds` passes the upstream call is cancelled
    /// (`notifications/cancelled` with its id) and the requestState no longer opens a call.
    @Test func anAbandonedParkedCallIsCancelledUpstream() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let ask = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"elicitation/create\",\"params\":{\"message\":\"Which?\",\"requestedSchema\":{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"string\"}}}}}\n\n"
        let upstream = try routedUpstream(group: self.harness.group, routes: Self.routes([
            ("tools/call", [("200 OK\r\nContent-Type: text/event-stream", ask)]),
        ]), recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstream, bridge: "input_timeout_seconds: 1")
        defer { running.stop() }
        let first = try self.call(running, "tools/call", name: "ask", capabilities: #"{"elicitation":{}}"#)
        let value = try JSONParser().parse(Array(first.body.utf8))
        #expect(value["result"]?["resultType"] == .string("input_required"), "\(first.body)")
        #expect(value["result"]?["inputRequests"]?["upstream"]?["method"] == .string("elicitation/create"))
        #expect(await eventually { Self.count(recorded, "notifications/cancelled") == 1 }, "cancelled upstream when it expired")
        let cancel = try #require(recorded.withLockedValue { $0.first { $0.contains("notifications/cancelled") } })
        #expect(cancel.contains(#""requestId":"bridge-"#) && cancel.contains("Mcp-Session-Id: s-1"))
        #expect(running.gateway.bridge.parked.count == 0)
    }

    /// A request the client did not declare the capability for: -32021, and the upstream's
    /// request answered with an error; the upstream's ping is answered by the gateway.
    @Test func anUndeclaredCapabilityIsRefusedAndAPingAnswered() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let ask = "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"roots/list\",\"params\":{}}\n\n"
        let ping = "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{\"content\":[]}}\n\n"
        let flood = String(repeating: "data: {\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}\n\n", count: 101) + "data: {\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{}}\n\n"
        let upstream = try routedUpstream(group: self.harness.group, routes: Self.routes([
            (#""name":"ask""#, [("200 OK\r\nContent-Type: text/event-stream", ask)]),
            (#""name":"echo""#, [("200 OK\r\nContent-Type: text/event-stream", ping)]),
            (#""name":"flood""#, [("200 OK\r\nContent-Type: text/event-stream", flood)]),
            (#""id":5"#, [("202 Accepted", "")]),
            (#""id":8"#, [("202 Accepted", "")]),
            (#""id":9"#, [("202 Accepted", "")]),
        ]), recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstream, bridge: "enabled: true")
        defer { running.stop() }
        // roots/list passes the guard (roots: allow, the default), but the client declared no roots.
        let refused = try self.call(running, "tools/call", name: "ask")
        #expect(refused.status == .badRequest && refused.body.contains(#""code":-32021"#) && refused.body.contains(#""roots""#), "\(refused.body)")
        #expect(await eventually { recorded.withLockedValue { $0.contains { $0.contains(#""id":8"#) && $0.contains(#""error""#) } } })
        let echoed = try self.call(running, "tools/call", name: "echo")
        #expect(echoed.status == .ok && echoed.body.contains(#""resultType":"complete""#), "\(echoed.body)")
        #expect(await eventually { recorded.withLockedValue { $0.contains { $0.contains(#""id":9"#) && $0.contains(#""result":{}"#) } } }, "the ping answered")
        // An upstream asking without end: a hundred answers, then the client gets a 502.
        let flooded = try self.call(running, "tools/call", name: "flood")
        #expect(flooded.status == .badGateway && flooded.body.contains("more requests for the client"), "\(flooded.body)")
        #expect(await eventually { Self.count(recorded, #""id":5"#) == 100 })
    }

    /// One held session per (user, relayed capabilities): a client that declares elicitation
    /// gets a session opened with it, one that declares only what the bridge cannot relay
    /// shares the session of one that declares nothing; another user never shares either.
    @Test func sessionsAreKeyedByUserAndRelayedCapabilities() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let upstream = try routedUpstream(group: self.harness.group, routes: Self.routes([("tools/list", [("200 OK", Self.result)])]), recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstream, bridge: "enabled: true")
        defer { running.stop() }
        #expect(try self.call(running, "tools/list").status == .ok)
        #expect(try self.call(running, "tools/list", capabilities: #"{"experimental":{"x":{}}}"#).status == .ok)
        #expect(try self.call(running, "tools/list", capabilities: #"{"elicitation":{"form":{}},"experimental":{}}"#).status == .ok)
        #expect(try self.call(running, "tools/list", subject: "bob").status == .ok)
        // A client notification (a cancellation names the client's own ids) is accepted, never forwarded.
        let notification = try TestClient(group: self.harness.group).send(port: running.port, uri: "/mcp", headers: [
            ("Authorization", "Bearer \(self.harness.token())"), ("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "notifications/cancelled"),
        ], body: #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#)
        #expect(notification.status == .accepted)
        #expect(Self.count(recorded, "notifications/cancelled") == 0)
        let opened = recorded.withLockedValue { $0.filter { $0.contains(#""method":"initialize""#) } }
        #expect(opened.count == 3, "\(opened.count) sessions")
        #expect(opened[0].contains(#""capabilities":{}"#) && opened[1].contains(#""capabilities":{"elicitation":{"form":{}}}"#) && opened[2].contains(#""capabilities":{}"#))
        let lists = recorded.withLockedValue { $0.filter { $0.contains("tools/list") } }
        #expect(lists.map { $0.contains("Mcp-Session-Id: s-1") } == [true, true, false, false])
    }
}
