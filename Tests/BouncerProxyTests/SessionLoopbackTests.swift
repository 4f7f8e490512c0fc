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

/// Sessions bound to their user, the per-user rate limit, the connection limit and trusted
/// proxies, on loopback sockets: what the upstream receives (or not), what the client and the
/// audit trail see.
@Suite("Sessions and limits on loopback", .serialized)
struct SessionLoopbackTests {
    let harness: LoopbackHarness
    let directory: URL
    var backend: LoopbackBackend { self.harness.backend }
    static let secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

    init() throws {
        self.harness = try LoopbackHarness()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("sessions-loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    typealias Running = LoopbackHarness.Running

    /// The gateway with `policy`'s changes to the suite's: sessions and rate limits on `/mcp`,
    /// and `/other/mcp` on the same authorization server.
    func start(_ change: (LoopbackPolicy) -> LoopbackPolicy = { $0 }) throws -> Running {
        let policy = LoopbackPolicy(self.harness).limits("upstream_response_timeout_seconds: 3").other(path: "/other/mcp", upstream: "\(self.backend.url)/upstream/other")
        let running = try self.harness.start(change(policy))
        running.application.gateway.audit?.start(details: [:])
        return running
    }

    func call(_ running: Running, subject: String = "alice", uri: String = "/mcp", method: HTTPMethod = .POST, session: String?..., headers: [(String, String)] = []) throws -> TestClient.Response {
        var fields = [("Authorization", "Bearer \(self.harness.token(subject: subject, resource: uri))"), ("MCP-Protocol-Version", "2025-11-25")] + headers
        for id in session { if let id { fields.append(("Mcp-Session-Id", id)) } }
        let body = method == .POST ? #"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"# : ""
        return try TestClient(group: self.harness.group).send(port: running.port, method: method, uri: uri, headers: fields, body: body)
    }

    /// `sealed` with one character of its ciphertext changed (in the middle: the last one may
    /// carry padding bits, which make it malformed rather than forged).
    static func edited(_ sealed: String) -> String {
        var bytes = Array(sealed.utf8)
        let middle = bytes.count - 20
        bytes[middle] = bytes[middle] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        return String(decoding: bytes, as: UTF8.self)
    }

    static func sessions(_ policy: LoopbackPolicy) -> LoopbackPolicy {
        policy.sessions("keys:", "  - { id: k1, secret: \(SessionLoopbackTests.secret) }")
    }

    @Test func aSessionIsSealedToItsUserAndRefusedToAnyoneElse() throws {
        let auditPath = self.directory.appendingPathComponent("audit.jsonl").path
        let running = try self.start { Self.sessions($0).audit("file: \(auditPath)") }
        self.backend.setSessionReply("upstream-session-1")
        // initialize (any call): the client gets a sealed id, never the upstream's.
        let first = try self.call(running, session: nil)
        #expect(first.status == .ok)
        let sealed = try #require(first.headers.first(name: "Mcp-Session-Id"))
        #expect(sealed.hasPrefix("s1.k1.") && !sealed.contains("upstream-session-1"))
        #expect(!first.headers.description.contains("upstream-session-1"))

        // Its owner uses it: the upstream gets its own id back, and only that. The upstream
        // repeats its id on every response, as SDK servers do; the client keeps its sealed id.
        for method in [HTTPMethod.POST, .GET, .DELETE] {
            let used = try self.call(running, method: method, session: sealed)
            #expect(used.status == .ok, "\(method)")
            #expect(used.headers["Mcp-Session-Id"] == [sealed], "one session, one id")
            let seen = try #require(self.backend.requests.last)
            #expect(seen.method == method && seen.headers["Mcp-Session-Id"] == ["upstream-session-1"], "\(method)")
        }
        self.backend.setSessionReply(nil)
        let forwarded = self.backend.requests.count

        // Anyone else, anything else: 404 with a JSON-RPC error, nothing forwarded.
        let cases: [(String, TestClient.Response)] = [
            ("another user", try self.call(running, subject: "bob", session: sealed)),
            ("another user's GET stream", try self.call(running, subject: "bob", method: .GET, session: sealed, headers: [("Last-Event-ID", "5")])),
            ("another user's DELETE", try self.call(running, subject: "bob", method: .DELETE, session: sealed)),
            ("the raw upstream id", try self.call(running, session: "upstream-session-1")),
            ("two session ids", try self.call(running, session: sealed, sealed)),
            ("another resource", try self.call(running, uri: "/other/mcp", session: sealed)),
            ("an edited id", try self.call(running, session: Self.edited(sealed))),
        ]
        for (name, response) in cases {
            #expect(response.status == .notFound, "\(name)")
            if response.headers.first(name: "Content-Length") != "0" {
                #expect(response.body.contains(#""code":-32001"#) && response.body.contains("start a new session"), "\(name): \(response.body)")
            }
        }
        #expect(cases[0].1.body.contains(#""id":7"#), "the error answers the request's id")
        #expect(self.backend.requests.count == forwarded, "nothing reached the upstream")

        running.stop()
        let mismatches = try auditRecords(at: auditPath).filter { $0["event"] == .string("session_mismatch") }
        #expect(mismatches.compactMap { $0["reason"]?.stringValue } == ["other_subject", "other_subject", "other_subject", "malformed", "malformed", "other_resource", "forged"])
        let bob = try #require(mismatches.first)
        #expect(bob["subject"]?.stringValue?.count == 16 && bob["sealed_subject"]?.stringValue?.count == 16 && bob["subject"] != bob["sealed_subject"])
        let text = try String(contentsOfFile: auditPath, encoding: .utf8)
        #expect(!text.contains("upstream-session-1") && !text.contains(sealed), "session ids only as digests")
        let refused = try auditRecords(at: auditPath).filter { $0["reason"]?.stringValue?.hasPrefix("session_mismatch.") == true }
        #expect(refused.count == cases.count && refused.allSatisfy { $0["decision"] == .string("denied") && $0["status"] == .number("404") })
    }

    @Test func tokensWithoutASubjectAreBoundToTheirClient() throws {
        let running = try self.start(Self.sessions)
        defer { running.stop() }
        func token(client: String?) -> String {
            let now = Int64(Date().timeIntervalSince1970)
            let clientClaim = client.map { #","client_id":"\#($0)""# } ?? ""
            return self.harness.signer.sign(#"{"iss":"\#(self.harness.issuer)","aud":"\#(self.harness.publicURL)/mcp","exp":\#(now + 300),"scope":"read"\#(clientClaim)}"#)
        }
        func call(_ token: String, session: String?) throws -> TestClient.Response {
            var headers = [("Authorization", "Bearer \(token)")]
            if let session { headers.append(("Mcp-Session-Id", session)) }
            return try self.harness.call(port: running.port, token: nil, headers: headers)
        }
        self.backend.setSessionReply("upstream-c")
        let sealed = try #require(try call(token(client: "agent-1"), session: nil).headers.first(name: "Mcp-Session-Id"))
        self.backend.setSessionReply(nil)
        #expect(try call(token(client: "agent-1"), session: sealed).status == .ok, "a new token of the same client")
        #expect(try call(token(client: "agent-2"), session: sealed).status == .notFound, "another client")
        // A token naming neither subject nor client is bound to itself.
        let anonymous = token(client: nil)
        self.backend.setSessionReply("upstream-anon")
        let own = try #require(try call(anonymous, session: nil).headers.first(name: "Mcp-Session-Id"))
        self.backend.setSessionReply(nil)
        #expect(try call(anonymous, session: own).status == .ok)
        #expect(try call(token(client: nil), session: own).status == .notFound, "another anonymous token")
    }

    @Test func replicasWithTheSameKeysShareSessionsAndOthersDoNot() throws {
        let one = try self.start(Self.sessions)
        let two = try self.start(Self.sessions)
        let rotated = try self.start { $0.sessions("keys:", "  - { id: k2, secret: \(SessionKey.newSecret()) }", "  - { id: k1, secret: \(Self.secret) }") }
        let stranger = try self.start()
        defer { [one, two, rotated, stranger].forEach { $0.stop() } }
        self.backend.setSessionReply("upstream-session-2")
        let sealed = try #require(try self.call(one, session: nil).headers.first(name: "Mcp-Session-Id"))
        self.backend.setSessionReply(nil)
        #expect(try self.call(two, session: sealed).status == .ok, "another replica with the key opens it")
        #expect(self.backend.requests.last?.headers["Mcp-Session-Id"] == ["upstream-session-2"])
        #expect(try self.call(rotated, session: sealed).status == .ok, "after a rotation the old key still opens")
        #expect(try self.call(stranger, session: sealed).status == .notFound, "a gateway with its own random key does not")
        // The rotated gateway seals with its first key.
        self.backend.setSessionReply("upstream-session-3")
        let resealed = try #require(try self.call(rotated, session: nil).headers.first(name: "Mcp-Session-Id"))
        self.backend.setSessionReply(nil)
        #expect(resealed.hasPrefix("s1.k2."))
        #expect(try self.call(one, session: resealed).status == .notFound, "k2 is unknown to the replica that was not rotated")
    }

    @Test func anUpstreamSessionIDTheTransportForbidsIsNotRelayed() throws {
        let running = try self.start()
        defer { running.stop() }
        self.backend.setSessionReply("has space")
        defer { self.backend.setSessionReply(nil) }
        let response = try self.call(running, session: nil)
        #expect(response.status == .badGateway)
        #expect(response.headers["Mcp-Session-Id"].isEmpty && !response.body.contains("has space"))
    }

    @Test func theRateLimitIsPerUserAndAnswered429() throws {
        let auditPath = self.directory.appendingPathComponent("rate.jsonl").path
        let running = try self.start { $0.resource("rate_limit: { requests_per_second: 0.2, burst: 2 }").audit("file: \(auditPath)") }
        let before = self.backend.requests.count
        #expect(try self.call(running, session: nil).status == .ok)
        #expect(try self.call(running, session: nil).status == .ok)
        let limited = try self.call(running, session: nil)
        #expect(limited.status == .tooManyRequests)
        let retry = try #require(limited.headers.first(name: "Retry-After").flatMap { Int($0) })
        #expect((1...5).contains(retry))
        #expect(limited.body.contains(#""code":-32029"#) && limited.body.contains("rate_limited"))
        #expect(try self.call(running, subject: "bob", session: nil).status == .ok, "bob has his own bucket")
        #expect(try self.call(running, uri: "/other/mcp", session: nil).status == .ok, "another resource has no limit")
        #expect(self.backend.requests.count == before + 4, "the refused call was not forwarded")
        running.stop()
        let refused = try auditRecords(at: auditPath).filter { $0["reason"] == .string("rate_limited") }
        #expect(refused.count == 1 && refused.first?["status"] == .number("429"))
    }

    @Test func connectionsBeyondTheLimitAre503AndTheOthersServed() async throws {
        let running = try self.start { $0.limits("max_connections: 2") }
        defer { running.stop() }
        let first = try rawConnection(group: self.harness.group, port: running.port, send: "")
        let second = try rawConnection(group: self.harness.group, port: running.port, send: "")
        defer {
            first.close(promise: nil)
            second.close(promise: nil)
        }
        #expect(await eventually { running.application.server.openConnections == 2 })
        let (third, received) = try rawListener(group: self.harness.group, port: running.port)
        try await third.closeFuture.get()
        #expect(received.withLockedValue { $0 }.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(received.withLockedValue { $0 }.contains("Retry-After: 1"))
        let metrics = String(decoding: running.gateway.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains("mcp_bouncer_connections_refused_total 1"))
        try await first.close()
        #expect(await eventually { running.application.server.openConnections == 1 })
        #expect(try self.call(running, session: nil).status == .ok, "room again: served")
    }

    @Test func onlyATrustedProxyNamesTheClient() throws {
        let auditPath = self.directory.appendingPathComponent("proxy.jsonl").path
        let trusted = try self.start { $0.top("trusted_proxies: [127.0.0.0/8]").audit("file: \(auditPath)") }
        let untrusted = try self.start { $0.top("trusted_proxies: [10.0.0.0/8]") }
        defer { untrusted.stop() }
        let headers = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7"), ("Forwarded", "for=198.51.100.7")]
        #expect(try self.call(trusted, session: nil, headers: headers).status == .ok)
        let viaProxy = try #require(self.backend.requests.last)
        #expect(viaProxy.headers["X-Forwarded-For"] == ["6.6.6.6, 198.51.100.7, 127.0.0.1"])
        #expect(viaProxy.headers["Forwarded"] == ["for=198.51.100.7, for=127.0.0.1"])
        #expect(try self.call(untrusted, session: nil, headers: headers).status == .ok)
        let direct = try #require(self.backend.requests.last)
        #expect(direct.headers["X-Forwarded-For"] == ["127.0.0.1"] && direct.headers["Forwarded"].isEmpty)
        trusted.stop()
        let request = try #require(try auditRecords(at: auditPath).first { $0["event"] == .string("request") })
        #expect(request["peer"] == .string("198.51.100.7"))
    }
}
