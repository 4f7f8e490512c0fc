import BouncerCore
import BouncerTLS
import NIOConcurrencyHelpers
import NIOCore

/// The last definition digest seen for each of a resource's tools, from the `tools/list`
/// results its connections relayed, shared by them: a call to a tool whose definition changed
/// is refused even on a connection that never listed tools. Bounded: past ``capacity`` names
/// (an upstream inventing tools) the memory starts over, and calls are then judged by the
/// pins alone until the next list.
final class ToolDefinitionMemory: Sendable {
    static let capacity = 10_000
    private let state = NIOLockedValueBox((seen: [String: String](), reported: Set<String>()))

    func lastSeen(_ tool: String) -> String? {
        self.state.withLockedValue { $0.seen[tool] }
    }

    /// Remembers what a list showed; returns the findings not reported before (one audit
    /// record, metric and warning per tool and definition, not one per request).
    func learn(_ seen: [String: String], findings: [ToolFinding]) -> [ToolFinding] {
        guard !seen.isEmpty || !findings.isEmpty else { return [] }
        return self.state.withLockedValue { state in
            if state.seen.count + seen.count > Self.capacity { state.seen.removeAll() }
            if state.reported.count + findings.count > Self.capacity { state.reported.removeAll() }
            state.seen.merge(seen) { _, new in new }
            return findings.filter { state.reported.insert("\($0.name)\u{0}\($0.seen)").inserted }
        }
    }
}
