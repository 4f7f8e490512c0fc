import BouncerCore
import BouncerTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import BouncerProxy

/// The elicitation and sampling guard on loopback: what an upstream asks of the client, on a
/// POST's event stream, on the stream a GET opens and in a 2026-07-28 `InputRequiredResult`;
/// blocked requests never reach the client, the upstream gets the gateway's answer on the
/// same session with the gateway's credential, and every judgement is in the audit trail.
@Suite("Elicitation and sampling guard on loopback", .serialized)
struct ServerRequestGuardLoopbackTests {
    let harness: LoopbackHarness
    let directory: URL
    var group: MultiThreadedEventLoopGroup { self.harness.group }
    var auditPath: String { self.directory.appendingPathComponent("audit.jsonl").path }

    init() throws {
        self.harness = try LoopbackHarness()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("guard-loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    func start(upstreamPort: Int, resource: String...) throws -> LoopbackHarness.Running {
        // The stand-in upstream answers 2026-07-28 requests as a modern server would.
        let policy = LoopbackPolicy(self.harness).upstream("http://127.0.0.1:\(upstreamPort)/mcp").era("modern")
            .limits("upstream_response_timeout_seconds: 3").audit("file: \(self.auditPath)")
            .resource("upstream_credentials:\n  static: { header: X-Api-Key, value: gateway-secret }", #"protocol_versions: ["2025-11-25", "2026-07-28"]"#)
            .resource(resource)
        let running = try self.harness.start(policy)
        running.application.gateway.audit?.start(details: [:])
        return running
    }

    static func events(_ messages: [String]) -> String {
        let body = messages.map { "event: message\r\ndata: \($0)\r\n\r\n" }.joined()
        return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    static func json(_ body: String) -> String {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    static let accepted = (reply: "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", close: true)

    static func elicit(_ id: String, field: String) -> String {
        #"{"jsonrpc":"2.0","id":"\#(id)","method":"elicitation/create","params":{"message":"Please","requestedSchema":{"type":"object","properties":{"\#(field)":{"type":"string"}}}}}"#
    }

    static let sampling = #"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}"#
    static let result = #"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#

    func records(event: String) async -> [[String: JSONValue]] {
        var found: [[String: JSONValue]] = []
        _ = await eventually {
            let text = (try? String(contentsOfFile: self.auditPath, encoding: .utf8)) ?? ""
            found = text.split(separator: "\n").compactMap { try? JSONParser().parse(Array($0.utf8)).objectValue }.filter { $0["event"]?.stringValue == event }
            return found.count >= 1
        }
        return found
    }

    /// The requests the upstream got after the first: the gateway's answers.
    func answers(_ recorded: NIOLockedValueBox<[String]>, count: Int) async -> [String] {
        _ = await eventually { recorded.withLockedValue { $0.count } >= count + 1 }
        return Array(recorded.withLockedValue { $0 }.dropFirst())
    }

    @Test func aCredentialElicitationOnAStreamNeverReachesTheClientAndIsDeclinedUpstream() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let (upstream, _) = try scriptedUpstream(group: self.group, replies: [
            (Self.events([Self.elicit("e1", field: "password"), Self.elicit("e2", field: "project"), Self.sampling, Self.result]), true), Self.accepted,
        ], recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstreamPort: upstream.localAddress!.port!)
        defer { running.stop() }
        let token = self.harness.token(scope: "read")
        let response = try self.harness.call(port: running.port, token: token, headers: [("Mcp-Session-Id", self.harness.sealedSession("sess-1", gateway: running.application.gateway)), ("MCP-Protocol-Version", "2025-11-25")])
        #expect(response.status == .ok)
        #expect(response.body.contains(#""id":"e2""#), "a harmless form passes")
        #expect(response.body.contains(#""result":{"content":[]}"#), "the tool's result follows")
        #expect(!response.body.contains("password") && !response.body.contains(#""id":"e1""#), "the credential form is gone")
        #expect(!response.body.contains("sampling/createMessage"), "sampling is denied by default")

        let answers = await self.answers(recorded, count: 2)
        #expect(answers.count == 2)
        let decline = try #require(answers.first { $0.contains(#""id":"e1""#) })
        #expect(decline.contains(#""result":{"action":"decline"}"#))
        let refusal = try #require(answers.first { $0.contains(#""id":"s1""#) })
        #expect(refusal.contains("-32601"))
        for answer in answers {
            let lower = answer.lowercased()
            #expect(lower.hasPrefix("post /mcp http/1.1"))
            #expect(lower.contains("mcp-session-id: sess-1"), "the same upstream session")
            #expect(lower.contains("x-api-key: gateway-secret"), "the gateway's upstream credential")
            #expect(!answer.contains(token), "never the client's token")
        }

        let judged = await self.records(event: "server_request")
        let blocked = try #require(judged.first { $0["jsonrpc_id"] == .string("e1") })
        #expect(blocked["decision"] == .string("blocked") && blocked["reason"] == .string("credential_field"))
        #expect(blocked["schema"]?["properties"]?["password"] != nil, "the schema is attached")
        #expect(blocked["subject"] == .string("alice"))
        #expect(blocked["session"]?.stringValue?.count == 16, "the session as a digest, never itself")
        _ = await eventually { (try? String(contentsOfFile: self.auditPath, encoding: .utf8))?.components(separatedBy: "server_request").count ?? 0 >= 4 }
        let all = await self.records(event: "server_request")
        #expect(Set(all.compactMap { $0["jsonrpc_id"]?.stringValue }) == ["e1", "e2", "s1"])
        #expect(all.first { $0["jsonrpc_id"] == .string("e2") }?["decision"] == .string("passed"))
        #expect(!((try? String(contentsOfFile: self.auditPath, encoding: .utf8)) ?? "").contains("sess-1"))
        let metrics = String(decoding: running.application.gateway.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains(#"mcp_bouncer_server_requests_total{resource="/mcp",method="elicitation/create",outcome="credential_field"} 1"#))
    }

    @Test func theRateLimitBlocksElicitationsPastItPerSession() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let (upstream, _) = try scriptedUpstream(group: self.group, replies: [
            (Self.events([Self.elicit("a", field: "project"), Self.elicit("b", field: "title"), Self.result]), true), Self.accepted,
        ], recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstreamPort: upstream.localAddress!.port!, resource: "elicitation: { rate_limit_per_session: 1 }")
        defer { running.stop() }
        let response = try self.harness.call(port: running.port, token: self.harness.token(), headers: [("Mcp-Session-Id", self.harness.sealedSession("s-9", gateway: running.application.gateway))])
        #expect(response.body.contains(#""id":"a""#) && !response.body.contains(#""id":"b""#))
        let answers = await self.answers(recorded, count: 1)
        #expect(answers.first?.contains(#""id":"b""#) == true)
        #expect(await eventually {
            ((try? String(contentsOfFile: self.auditPath, encoding: .utf8)) ?? "").contains(#""reason":"rate_limited""#)
        })
    }

    @Test func anInputRequiredResultAskingForACredentialBecomesAnError() throws {
        let asking = #"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"login":{"method":"elicitation/create","params":{"message":"Key?","requestedSchema":{"type":"object","properties":{"api_key":{"type":"string"}}}}}},"requestState":"opaque-state"}}"#
        let harmless = #"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{"which":{"method":"elicitation/create","params":{"message":"Which?","requestedSchema":{"type":"object","properties":{"project":{"type":"string"}}}}}},"requestState":"s"}}"#
        let (upstream, requests) = try scriptedUpstream(group: self.group, replies: [(Self.json(asking), true), (Self.json(harmless), true)])
        defer { try? upstream.close().wait() }
        let running = try self.start(upstreamPort: upstream.localAddress!.port!)
        defer { running.stop() }
        let headers = [("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")]
        let refused = try self.harness.call(port: running.port, token: self.harness.token(), headers: headers)
        #expect(refused.status == .ok)
        let error = try JSONParser().parse(Array(refused.body.utf8))
        #expect(error["id"] == .number("1") && error["error"]?["code"] == .number("-32003"))
        #expect(error["error"]?["message"]?.stringValue?.contains("credential_field") == true)
        #expect(!refused.body.contains("opaque-state"))
        #expect(refused.headers.first(name: "Content-Length") == String(refused.body.utf8.count))
        #expect(requests.withLockedValue { $0 } == 1, "nothing is POSTed upstream: the client's retry never comes")

        let passed = try self.harness.call(port: running.port, token: self.harness.token(), headers: headers)
        #expect(passed.body == harmless, "a harmless input request passes byte for byte")
    }

    @Test func theStreamAGETOpensIsGuardedToo() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let roots = #"{"jsonrpc":"2.0","id":"r1","method":"roots/list"}"#
        let url = #"{"jsonrpc":"2.0","id":"u1","method":"elicitation/create","params":{"mode":"url","message":"Sign in","url":"https://login.example.com/start?x=1","elicitationId":"z"}}"#
        let (upstream, _) = try scriptedUpstream(group: self.group, replies: [
            (Self.events([Self.elicit("g1", field: "card_number"), roots, url]), true), Self.accepted,
        ], recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstreamPort: upstream.localAddress!.port!, resource: #"elicitation: { url_allowed_origins: ["https://login.example.com"] }"#)
        defer { running.stop() }
        let stream = try TestClient(group: self.group).send(
            port: running.port, method: .GET, uri: "/mcp",
            headers: [("Authorization", "Bearer \(self.harness.token())"), ("Mcp-Session-Id", self.harness.sealedSession("sess-g", gateway: running.application.gateway)), ("MCP-Protocol-Version", "2025-11-25")]
        )
        #expect(stream.status == .ok)
        #expect(stream.body.contains(#""id":"r1""#), "roots are allowed by default")
        #expect(stream.body.contains(#""id":"u1""#), "a URL to an allowed origin passes")
        #expect(!stream.body.contains("card_number"))
        let answers = await self.answers(recorded, count: 1)
        #expect(answers.count == 1 && answers[0].contains(#""id":"g1""#) && answers[0].contains("decline"))
        #expect(answers.first?.lowercased().contains("mcp-session-id: sess-g") == true)
    }

    /// `inspect_responses: false` relays everything unread, the guard included: the switch is
    /// real, and what it turns off is what the docs say.
    @Test func withInspectionOffTheStreamIsRelayedUnread() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let reply = Self.events([Self.elicit("e1", field: "password"), Self.result])
        let (upstream, _) = try scriptedUpstream(group: self.group, replies: [(reply, true), Self.accepted], recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstreamPort: upstream.localAddress!.port!, resource: "inspect_responses: false")
        defer { running.stop() }
        let response = try self.harness.call(port: running.port, token: self.harness.token(), headers: [("Mcp-Session-Id", self.harness.sealedSession("s", gateway: running.application.gateway))])
        #expect(reply.hasSuffix(response.body), "byte for byte")
        // An absence: no event says when the gateway would have answered, so it is given time.
        try await Task.sleep(for: .milliseconds(200))
        #expect(recorded.withLockedValue { $0.count } == 1, "no answer of the gateway's own")
    }

    /// An upstream that asks without end does not get an audit record and an answer each:
    /// past the cap the stream ends with an error event.
    @Test func aFloodOfRequestsEndsTheStream() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let flood = (0..<150).map { Self.elicit("f\($0)", field: "password") }
        let (upstream, _) = try scriptedUpstream(group: self.group, replies: [(Self.events(flood + [Self.result]), true), Self.accepted], recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstreamPort: upstream.localAddress!.port!)
        defer { running.stop() }
        let response = try self.harness.call(port: running.port, token: self.harness.token(), headers: [("Mcp-Session-Id", self.harness.sealedSession("s", gateway: running.application.gateway))])
        #expect(response.body.contains("more requests for the client than the gateway relays"))
        #expect(!response.body.contains("password") && !response.body.contains(#""result":{"content""#))
        let limit = UpstreamExchange.maxServerRequestsPerResponse
        #expect(await eventually { recorded.withLockedValue { $0.count } == limit + 1 }, "one answer for each request up to the cap")
        // An absence: no event says when a further answer would have come, so it is given time.
        try await Task.sleep(for: .milliseconds(200))
        #expect(recorded.withLockedValue { $0.count } == limit + 1, "none past it")
        #expect(await eventually { ((try? String(contentsOfFile: self.auditPath, encoding: .utf8)) ?? "").contains("upstream_request_flood") })
        let text = (try? String(contentsOfFile: self.auditPath, encoding: .utf8)) ?? ""
        #expect(text.components(separatedBy: #""event":"server_request""#).count - 1 == limit)
    }
}
