import Crypto
import Yams

/// Tool pinning: the definitions of a server's tools as they were approved, by digest. A tool
/// whose definition changed since (a "rug pull": same name, new description or schema) or
/// that was never approved is caught where the gateway sees it: in `tools/list` results and
/// in `tools/call` requests.
public struct ToolPins: Sendable, Equatable {
    /// The members of a tool definition that are pinned: what a client (and its model) reads.
    public static let pinnedMembers = ["name", "title", "description", "inputSchema", "outputSchema", "annotations"]

    /// Where the pins were taken (informative).
    public var upstream: String?
    /// Tool name -> SHA-256 (hex) of the definition's RFC 8785 form.
    public var tools: [String: String]

    public init(upstream: String? = nil, tools: [String: String]) {
        self.upstream = upstream
        self.tools = tools
    }

    /// The digest of a tool definition: SHA-256 of the RFC 8785 form of its pinned members
    /// (others, such as `_meta` or `icons`, may change freely). Nil for an entry without a
    /// string `name`.
    public static func digest(of tool: JSONValue) -> (name: String, sha256: String)? {
        guard case .object(let members) = tool, let name = members["name"]?.stringValue else { return nil }
        var pinned: [String: JSONValue] = [:]
        for key in Self.pinnedMembers { if let value = members[key] { pinned[key] = value } }
        return (name, Hex.encode(SHA256.hash(data: CanonicalJSON.bytes(.object(pinned)))))
    }

    /// How a definition seen now stands against the pins.
    public enum Verdict: Sendable, Equatable {
        case approved
        /// Pinned with another digest.
        case changed(pinned: String)
        /// Not in the pin file.
        case unpinned
    }

    public func verdict(name: String, sha256: String) -> Verdict {
        guard let pinned = self.tools[name] else { return .unpinned }
        return pinned == sha256 ? .approved : .changed(pinned: pinned)
    }

    // MARK: The pin file

    public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { self.reason }
    }

    /// Reads a pin file as `mcp-bouncer pin` writes it:
    /// ```yaml
    /// upstream: http://127.0.0.1:8080/mcp
    /// tools:
    ///   - name: list_issues
    ///     sha256: 3f0c...
    /// ```
    public init(yaml: String) throws(FileError) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw FileError(reason: "not YAML: \(error)")
        }
        guard case .mapping(let root)? = node else { throw FileError(reason: "expected a mapping with 'tools'") }
        for key in root.keys {
            guard let name = key.scalar?.string, ["upstream", "tools"].contains(name) else {
                throw FileError(reason: "unknown key '\(key.scalar?.string ?? "?")' (allowed: upstream, tools)")
            }
        }
        self.upstream = root["upstream"]?.scalar?.string
        guard case .sequence(let entries)? = root["tools"] else { throw FileError(reason: "'tools' must be a list of {name, sha256}") }
        var tools: [String: String] = [:]
        for (index, entry) in entries.enumerated() {
            guard case .mapping(let fields) = entry, let name = fields["name"]?.scalar?.string, !name.isEmpty,
                  let digest = fields["sha256"]?.scalar?.string
            else { throw FileError(reason: "tools[\(index)]: expected name and sha256") }
            guard fields.count == 2 else { throw FileError(reason: "tools[\(index)] (\(name)): only name and sha256 are allowed") }
            guard digest.utf8.count == 64, digest.utf8.allSatisfy({ Hex.digits.contains($0) }) else {
                throw FileError(reason: "tools[\(index)] (\(name)): sha256 must be 64 lower-case hex digits")
            }
            guard tools.updateValue(digest, forKey: name) == nil else { throw FileError(reason: "tools[\(index)]: '\(name)' is pinned twice") }
        }
        self.tools = tools
    }

    /// The pin file, tools in name order, with a header saying what it is.
    public var yaml: String {
        var out = "# mcp-bouncer tool pins: SHA-256 of the RFC 8785 form of each tool's\n"
        out += "# \(Self.pinnedMembers.joined(separator: ", ")).\n"
        out += "# Review the definitions before approving them; name this file in a resource's tool_pins.\n"
        if let upstream { out += "upstream: \(Self.quoted(upstream))\n" }
        if self.tools.isEmpty { return out + "tools: []\n" }
        out += "tools:\n"
        for name in self.tools.keys.sorted(by: CanonicalJSON.precedes) {
            out += "  - name: \(Self.quoted(name))\n    sha256: \(self.tools[name]!)\n"
        }
        return out
    }

    /// A YAML double-quoted scalar (JSON string syntax is valid YAML).
    private static func quoted(_ text: String) -> String {
        CanonicalJSON.serialize(.string(text))
    }
}

/// A tool definition that is not the approved one.
public struct ToolFinding: Sendable, Equatable {
    public var name: String
    /// The approved digest; nil when the tool was never approved.
    public var pinned: String?
    public var seen: String

    public init(name: String, pinned: String?, seen: String) {
        self.name = name
        self.pinned = pinned
        self.seen = seen
    }
}

extension ToolPins {
    /// One tool of a list: its name and digest, and a finding when it is not the approved
    /// definition. Nil for an entry without a string name.
    public func check(_ tool: JSONValue) -> (name: String, sha256: String, finding: ToolFinding?)? {
        guard let (name, digest) = Self.digest(of: tool) else { return nil }
        switch self.verdict(name: name, sha256: digest) {
        case .approved: return (name, digest, nil)
        case .changed(let pinned): return (name, digest, ToolFinding(name: name, pinned: pinned, seen: digest))
        case .unpinned: return (name, digest, ToolFinding(name: name, pinned: nil, seen: digest))
        }
    }
}

/// `on_tool_change`: what a changed or unpinned tool gets.
public enum ToolChangeAction: String, Sendable, CaseIterable {
    /// Hidden from lists; calls refused.
    case block
    /// Passed, audited and logged.
    case alert
}

/// A resource's tool pins and what to do about a definition that does not match.
public struct ToolPinning: Sendable, Equatable {
    public var pins: ToolPins
    public var onChange: ToolChangeAction

    public init(pins: ToolPins, onChange: ToolChangeAction) {
        self.pins = pins
        self.onChange = onChange
    }

    /// Why a `tools/call` is refused under `block`: the tool was never approved, or the
    /// gateway last saw it (in a list it relayed) with a definition other than the approved
    /// one. Nil when the call may go on (under `alert` always).
    public func refusal(forCall tool: String, lastSeen: String?) -> ToolRefusal? {
        guard self.onChange == .block else { return nil }
        guard let pinned = self.pins.tools[tool] else { return .neverApproved }
        if let lastSeen, lastSeen != pinned { return .changed }
        return nil
    }
}

extension ToolPinning {
    /// The first `tools/call` of a body whose tool is refused, and why; `lastSeen` gives the
    /// digest each tool was last seen with.
    public func refusal(for body: JSONRPCBody, lastSeen: (String) -> String?) -> (tool: String, reason: ToolRefusal)? {
        for message in body.messages where message.method == "tools/call" {
            guard let tool = try? message.target() else { continue }
            if let reason = self.refusal(forCall: tool, lastSeen: lastSeen(tool)) { return (tool, reason) }
        }
        return nil
    }
}

public enum ToolRefusal: String, Sendable, Equatable {
    case neverApproved = "never_approved"
    case changed
}
