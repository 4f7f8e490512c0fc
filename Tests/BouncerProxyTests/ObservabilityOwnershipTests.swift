import Foundation
import Testing

/// Observability has one owner: metric names live in `GatewayMetrics` (each metric a typed
/// member), audit events are submitted by `GatewayEvents` (and request records by
/// `RequestRecorder`, the trail's own records by `AuditTrail`), and the wall clock is read in
/// one place. A new feature that reaches past them fails here.
@Suite("Observability ownership")
struct ObservabilityOwnershipTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources")

    /// Every Swift file under Sources/, by its path relative to it.
    static func files() throws -> [(path: String, text: String)] {
        let enumerator = FileManager.default.enumerator(at: Self.sources, includingPropertiesForKeys: nil)
        var files: [(String, String)] = []
        while let url = enumerator?.nextObject() as? URL {
            guard url.pathExtension == "swift" else { continue }
            files.append((String(url.path.dropFirst(Self.sources.path.count + 1)), try String(contentsOf: url, encoding: .utf8)))
        }
        return files
    }

    static func offenders(_ needle: String, allowed: Set<String>) throws -> [String] {
        try Self.files().filter { !allowed.contains($0.path) && $0.text.contains(needle) }.map(\.path).sorted()
    }

    @Test func metricNamesAppearOnlyInGatewayMetrics() throws {
        let named = try Self.files().filter { file in
            file.path != "BouncerProxy/Observability/GatewayMetrics.swift"
                && file.text.replacingOccurrences(of: "mcp_bouncer_development_only", with: "").contains("\"mcp_bouncer_")
        }
        #expect(named.map(\.path) == [])
    }

    @Test func auditEventsAreSubmittedOnlyByTheirOwners() throws {
        let owners: Set<String> = [
            "BouncerProxy/Observability/GatewayEvents.swift", "BouncerProxy/Observability/RequestRecorder.swift", "BouncerProxy/Observability/AuditTrail.swift",
        ]
        #expect(try Self.offenders(".submit(", allowed: owners) == [])
    }

    @Test func theWallClockIsReadInOnePlace() throws {
        // The development authorization server (demo only) keeps its own clock.
        let clockReads = try Self.files().filter { !$0.path.hasPrefix("BouncerDevServer/") }
            .filter { $0.text.contains("clock_gettime") || $0.text.contains("Date().timeIntervalSince1970") }.map(\.path)
        #expect(clockReads == ["BouncerProxy/Observability/SystemClock.swift"])
    }
}
