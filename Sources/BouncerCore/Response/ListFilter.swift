/// Lists filtered to the token: `tools/list`, `prompts/list`, `resources/list` and
/// `resources/templates/list` results keep only the entries the caller could use, decided by
/// the same rules as requests (``ResourcePolicy/requiredScopes(method:target:)``). Filtering
/// hides; it never replaces the check of the call itself.
public enum ListFilter {
    /// A list method: the result member holding the entries, the method that uses an entry,
    /// and the entry's member naming its target.
    public struct ListKind: Sendable, Equatable {
        public let member: String
        public let useMethod: String
        public let targetKey: String
        /// Entries are URI templates, matched against the rules as patterns.
        public let isTemplate: Bool
    }

    public static let kinds: [String: ListKind] = [
        "tools/list": ListKind(member: "tools", useMethod: "tools/call", targetKey: "name", isTemplate: false),
        "prompts/list": ListKind(member: "prompts", useMethod: "prompts/get", targetKey: "name", isTemplate: false),
        "resources/list": ListKind(member: "resources", useMethod: "resources/read", targetKey: "uri", isTemplate: false),
        "resources/templates/list": ListKind(member: "resourceTemplates", useMethod: "resources/read", targetKey: "uriTemplate", isTemplate: true),
    ]

    /// What filtering did to one result.
    public struct Outcome: Sendable, Equatable {
        /// The result to send instead, or nil when it passes unchanged.
        public var result: JSONValue?
        /// The targets removed, in list order.
        public var removed: [String]
    }

    /// Filters one list result (`result` of the JSON-RPC response to `method`). Entries
    /// without a string target are removed (the client could not call them through the
    /// gateway anyway). A filtered result of the 2026-07-28 revision (`private` says it
    /// varies by caller) gets `cacheScope: "private"`; `nextCursor` and every other member
    /// are kept.
    public static func filter(_ result: JSONValue, method: String, policy: ResourcePolicy, granted: Set<String>, cacheScoped: Bool) -> Outcome {
        guard let kind = self.kinds[method], case .object(var members) = result, case .array(let entries)? = members[kind.member] else {
            return Outcome(result: nil, removed: [])
        }
        var kept: [JSONValue] = []
        kept.reserveCapacity(entries.count)
        var removed: [String] = []
        for entry in entries {
            guard let target = entry[kind.targetKey]?.stringValue else {
                removed.append("")
                continue
            }
            let visible = kind.isTemplate
                ? policy.permitsTemplate(target, method: kind.useMethod, granted: granted)
                : policy.permits(method: kind.useMethod, target: target, granted: granted)
            if visible { kept.append(entry) } else { removed.append(target) }
        }
        guard !removed.isEmpty else { return Outcome(result: nil, removed: []) }
        members[kind.member] = .array(kept)
        if cacheScoped || members["cacheScope"] != nil { members["cacheScope"] = .string("private") }
        return Outcome(result: .object(members), removed: removed)
    }
}

extension ResourcePolicy {
    /// The scopes a use of `target` by `method` needs, or nil when the policy denies it
    /// outright. The request side's rules: exact name first, then the most specific pattern.
    public func requiredScopes(method: String, target: String) -> [String]? {
        guard let (_, rule) = self.methods.rules.lookup(method) else { return nil }
        switch rule {
        case .scopes(let scopes):
            return scopes
        case .byTarget(let targets):
            var target = target
            if method == "resources/read" {
                guard let normalised = try? ResourceURI.normalise(target) else { return nil }
                target = normalised
            }
            return targets.lookup(target)?.value
        }
    }

    /// Whether a token granted `granted` could use `target` by `method`.
    public func permits(method: String, target: String, granted: Set<String>) -> Bool {
        self.requiredScopes(method: method, target: target)?.allSatisfy(granted.contains) ?? false
    }

    /// Whether some URI the template can expand to is one the token could read: a rule whose
    /// pattern can match an expansion (each `{...}` expression standing for any text) and
    /// whose scopes are granted. A method rule without per-target rules decides alone.
    public func permitsTemplate(_ template: String, method: String, granted: Set<String>) -> Bool {
        guard let (_, rule) = self.methods.rules.lookup(method) else { return false }
        switch rule {
        case .scopes(let scopes):
            return scopes.allSatisfy(granted.contains)
        case .byTarget(let targets):
            let expansions = NamePattern(Self.templatePattern(template))
            return targets.entries.contains { pattern, scopes in
                scopes.allSatisfy(granted.contains) && pattern.overlaps(expansions)
            }
        }
    }

    /// An RFC 6570 template as a name pattern: every expression becomes `*`. A literal `*`
    /// in the template (no URI has one unescaped) stays a wildcard, which only widens.
    static func templatePattern(_ template: String) -> String {
        var out = ""
        var inExpression = false
        for character in template {
            switch character {
            case "{" where !inExpression:
                inExpression = true
                if !out.hasSuffix("*") { out.append("*") }
            case "}" where inExpression:
                inExpression = false
            default:
                if !inExpression { out.append(character) }
            }
        }
        return out
    }
}

extension NamePattern {
    /// Whether some name matches both patterns (`*` is any run of characters in both).
    public func overlaps(_ other: NamePattern) -> Bool {
        let lhs = Array(self.text.unicodeScalars)
        let rhs = Array(other.text.unicodeScalars)
        // reachable[i][j]: some text takes lhs[..<i] and rhs[..<j] to the same place.
        var reachable = Array(repeating: Array(repeating: false, count: rhs.count + 1), count: lhs.count + 1)
        reachable[0][0] = true
        for i in 0...lhs.count {
            for j in 0...rhs.count where reachable[i][j] {
                let left = i < lhs.count ? lhs[i] : nil
                let right = j < rhs.count ? rhs[j] : nil
                // A star matches nothing more.
                if left == "*" { reachable[i + 1][j] = true }
                if right == "*" { reachable[i][j + 1] = true }
                // One more character: a star on one side reads the other side's literal.
                if let left, let right {
                    if left == "*" && right != "*" {
                        reachable[i][j + 1] = true
                    } else if right == "*" && left != "*" {
                        reachable[i + 1][j] = true
                    } else if left == right {
                        reachable[i + 1][j + 1] = true
                    }
                }
            }
        }
        return reachable[lhs.count][rhs.count]
    }
}
