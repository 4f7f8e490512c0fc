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

    /// An inspector for the response to `body`, or nil when nothing in it can need a change
    /// (then the response is relayed without being read).
    public init?(for body: JSONRPCBody, policy: ResourcePolicy, granted: Set<String>, protocolVersion: String?) {
        guard policy.listFiltering else { return nil }
        var lists: [JSONValue: String] = [:]
        for message in body.messages {
            if case .request(let id, let method, _) = message, ListFilter.kinds[method] != nil { lists[id] = method }
        }
        guard !lists.isEmpty else { return nil }
        self.policy = policy
        self.granted = granted
        self.cacheScoped = protocolVersion.map { $0 >= "2026-07-28" } ?? false
        self.lists = lists
    }

    public enum Verdict: Equatable, Sendable {
        /// Relay the bytes as they came.
        case pass
        /// Relay this JSON text instead.
        case replace(String)
    }

    /// Inspects one message or batch. Text that is not JSON, or not JSON-RPC, passes: the
    /// client's own parser judges it, and nothing in it was filtered by us.
    public mutating func inspect(_ json: some Collection<UInt8>) -> Verdict {
        guard !self.lists.isEmpty, let value = try? JSONParser(maxDepth: 128).parse(json) else { return .pass }
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

    /// The response message with its list filtered, or nil when it stays as it is.
    private mutating func filtered(_ message: JSONValue) -> JSONValue? {
        guard case .object(var members) = message, let id = members["id"], let method = self.lists[id], let result = members["result"] else { return nil }
        self.lists[id] = nil
        let outcome = ListFilter.filter(result, method: method, policy: self.policy, granted: self.granted, cacheScoped: self.cacheScoped)
        guard let replaced = outcome.result else { return nil }
        let kind = ListFilter.kinds[method]!
        self.hidden += outcome.removed.map { "\(kind.useMethod) \($0)" }
        members["result"] = replaced
        return .object(members)
    }
}
