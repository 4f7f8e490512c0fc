import BouncerCore
import BouncerTestSupport
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import BouncerProxy

/// Policy reloads on loopback: a reload that passes takes effect for the next request and keeps
/// what it should (open connections, key stores, sessions); one that fails changes nothing.
@Suite("Policy reload on loopback", .serialized)
struct PolicyReloadTests {
    let harness: LoopbackHarness
    let directory: URL
    var backend: LoopbackBackend { self.harness.backend }
    var policyPath: String { self.directory.appendingPathComponent("policy.yaml").path }
    var auditPath: String { self.directory.appendingPathComponent("audit.jsonl").path }

    init() throws {
        self.harness = try LoopbackHarness()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("reload-loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    func yaml(scope: String = "read", listen: String? = nil, _ change: (LoopbackPolicy) -> LoopbackPolicy = { $0 }) -> String {
        var policy = change(LoopbackPolicy(self.harness).audit("file: \(self.auditPath)").methods("tools/call:", "  echo: [\(scope)]"))
        if let listen { policy.listen = listen }
        return policy.yaml
    }

    /// Writes the policy the way Kubernetes updates a ConfigMap: a new file renamed over the old.
    func write(_ text: String) throws {
        let temporary = self.directory.appendingPathComponent(".policy-\(UUID().uuidString)")
        try text.write(to: temporary, atomically: false, encoding: .utf8)
        _ = rename(temporary.path, self.policyPath)
    }

    typealias Running = LoopbackHarness.Running

    func start(watch: Bool = false) throws -> Running {
        try self.write(self.yaml())
        let file = PolicyFile(path: self.policyPath)
        let (policy, files) = try file.load()
        let application = try GatewayApplication(policy: policy, group: self.harness.group, reload: (file, files, watch), logger: Logger(label: "test"))
        application.gateway.audit?.start(details: [:])
        let reloader = PolicyReloader(file: file, files: files, application: application, watch: watch, logger: Logger(label: "test"))
        return Running(application: application, server: try application.server.bind().wait(), reloader: reloader)
    }

    func call(_ running: Running, scope: String = "read") throws -> TestClient.Response {
        try self.harness.call(port: running.port, token: self.harness.token(scope: scope))
    }

    func records() throws -> [[String: JSONValue]] {
        try auditRecords(at: self.auditPath)
    }

    @Test func aTightenedRuleTakesEffectForTheNextRequestAndInFlightOnesFinish() async throws {
        let running = try self.start()
        #expect(try self.call(running).status == .ok)
        let fetches = self.backend.jwksFetches

        // A request in flight when the policy changes finishes under the policy it started with.
        self.backend.setUpstreamDelay(.milliseconds(600))
        let client = TestClient(group: self.harness.group)
        let (port, token) = (running.port, self.harness.token())
        let before = self.backend.requests.count
        let inFlight = Task.detached {
            try client.send(port: port, uri: "/mcp", headers: [("Authorization", "Bearer \(token)")], body: #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
        }
        #expect(await eventually { self.backend.requests.count > before }, "the request is with the upstream")
        try self.write(self.yaml(scope: "admin"))
        #expect(running.reloader!.reload(reason: "signal"))
        #expect(try await inFlight.value.status == .ok, "admitted before the reload: served")
        self.backend.setUpstreamDelay(.zero)

        let refused = try self.call(running)
        #expect(refused.status == .forbidden, "a read token no longer calls echo")
        #expect(try self.call(running, scope: "admin").status == .ok)
        #expect(self.backend.jwksFetches == fetches, "the authorization server did not change: its keys were kept")

        // Loosened again.
        try self.write(self.yaml())
        #expect(running.reloader!.reload(reason: "signal"))
        #expect(try self.call(running).status == .ok)
        running.stop()
        let reloads = try self.records().filter { $0["event"] == .string("reload") }
        #expect(reloads.count == 2 && reloads.allSatisfy { $0["what"] == .string("policy") && $0["reason"] == .string("signal") })
        let metrics = String(decoding: running.application.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains(#"mcp_bouncer_reloads_total{what="policy",result="ok"} 2"#))
    }

    @Test func aPolicyThatFailsLeavesTheOldOneInForce() throws {
        let running = try self.start()
        for broken in [
            "listen: [",  // not YAML
            self.yaml(scope: "not a scope"),  // a problem check reports
            self.yaml { $0.resource("upstream_tls: { ca_file: /nonexistent/ca.pem }") }.replacingOccurrences(of: "upstream: http:", with: "upstream: https:"),  // a CA file that does not load
        ] {
            try self.write(broken)
            #expect(!running.reloader!.reload(reason: "signal"))
            #expect(try self.call(running).status == .ok, "the old policy still serves")
        }
        try FileManager.default.removeItem(atPath: self.policyPath)
        #expect(!running.reloader!.reload(reason: "signal"), "a missing file")
        running.stop()
        let failures = try self.records().filter { $0["event"] == .string("reload_failed") }
        #expect(failures.count == 4)
        #expect(failures[1]["error"]?.arrayValue?.first?.stringValue?.contains("not a valid scope token") == true)
        let metrics = String(decoding: running.application.metrics.exposition(), as: UTF8.self)
        #expect(metrics.contains(#"mcp_bouncer_reloads_total{what="policy",result="failed"} 4"#))
    }

    @Test func settingsThatTakeARestartAreKeptAndReported() throws {
        let running = try self.start()
        try self.write(self.yaml(listen: "127.0.0.1:1") { $0.sessions("max_age: 600") })
        #expect(running.reloader!.reload(reason: "signal"))
        #expect(running.application.gateway.policy.listen.port == 0, "still the listen address it started with")
        #expect(running.application.gateway.policy.sessions.maxAgeSeconds == 600, "the rest applies")
        #expect(try self.call(running).status == .ok)
        running.stop()
        let kept = try self.records().filter { $0["event"] == .string("reload_kept") }
        #expect(kept.map { $0["setting"] } == [.string("listen")])
    }

    @Test func sessionsSurviveAReloadWithTheRandomKey() throws {
        let running = try self.start()
        defer { running.stop() }
        self.backend.setSessionReply("upstream-s")
        let sealed = try #require(try self.call(running).headers.first(name: "Mcp-Session-Id"))
        self.backend.setSessionReply(nil)
        try self.write(self.yaml { $0.limits("max_body_bytes: 2048") })
        #expect(running.reloader!.reload(reason: "signal"))
        let used = try self.harness.call(port: running.port, token: self.harness.token(), headers: [("Mcp-Session-Id", sealed)])
        #expect(used.status == .ok)
        #expect(self.backend.requests.last?.headers["Mcp-Session-Id"] == ["upstream-s"])
    }

    @Test func watchNoticesAFileReplacedByRename() async throws {
        let running = try self.start(watch: true)
        defer { running.stop() }
        let task = Task { try await running.reloader!.run() }
        defer { task.cancel() }
        #expect(try self.call(running).status == .ok)
        try self.write(self.yaml(scope: "admin"))
        #expect(await eventually(timeout: .seconds(6)) { (try? self.call(running).status) == .forbidden }, "noticed within 5 s")
    }
}
