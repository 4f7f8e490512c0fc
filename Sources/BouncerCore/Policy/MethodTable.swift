/// A name pattern from the policy: exact, or with `*` standing for any run of characters
/// (`notifications/*`, `list_*`, `file:///docs/*`).
public struct NamePattern: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    private let parts: [Substring]

    public init(_ text: String) {
        self.text = text
        self.parts = text.split(separator: "*", omittingEmptySubsequences: false)
    }

    public var isGlob: Bool { self.parts.count > 1 }
    /// Literal characters; the most literal matching pattern wins.
    public var specificity: Int { self.text.count - (self.parts.count - 1) }
    public var description: String { self.text }

    public func matches(_ name: String) -> Bool {
        guard self.isGlob else { return name == self.text }
        var rest = Substring(name)
        guard let first = self.parts.first, rest.hasPrefix(first) else { return false }
        rest = rest.dropFirst(first.count)
        let last = self.parts.last!
        for middle in self.parts.dropFirst().dropLast() where !middle.isEmpty {
            guard let found = rest.firstRange(of: middle) else { return false }
            rest = rest[found.upperBound...]
        }
        return rest.count >= last.count && rest.hasSuffix(last)
    }
}

/// Exact entries first, then the most specific glob, then nothing.
public struct PatternTable<Value: Sendable>: Sendable {
    private var exact: [String: Value] = [:]
    private var globs: [(pattern: NamePattern, value: Value)] = []

    public init() {}

    public mutating func insert(_ pattern: NamePattern, _ value: Value) {
        if pattern.isGlob {
            self.globs.append((pattern, value))
            // Stable: among equally specific patterns the first declared wins.
            self.globs = self.globs.enumerated()
                .sorted { ($0.element.pattern.specificity, -$0.offset) > ($1.element.pattern.specificity, -$1.offset) }
                .map(\.element)
        } else {
            self.exact[pattern.text] = value
        }
    }

    public func lookup(_ name: String) -> (pattern: String, value: Value)? {
        if let value = self.exact[name] { return (name, value) }
        for entry in self.globs where entry.pattern.matches(name) { return (entry.pattern.text, entry.value) }
        return nil
    }

    public var isEmpty: Bool { self.exact.isEmpty && self.globs.isEmpty }

    /// Every entry, exact names as patterns without wildcards.
    public var entries: [(pattern: NamePattern, value: Value)] {
        self.exact.map { (NamePattern($0.key), $0.value) } + self.globs
    }
}

/// What one JSON-RPC method needs.
public enum MethodRule: Sendable {
    /// The same scopes whatever the target.
    case scopes([String])
    /// Per tool / prompt name or resource URI; unlisted targets are denied.
    case byTarget(PatternTable<[String]>)
}

/// The `methods:` block of a resource.
public struct MethodTable: Sendable {
    public var rules = PatternTable<MethodRule>()

    public init() {}

    /// Methods whose rule may be keyed by target, and which parameter names the target.
    public static let targetParameter: [String: String] = [
        "tools/call": "name",
        "prompts/get": "name",
        "resources/read": "uri",
    ]
}
