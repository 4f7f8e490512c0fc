/// What the gateway does with the JSON-RPC messages an upstream sends back on a protected
/// resource: one `application/json` body, or the `data` of one `text/event-stream` event at a
/// time. Pure: the handler feeds it bytes and writes what it says.
///
/// Today it filters list results to the caller's token (``ListFilter``); the messages it has
/// no business with pass as the upstream wrote them, byte for byte.
public struct ResponseInspector: Sendable {
    public let policy: ResourcePolicy
    public let granted: Set<String>
    /// The negotiated revision is 2026-07-28 or later: filtered lists get `cacheScope`.
    public let cacheScoped: Bool
    /// The list requests of the exchange, by JSON-RPC id: whose results are filtered.
    public private(set) var lists: [JSONValue: String]
    /// The entries removed so far, as `method target` (for the audit record and the log).
    public private(set) var hidden: [String] = []
    /// Tool definitions seen that do not match their pins (`tool_pins`), for the audit trail,
    /// the metrics and the gateway's memory of what each tool looks like now.
    public private(set) var toolFindings: [ToolFinding] = []

    /// Every tool definition a `tools/list` result carried, approved or not: name -> digest.
    public private(set) var toolsSeen: [String: String] = [:]

    /// The tools seen and the findings since the last call, for the gateway to remember and
    /// report as soon as a list went by.
    public mutating func takeToolReport() -> (seen: [String: String], findings: [ToolFinding]) {
        defer {
            self.toolsSeen = [:]
            self.toolFindings = []
        }
        return (self.toolsSeen, self.toolFindings)
    }

    /// An inspector for the response to `body`, or nil when nothing in it can need a change
    /// (then the response is relayed without being read).
    public init?(for body: JSONRPCBody, policy: ResourcePolicy, granted: Set<String>, protocolVersion: String?) {
        guard policy.listFiltering || policy.toolPinning != nil else { return nil }
        var lists: [JSONValue: String] = [:]
        for message in body.messages {
            guard case .request(let id, let method, _) = message, ListFilter.kinds[method] != nil else { continue }
            if policy.listFiltering || method == "tools/list" { lists[Self.key(id)] = method }
        }
        guard !lists.isEmpty else { return nil }
        self.policy = policy
        self.granted = granted
        self.cacheScoped = protocolVersion.map { $0 >= "2026-07-28" } ?? false
        self.lists = lists
    }

    /// What the client reads instead of a message the gateway could not read.
    public static let unreadableMessage = "Bad Gateway: the MCP server sent a message the gateway cannot read (not strict JSON), so it was not relayed"

    public enum Verdict: Equatable, Sendable {
        /// Relay the bytes as they came.
        case pass
        /// Relay this JSON text instead.
        case replace(String)
    }

    /// Inspects one message or batch. While a list result is awaited, text the gateway cannot
    /// read (not strict JSON: a duplicate key, bad UTF-8, too deep) does not pass: a lenient
    /// client parser could read a list out of it that was never filtered. It is replaced by a
    /// JSON-RPC error for each awaited list.
    public mutating func inspect(_ json: some Collection<UInt8>) -> Verdict {
        guard !self.lists.isEmpty else { return .pass }
        guard let value = try? JSONParser(maxDepth: 128).parse(json) else {
            let errors = self.lists.keys.sorted { $0.serialized < $1.serialized }.map { id in
                JSONValue.object([
                    "jsonrpc": .string("2.0"), "id": id,
                    "error": .object(["code": .number(String(JSONRPCErrorCode.upstreamError)), "message": .string(Self.unreadableMessage)]),
                ])
            }
            self.lists.removeAll()
            return .replace(errors.count == 1 ? errors[0].serialized : JSONValue.array(errors).serialized)
        }
        switch value {
        case .object:
            guard let replaced = self.filtered(value) else { return .pass }
            return .replace(replaced.serialized)
        case .array(let messages):
            var changed = false
            let out = messages.map { message in
                guard let replaced = self.filtered(message) else { return message }
                changed = true
                return replaced
            }
            return changed ? .replace(JSONValue.array(out).serialized) : .pass
        default:
            return .pass
        }
    }

    /// An id as the client's JSON-RPC library compares it: a number by its value, so an
    /// upstream that echoes `1` as `1.0` or `1e0` does not slip a list past inspection.
    static func key(_ id: JSONValue) -> JSONValue {
        guard case .number(let text) = id else { return id }
        return .number(CanonicalJSON.number(text))
    }

    /// The response message with its list filtered, or nil when it stays as it is.
    private mutating func filtered(_ message: JSONValue) -> JSONValue? {
        guard case .object(var members) = message, let id = members["id"].map(Self.key), let method = self.lists[id], var result = members["result"] else { return nil }
        self.lists[id] = nil
        var changed = false
        if method == "tools/list", let pinning = self.policy.toolPinning, let checked = self.checkPins(result, pinning) {
            result = checked
            changed = true
        }
        if self.policy.listFiltering {
            let outcome = ListFilter.filter(result, method: method, policy: self.policy, granted: self.granted, cacheScoped: self.cacheScoped)
            if let replaced = outcome.result {
                let kind = ListFilter.kinds[method]!
                self.hidden += outcome.removed.map { "\(kind.useMethod) \($0)" }
                result = replaced
                changed = true
            }
        }
        guard changed else { return nil }
        members["result"] = result
        return .object(members)
    }

    /// Compares every tool of a `tools/list` result with its pin. Under `block` the tools
    /// that do not match are removed (the result to send instead is returned); under `alert`
    /// the result passes. Both note what they found.
    private mutating func checkPins(_ result: JSONValue, _ pinning: ToolPinning) -> JSONValue? {
        guard case .object(var members) = result, case .array(let tools)? = members["tools"] else { return nil }
        var kept: [JSONValue] = []
        for tool in tools {
            guard let (name, digest, finding) = pinning.pins.check(tool) else {
                // Nothing a client could call by name: under block it goes.
                if pinning.onChange == .alert { kept.append(tool) }
                continue
            }
            self.toolsSeen[name] = digest
            guard let finding else {
                kept.append(tool)
                continue
            }
            self.toolFindings.append(finding)
            if pinning.onChange == .alert { kept.append(tool) } else { self.hidden.append("tools/call \(name)") }
        }
        guard kept.count != tools.count else { return nil }
        members["tools"] = .array(kept)
        return .object(members)
    }
}
