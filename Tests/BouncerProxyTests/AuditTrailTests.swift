import BouncerCore
import Crypto
import Foundation
import Logging
import Testing

@testable import BouncerProxy

/// The audit writer with real files: resume, reopen, overflow, failing sinks.
@Suite("Audit trail writer", .serialized)
struct AuditTrailTests {
    let directory: URL
    let key = Curve25519.Signing.PrivateKey()

    init() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    func settings(_ name: String = "audit.jsonl", every: Int = 1000, capacity: Int = 1024, overflow: AuditOverflow = .drop) -> AuditSettings {
        var settings = AuditSettings(file: self.path(name))
        settings.signingKey = AuditSigner(key: self.key)
        settings.checkpointEvery = every
        settings.queueCapacity = capacity
        settings.onOverflow = overflow
        return settings
    }

    func path(_ name: String) -> String { self.directory.appendingPathComponent(name).path }

    func lines(_ name: String = "audit.jsonl") throws -> [String] {
        try String(contentsOfFile: self.path(name), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func verify(_ names: [String]) throws -> AuditVerifier {
        var verifier = AuditVerifier(publicKey: self.key.publicKey)
        for name in names {
            verifier.beginFile(name)
            for (index, line) in try self.lines(name).enumerated() {
                if let failure = verifier.verify(line: Array(line.utf8), number: index + 1) { throw failure }
            }
        }
        if let failure = verifier.finish() { throw failure }
        return verifier
    }

    func event(_ line: String) -> String? {
        (try? JSONParser().parse(Array(line.utf8)))?["event"]?.stringValue
    }

    /// Polls `condition` for up to 10 s (the writer thread works on its own time).
    func eventually(_ condition: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    @Test func aRestartedGatewayContinuesTheChainOfItsFile() throws {
        let first = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        first.start(details: ["run": .number("1")])
        first.submit(.gateway(.reload, ["what": .string("x")]))
        first.stop()
        let second = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        second.start(details: ["run": .number("2")])
        second.stop()
        let lines = try self.lines()
        #expect(lines.map { self.event($0) } == ["start", "reload", "stop", "checkpoint", "start", "stop", "checkpoint"])
        let verifier = try self.verify(["audit.jsonl"])
        #expect(verifier.records == 7 && verifier.checkpoints == 2)
    }

    @Test func aFileThatIsNotAnAuditFileIsNeverAppendedTo() throws {
        try "some other log\n".write(toFile: self.path("other.log"), atomically: true, encoding: .utf8)
        #expect(throws: AuditSinkError(.notAnAuditFile, "")) {
            try AuditTrail(settings: self.settings("other.log"), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        }
        #expect(try String(contentsOfFile: self.path("other.log"), encoding: .utf8) == "some other log\n")
        // A crash can leave a cut last line: the chain continues from the last whole record,
        // on a line of its own, and verify names the cut line.
        let trail = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        trail.start(details: [:])
        trail.stop()
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: self.path("audit.jsonl")))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"v":1,"seq":4,"ev"#.utf8))
        try handle.close()
        let resumed = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        resumed.start(details: [:])
        resumed.stop()
        #expect(try self.lines().count == 7)
        #expect(throws: AuditVerifier.Failure.self) { try self.verify(["audit.jsonl"]) }
        do {
            _ = try self.verify(["audit.jsonl"])
        } catch let failure as AuditVerifier.Failure {
            #expect(failure.line == 4 && failure.kind == .malformed)
        }
    }

    @Test func reopenAfterRotationCarriesTheChainIntoTheNewFile() throws {
        let metrics = GatewayMetrics()
        let trail = try AuditTrail(settings: self.settings(), metrics: metrics, logger: Logger(label: "test"))
        trail.start(details: [:])
        trail.submit(.gateway(.reload, [:]))
        #expect(try self.eventually { try self.lines().count == 2 })
        // logrotate: rename, then SIGUSR1.
        try FileManager.default.moveItem(atPath: self.path("audit.jsonl"), toPath: self.path("audit.jsonl.1"))
        trail.reopen()
        #expect(try self.eventually { FileManager.default.fileExists(atPath: self.path("audit.jsonl")) })
        trail.submit(.gateway(.reload, [:]))
        trail.stop()
        // The old file ends with a checkpoint; the new one continues the chain.
        #expect(try self.lines("audit.jsonl.1").map { self.event($0) } == ["start", "reload", "checkpoint"])
        #expect(try self.lines().map { self.event($0) } == ["reload", "stop", "checkpoint"])
        #expect(try self.verify(["audit.jsonl.1", "audit.jsonl"]).records == 6)
    }

    @Test func aFullQueueDropsAndCountsThenSaysSo() throws {
        let metrics = GatewayMetrics()
        // Not started: nothing drains, so the queue fills.
        let trail = try AuditTrail(settings: self.settings(capacity: 16), metrics: metrics, logger: Logger(label: "test"))
        var accepted = 0
        for index in 0..<20 where trail.submit(.gateway(.reload, ["n": .number("\(index)")])) { accepted += 1 }
        #expect(accepted == 16)
        #expect(!trail.reserve())
        trail.stop()
        let lines = try self.lines()
        let dropped = try #require(lines.first { self.event($0) == "dropped" })
        #expect((try JSONParser().parse(Array(dropped.utf8)))["count"] == .number("5"))
        #expect(try self.verify(["audit.jsonl"]).records == lines.count)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(text, "mcp_bouncer_audit_records_dropped_total") == 5)
    }

    @Test func reservationsKeepRoomForTheirRecords() throws {
        let trail = try AuditTrail(settings: self.settings(capacity: 16, overflow: .refuse), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        for _ in 0..<16 { #expect(trail.reserve()) }
        #expect(!trail.reserve())
        // Unreserved records find no room; reserved ones always do.
        #expect(!trail.submit(.gateway(.reload, [:])))
        #expect(trail.submit(.gateway(.reload, [:]), reserved: true))
        trail.release()
        #expect(trail.reserve())
    }

    @Test func aFailingSinkIsReportedAndRecoversWithoutLosingTheChain() throws {
        // /dev/full accepts the open and fails every write with ENOSPC: a full disk.
        var settings = self.settings()
        settings.file = "/dev/full"
        let metrics = GatewayMetrics()
        let trail = try AuditTrail(settings: settings, metrics: metrics, logger: Logger(label: "test"))
        trail.start(details: [:])
        #expect(try self.eventually { !trail.isHealthy })
        #expect(trail.failureReason?.contains("No space left") == true)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(text, "mcp_bouncer_audit_sink_up") == 0)
        #expect((PrometheusText.value(text, "mcp_bouncer_audit_sink_errors_total") ?? 0) >= 1)
        trail.stop()
    }

    @Test func aRemovedFileIsNoticedAndReopenRecovers() throws {
        let trail = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        trail.start(details: [:])
        #expect(try self.eventually { (try? self.lines().count) == 1 })
        try FileManager.default.removeItem(atPath: self.path("audit.jsonl"))
        // Noticed when the writer next writes, at most once a second.
        #expect(try self.eventually {
            trail.submit(.gateway(.reload, [:]))
            return !trail.isHealthy
        })
        #expect(trail.failureReason?.contains("removed or replaced") == true)
        trail.reopen()
        #expect(try self.eventually { trail.isHealthy })
        trail.stop()
        #expect(try self.lines().last.map { self.event($0) } == "checkpoint")
    }
}
