import BouncerCore
import BouncerTestSupport
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy
import NIOConcurrencyHelpers

/// The audit trail, metrics and trace context through the whole gateway on loopback.
@Suite("Audit, metrics and tracing on loopback", .serialized)
struct AuditLoopbackTests {
    let harness: LoopbackHarness
    let directory: URL
    let key = Curve25519.Signing.PrivateKey()

    init() throws {
        self.harness = try LoopbackHarness()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    var auditPath: String { self.directory.appendingPathComponent("audit.jsonl").path }

    typealias Running = LoopbackHarness.Running

    /// The gateway with an admin listener and a signed audit trail (or the `audit` lines given),
    /// a static upstream credential, and a rule for `admin_*` tools.
    func start(audit: [String]? = nil, startTrail: Bool = true, upstream: String? = nil) throws -> Running {
        let keyPath = self.directory.appendingPathComponent("signing.pem").path
        try AuditSigner(key: self.key).privateKeyPEM.write(toFile: keyPath, atomically: true, encoding: .utf8)
        var policy = LoopbackPolicy(self.harness).top("admin:", "  listen: 127.0.0.1:0")
            .audit(audit ?? ["file: \(self.auditPath)", "signing_key: \(keyPath)", "checkpoint_every: 3"])
            .resource("scopes_supported: [read]", "upstream_credentials:\n  static: { header: X-Api-Key, value: gateway-secret }")
            .methods("tools/call:", "  echo: [read]", #"  "admin_*": [admin]"#)
        if let upstream { policy = policy.upstream(upstream) }
        let running = try self.harness.start(policy, secrets: SecretSource(environment: { _ in nil }, readFile: { path in
            Result { try String(contentsOfFile: path, encoding: .utf8) }.mapError { SecretReadError(reason: "\($0)") }
        }))
        if startTrail { running.application.gateway.audit?.start(details: ["test": .bool(true)]) }
        return running
    }

    func records() throws -> [[String: JSONValue]] {
        try String(contentsOfFile: self.auditPath, encoding: .utf8).split(separator: "\n").map { line in
            try #require(try JSONParser().parse(Array(line.utf8)).objectValue)
        }
    }

    func call(_ running: Running, token: String?, tool: String = "echo", headers: [(String, String)] = []) throws -> TestClient.Response {
        try self.harness.call(port: running.port, token: token, tool: tool, headers: headers)
    }

    @Test func everyDecisionIsRecordedWithoutASecretAndTheChainVerifies() throws {
        let running = try self.start()
        let good = self.harness.token(scope: "read")
        let readOnly = self.harness.token(scope: "read")
        let forged = self.harness.token(scope: "read admin", signer: TestSigner.p256(kid: "k1"))
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        #expect(try self.call(running, token: good, headers: [("traceparent", traceparent), ("tracestate", "vendor=1")]).status == .ok)
        #expect(try self.call(running, token: good).status == .ok)
        #expect(try self.call(running, token: readOnly, tool: "admin_purge").status == .forbidden)
        #expect(try self.call(running, token: readOnly, tool: "unlisted").status == .forbidden)
        #expect(try self.call(running, token: nil).status == .unauthorized)
        #expect(try self.call(running, token: forged).status == .unauthorized)
        running.stop()

        // The chain and the signatures verify.
        var verifier = AuditVerifier(publicKey: self.key.publicKey)
        verifier.beginFile("audit.jsonl")
        let lines = try String(contentsOfFile: self.auditPath, encoding: .utf8).split(separator: "\n")
        for (index, line) in lines.enumerated() {
            if let failure = verifier.verify(line: Array(line.utf8), number: index + 1) { Issue.record("\(failure)") }
        }
        #expect(verifier.finish() == nil)
        #expect(verifier.checkpoints >= 3)

        let records = try self.records()
        let requests = records.filter { $0["event"] == .string("request") }
        #expect(records.first?["event"] == .string("start"))
        #expect(records.dropLast().last?["event"] == .string("stop"))
        #expect(requests.count == 6)
        let expected: [(String, String?, Int)] = [
            ("allowed", nil, 200), ("allowed", nil, 200), ("denied", "insufficient_scope", 403), ("denied", "policy_denied", 403),
            ("denied", "missing_token", 401), ("denied", "invalid_token.bad_signature", 401),
        ]
        for (record, (decision, reason, status)) in zip(requests, expected) {
            #expect(record["decision"] == .string(decision))
            #expect(record["reason"]?.stringValue == reason, "\(record)")
            #expect(record["status"] == .number("\(status)"))
            #expect(record["resource"] == .string("/mcp"))
            #expect(record["peer"] == .string("127.0.0.1"))
            #expect(record["trace_id"]?.stringValue?.count == 32)
        }
        #expect(requests[0]["trace_id"] == .string("4bf92f3577b34da6a3ce929d0e0e4736"))
        #expect(requests[0]["subject"] == .string("alice"))
        #expect(requests[0]["issuer"] == .string(self.harness.issuer))
        #expect(requests[0]["mcp_method"] == .string("tools/call"))
        #expect(requests[0]["target"] == .string("echo"))
        #expect(requests[0]["upstream_credential"] == .string("static"))
        #expect(requests[0]["outcome"] == .string("forwarded"))
        #expect(requests[0]["token_id"] == .string(String(Hex.encode(SHA256.hash(data: Array(good.utf8))).prefix(16))))
        #expect(requests[4]["token_id"] == nil)
        if case .number(let bytes)? = requests[0]["bytes_out"] { #expect(Int(bytes)! > 0) } else { Issue.record("bytes_out") }

        // No token, no credential, anywhere in the file.
        let text = try String(contentsOfFile: self.auditPath, encoding: .utf8)
        for secret in [good, forged, "gateway-secret"] + good.split(separator: ".").map(String.init) {
            #expect(!text.contains(secret))
        }

        // Trace context: the client's is forwarded as it is; without one, the upstream gets the
        // trace the audit record names.
        let upstream = self.harness.backend.requests.suffix(2)
        #expect(upstream.first?.headers["traceparent"] == [traceparent])
        #expect(upstream.first?.headers["tracestate"] == ["vendor=1"])
        let started = try #require(upstream.last?.headers.first(name: "traceparent"))
        #expect(started.hasPrefix("00-\(requests[1]["trace_id"]!.stringValue!)-"))
    }

    @Test func aMalformedTraceparentStartsANewTrace() throws {
        let running = try self.start()
        defer { running.stop() }
        #expect(try self.call(running, token: self.harness.token(), headers: [("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"), ("tracestate", "a=1")]).status == .ok)
        let forwarded = try #require(self.harness.backend.requests.last)
        let header = try #require(forwarded.headers.first(name: "traceparent"))
        #expect(!header.contains("00000000000000000000000000000000"))
        #expect(forwarded.headers["traceparent"].count == 1)
        #expect(forwarded.headers["tracestate"].isEmpty)
    }

    @Test func metricsAndHealthOnTheAdminListenerOnly() throws {
        let running = try self.start()
        defer { running.stop() }
        let token = self.harness.token()
        _ = try self.call(running, token: token)
        _ = try self.call(running, token: token, tool: "admin_purge")
        _ = try self.call(running, token: token, tool: "not_in_policy")
        _ = try self.call(running, token: nil)
        let adminPort = try #require(running.adminPort)
        let client = TestClient(group: self.harness.group)
        let scrape = try client.send(port: adminPort, method: .GET, uri: "/metrics")
        #expect(scrape.status == .ok)
        #expect(scrape.headers.first(name: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let text = scrape.body
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? { PrometheusText.value(text, name, labels) }
        #expect(value("mcp_bouncer_requests_total", ["resource": "/mcp", "method": "tools/call", "target": "echo", "outcome": "forwarded"]) == 1)
        // A glob the policy names is a label; a tool it does not name is "other".
        #expect(value("mcp_bouncer_requests_total", ["resource": "/mcp", "method": "tools/call", "target": "admin_*", "outcome": "denied"]) == 1)
        #expect(value("mcp_bouncer_requests_total", ["resource": "/mcp", "method": "tools/call", "target": "other", "outcome": "denied"]) == 1)
        #expect(value("mcp_bouncer_requests_total", ["resource": "/mcp", "method": "POST", "outcome": "denied"]) == 1)
        #expect(value("mcp_bouncer_rejections_total", ["resource": "/mcp", "reason": "missing_token"]) == 1)
        #expect(value("mcp_bouncer_token_verifications_total", ["result": "valid", "cache": "miss"]) == 1)
        #expect(value("mcp_bouncer_token_verifications_total", ["result": "valid", "cache": "hit"]) == 2)
        #expect(value("mcp_bouncer_request_duration_seconds_count", ["resource": "/mcp"]) == 4)
        #expect(value("mcp_bouncer_upstream_duration_seconds_count", ["resource": "/mcp"]) == 1)
        #expect(value("mcp_bouncer_authorization_server_requests_total", ["purpose": "jwks", "outcome": "2xx"]) == 1)
        #expect(value("mcp_bouncer_build_info", ["version": MCPBouncerVersion.current]) == 1)
        #expect(value("mcp_bouncer_audit_sink_up") == 1)
        #expect(value("mcp_bouncer_open_connections") != nil)
        // Subjects and tokens are never labels.
        #expect(!text.contains("alice"))
        #expect(try client.send(port: adminPort, method: .GET, uri: "/healthz").status == .ok)
        #expect(try client.send(port: adminPort, method: .GET, uri: "/readyz").status == .ok)
        #expect(try client.send(port: adminPort, method: .GET, uri: "/other").status == .notFound)
        #expect(try client.send(port: adminPort, method: .POST, uri: "/metrics").status == .methodNotAllowed)
        // The public port does not serve metrics.
        #expect(try client.send(port: running.port, method: .GET, uri: "/metrics").status == .notFound)
    }

    @Test func aFailingAuditSinkMakesTheGatewayNotReady() async throws {
        let running = try self.start(audit: ["file: /dev/full"])
        defer { running.stop() }
        let client = TestClient(group: self.harness.group)
        let adminPort = try #require(running.adminPort)
        // The writer thread finds the sink failing on its first write; readiness says so then.
        #expect(await eventually(timeout: .seconds(10)) { running.application.gateway.audit?.isHealthy == false })
        let readiness = try client.send(port: adminPort, method: .GET, uri: "/readyz")
        #expect(readiness.status == .serviceUnavailable)
        #expect(readiness.body.contains("audit sink failing"))
        #expect(try client.send(port: running.port, method: .GET, uri: "/readyz").status == .serviceUnavailable)
    }

    @Test func withRefuseNothingUnrecordedIsForwarded() throws {
        // The writer is not started, so the queue fills: 16 slots, all taken.
        let running = try self.start(audit: ["file: \(self.auditPath)", "on_overflow: refuse", "queue_capacity: 16"], startTrail: false)
        defer { running.stop() }
        let audit = try #require(running.application.gateway.audit)
        while audit.submit(.gateway(.reload, [:])) {}
        let before = self.harness.backend.requests.count
        let response = try self.call(running, token: self.harness.token())
        #expect(response.status == .serviceUnavailable)
        #expect(response.headers.first(name: "Retry-After") == "1")
        #expect(response.body.contains("audit_unavailable"))
        #expect(self.harness.backend.requests.count == before)
    }

    /// A connection the gateway closes mid-exchange (here: garbage pipelined behind a request
    /// still with the upstream) still gets its record, and the exchange is not left counted.
    @Test func anExchangeCutByTheGatewayIsRecorded() async throws {
        let running = try self.start()
        let token = self.harness.token()
        // The key set is loaded and the token verified: the next request goes upstream at once.
        #expect(try self.call(running, token: token).status == .ok)
        self.harness.backend.setUpstreamDelay(.milliseconds(500))
        defer { self.harness.backend.setUpstreamDelay(.zero) }
        let (channel, _) = try rawExchange(group: self.harness.group, port: running.port, send: self.harness.wire(token: token) + "\u{0}\u{1} GARBAGE\r\n\r\n")
        #expect(await eventually { !channel.isActive })
        running.stop()
        let requests = try self.records().filter { $0["event"] == .string("request") }
        #expect(requests.count == 2)
        #expect(requests.last?["outcome"] == .string("connection_closed"))
        #expect(requests.last?["reason"] == .string("connection_closed"))
        #expect(requests.last?["decision"] == .string("allowed"))
        #expect(requests.last?["upstream_ms"] != nil)
        let text = String(decoding: running.application.metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(text, "mcp_bouncer_requests_total", ["outcome": "connection_closed"]) == 1)
    }

    /// An upstream `application/json` response that breaks mid-body (a close before the
    /// declared length, an invalid chunk size) while the gateway held its head for inspection:
    /// nothing had reached the client, so it gets a 502 with a JSON-RPC error (it used to get
    /// a bare close), and the record says 502 (it said 200).
    @Test func aJSONBodyThatBreaksMidwayIsA502AndRecordedAsOne() throws {
        let replies = [
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":\"2.0\",",
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"jso\r\nZZ\r\n",
        ]
        for reply in replies {
            let upstream = try rawUpstream(group: self.harness.group, reply: reply, close: true)
            defer { try? upstream.close().wait() }
            let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
            let response = try self.call(running, token: self.harness.token(scope: "read"))
            running.stop()
            #expect(response.status == .badGateway, "\(reply)")
            let error = try JSONParser().parse(Array(response.body.utf8))
            #expect(error["id"] == .number("1") && error["error"]?["code"] != nil)
            let record = try #require(try self.records().last { $0["event"]?.stringValue == "request" })
            #expect(record["status"] == .number("502") && record["outcome"]?.stringValue == "upstream_error")
            try? FileManager.default.removeItem(atPath: self.auditPath)
        }
    }

    /// `status` is what the client got: 0 for a client that left while the gateway held the
    /// head (it used to say the upstream's 200).
    @Test func aClientThatLeftBeforeAByteIsRecordedWithStatusZero() async throws {
        let held = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":"
        let upstream = try rawUpstream(group: self.harness.group, reply: held, close: false)
        defer { upstream.close(promise: nil) }
        let running = try self.start(upstream: "http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
        let (client, received) = try rawExchange(group: self.harness.group, port: running.port, send: self.harness.wire(token: self.harness.token(scope: "read")))
        // No event says when the gateway holds the head (nothing of it goes out, by design);
        // the upstream answers at once on loopback.
        try await Task.sleep(for: .milliseconds(300))
        try await client.close().get()
        #expect(received.withLockedValue { $0 }.isEmpty, "nothing reached the client")
        #expect(await eventually {
            ((try? self.records()) ?? []).contains { $0["event"]?.stringValue == "request" && $0["outcome"]?.stringValue == "client_closed" }
        })
        running.stop()
        let record = try #require(try self.records().last { $0["event"]?.stringValue == "request" })
        #expect(record["status"] == .number("0") && record["outcome"]?.stringValue == "client_closed")
    }
}
