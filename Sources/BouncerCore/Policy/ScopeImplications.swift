/// `scope_implies` of an authorization server: a broader scope grants narrower ones
/// (`jira:admin` -> `jira:write` -> `jira:read`), transitively. MCP 2026-07-28 requires that a
/// scope hierarchy be honoured; every decision (requests, list filtering) uses the expanded
/// set, while challenges still name the scopes the policy lists.
public struct ScopeImplications: Sendable, Equatable {
    /// Each scope with every scope it implies, directly or not (itself excluded).
    public let closure: [String: Set<String>]

    public static let none = ScopeImplications(closure: [:])

    private init(closure: [String: Set<String>]) {
        self.closure = closure
    }

    public var isEmpty: Bool { self.closure.isEmpty }

    /// A cycle (`a -> b -> a`), which would make two scopes the same scope: the policy is
    /// refused, naming it.
    public struct Cycle: Error, Equatable, Sendable, CustomStringConvertible {
        public let scopes: [String]
        public var description: String { self.scopes.joined(separator: " -> ") }
    }

    /// Builds the closure of the direct implications, or names a cycle.
    public init(_ direct: [String: [String]]) throws(Cycle) {
        var closure: [String: Set<String>] = [:]
        // Depth-first from each scope, in name order so a reported cycle is stable.
        var done: Set<String> = []
        func visit(_ scope: String, path: [String]) throws(Cycle) -> Set<String> {
            if let index = path.firstIndex(of: scope) { throw Cycle(scopes: Array(path[index...]) + [scope]) }
            if done.contains(scope) { return closure[scope] ?? [] }
            var implied: Set<String> = []
            for next in direct[scope] ?? [] {
                implied.insert(next)
                implied.formUnion(try visit(next, path: path + [scope]))
            }
            done.insert(scope)
            if !implied.isEmpty { closure[scope] = implied }
            return implied
        }
        for scope in direct.keys.sorted() { _ = try visit(scope, path: []) }
        self.closure = closure
    }

    /// The granted scopes with everything they imply.
    public func expand(_ granted: Set<String>) -> Set<String> {
        guard !self.closure.isEmpty else { return granted }
        var expanded = granted
        for scope in granted { if let implied = self.closure[scope] { expanded.formUnion(implied) } }
        return expanded
    }
}
