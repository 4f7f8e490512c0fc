import BouncerCore
import BouncerTestSupport
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
    }

    /// A crash can cut the last write short. The torn record is cut off when the file is
    /// opened again, the `start` record says how many bytes went, and the file verifies (with
    /// the key too): it used to keep the fragment and fail `audit verify` at that line forever.
    @Test func aTornLastRecordIsCutAndTheFileVerifiesAgain() throws {
        let trail = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        trail.start(details: [:])
        trail.stop()
        let fragment = #"{"v":1,"seq":4,"ev"#
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: self.path("audit.jsonl")))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(fragment.utf8))
        try handle.close()
        #expect(throws: AuditVerifier.Failure.self) { try self.verify(["audit.jsonl"]) }
        let resumed = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        #expect(resumed.tornTailBytes == fragment.utf8.count)
        resumed.start(details: [:])
        resumed.stop()
        let lines = try self.lines()
        #expect(lines.map { self.event($0) } == ["start", "stop", "checkpoint", "start", "stop", "checkpoint"])
        let start = try JSONParser().parse(Array(lines[3].utf8))
        #expect(start["torn_tail_bytes"]?.int64Value == Int64(fragment.utf8.count))
        let verifier = try self.verify(["audit.jsonl"])
        #expect(verifier.records == 6 && verifier.checkpoints == 2)
        // A file opened again without a crash cuts nothing and says nothing.
        let again = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        #expect(again.tornTailBytes == 0)
    }

    /// A whole record that lacks only its newline is kept; a file holding nothing but the cut
    /// start of its first record becomes a new chain; another file without a newline is never
    /// touched.
    @Test func aTornTailIsCutOnlyWhenItIsPartOfARecord() throws {
        let trail = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        trail.start(details: [:])
        trail.stop()
        var text = try String(contentsOfFile: self.path("audit.jsonl"), encoding: .utf8)
        text.removeLast()  // the last record's newline
        try text.write(toFile: self.path("audit.jsonl"), atomically: true, encoding: .utf8)
        let kept = try AuditTrail(settings: self.settings(), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        #expect(kept.tornTailBytes == 0)
        kept.start(details: [:])
        kept.stop()
        #expect(try self.verify(["audit.jsonl"]).records == 6)

        try #"{"event":"sta"#.write(toFile: self.path("first.jsonl"), atomically: true, encoding: .utf8)
        let fresh = try AuditTrail(settings: self.settings("first.jsonl"), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        #expect(fresh.tornTailBytes == 13)
        fresh.start(details: [:])
        fresh.stop()
        #expect(try self.verify(["first.jsonl"]).records == 3)

        try "no newline here".write(toFile: self.path("plain.txt"), atomically: true, encoding: .utf8)
        #expect(throws: AuditSinkError(.notAnAuditFile, "")) {
            try AuditTrail(settings: self.settings("plain.txt"), metrics: GatewayMetrics(), logger: Logger(label: "test"))
        }
        #expect(try String(contentsOfFile: self.path("plain.txt"), encoding: .utf8) == "no newline here")
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
