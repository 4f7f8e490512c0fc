/// What the protocol bridge changes in the messages between a 2026-07-28 client and a legacy
/// upstream (2024-11-05 to 2025-11-25), as pure functions over JSON values: the
/// `server/discover` result the gateway answers from the upstream's `initialize` result, the
/// completion of legacy results (`resultType`, cache hints), the mapping of legacy errors, and
/// the `_meta` the upstream gets. The bridge's sessions and transport use these; each rule is
/// tested here alone.
public enum BridgeMapping {
    /// The `_meta` prefix 2026-07-28 reserves (protocol version, client capabilities and info,
    /// log level, subscription ids...).
    public static let reservedMetaPrefix = "io.modelcontextprotocol/"

    /// Methods whose 2026-07-28 results carry `ttlMs` and `cacheScope`.
    public static let cacheableMethods: Set<String> = [
        "server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read",
    ]

    /// The server capabilities the bridge carries to a 2026-07-28 client: tools, prompts and
    /// resources (without `listChanged` and `subscribe`, which need subscriptions), logging and
    /// completions, each without sub-capabilities. Anything else a legacy server announces is
    /// not offered.
    public static let bridgedCapabilities: Set<String> = ["tools", "prompts", "resources", "logging", "completions"]

    /// The client capabilities the bridge can relay to a legacy upstream: its requests for
    /// them become entries of an `InputRequiredResult`.
    public static let relayableClientCapabilities = ["elicitation", "sampling", "roots"]

    /// The methods whose results may be an `InputRequiredResult` (2026-07-28).
    public static let inputRequiredMethods: Set<String> = ["tools/call", "prompts/get", "resources/read"]

    /// The `inputRequests` key of the one upstream request a parked call waits on.
    public static let inputKey = "upstream"

    /// The result that asks the client for input: the upstream's request (method and params)
    /// under ``inputKey``, and the sealed state the retry must carry.
    public static func inputRequiredResult(method: String, params: JSONValue?, requestState: String) -> JSONValue {
        var request: [String: JSONValue] = ["method": .string(method)]
        if let params { request["params"] = params }
        return .object([
            "resultType": .string("input_required"), "inputRequests": .object([Self.inputKey: .object(request)]), "requestState": .string(requestState),
        ])
    }

    /// RFC 5424 severities as MCP names them, least severe first.
    public static let logLevels = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]

    /// Whether the upstream's `notifications/message` reaches a 2026-07-28 client that asked
    /// for `requested` (`io.modelcontextprotocol/logLevel`): only when it asked, and only at
    /// or above that level. A level the gateway does not know is not relayed.
    public static func relaysLog(_ message: JSONValue, requested: String?) -> Bool {
        guard let requested, let floor = Self.logLevels.firstIndex(of: requested),
              let level = message["params"]?["level"]?.stringValue, let rank = Self.logLevels.firstIndex(of: level)
        else { return false }
        return rank >= floor
    }

    /// Messages as a `text/event-stream` body, one `message` event each.
    public static func eventStream(_ messages: [JSONValue]) -> String {
        var out = ""
        for message in messages { out += ServerSentEvent(type: "message", data: message.serialized).serialized }
        return out
    }

    /// The client's capability a server-to-client request needs.
    public static func neededCapability(_ method: String) -> String? {
        switch method {
        case ServerRequestGuard.elicitation: return "elicitation"
        case ServerRequestGuard.sampling: return "sampling"
        case ServerRequestGuard.roots: return "roots"
        default: return nil
        }
    }

    /// The `server/discover` result for a legacy upstream, from its `initialize` result: the
    /// revisions a client may use through the gateway (2026-07-28 first, then the one the
    /// upstream negotiated), the capabilities the bridge can carry, the server's identity in
    /// `_meta`, its instructions, and the 2026-07-28 result members.
    public static func discoverResult(fromInitialize initialize: JSONValue) -> JSONValue {
        var versions: [JSONValue] = [.string(MCPProtocol.statelessVersion)]
        if let negotiated = initialize["protocolVersion"]?.stringValue, negotiated != MCPProtocol.statelessVersion {
            versions.append(.string(negotiated))
        }
        var capabilities: [String: JSONValue] = [:]
        if case .object(let announced)? = initialize["capabilities"] {
            for name in announced.keys where Self.bridgedCapabilities.contains(name) {
                capabilities[name] = .object([:])
            }
        }
        var result: [String: JSONValue] = [
            "supportedVersions": .array(versions), "capabilities": .object(capabilities), "resultType": .string("complete"),
            "ttlMs": .number("0"), "cacheScope": .string("private"),
        ]
        if let instructions = initialize["instructions"]?.stringValue { result["instructions"] = .string(instructions) }
        if let info = initialize["serverInfo"], info.objectValue != nil {
            result["_meta"] = .object([Self.reservedMetaPrefix + "serverInfo": info])
        }
        return .object(result)
    }

    /// A legacy upstream's result as a 2026-07-28 client reads it: `resultType: "complete"`,
    /// and for cacheable methods `ttlMs` (0: the bridge promises nothing) and `cacheScope`
    /// (`private` when the result may differ between callers: a list filtered to the token, or
    /// an upstream that sees who calls through an exchanged token). Members the upstream set
    /// itself are kept; a result that is not an object is returned as it is.
    public static func completeResult(_ result: JSONValue, method: String, variesByCaller: Bool) -> JSONValue {
        guard case .object(var members) = result else { return result }
        if members["resultType"] == nil { members["resultType"] = .string("complete") }
        if Self.cacheableMethods.contains(method) {
            if members["ttlMs"] == nil { members["ttlMs"] = .number("0") }
            if variesByCaller {
                members["cacheScope"] = .string("private")
            } else if members["cacheScope"] == nil {
                members["cacheScope"] = .string("public")
            }
        }
        return .object(members)
    }

    /// Legacy error codes 2026-07-28 renamed: -32002 (resource not found, 2025-11-25) is
    /// -32602 (invalid params). Others pass as they are.
    public static func mapError(_ error: JSONValue) -> JSONValue {
        guard case .object(var members) = error, members["code"]?.int64Value == -32002 else { return error }
        members["code"] = .number("-32602")
        return .object(members)
    }

    /// The params a legacy upstream gets for a 2026-07-28 request: the reserved
    /// `io.modelcontextprotocol/*` `_meta` keys removed (the version, capabilities and identity
    /// travel in the upstream session instead); the progress token, trace context and any other
    /// `_meta` key kept; an emptied `_meta` removed.
    public static func legacyParams(_ params: JSONValue?) -> JSONValue? {
        guard case .object(var members)? = params, case .object(let meta)? = members["_meta"] else { return params }
        let kept = meta.filter { !$0.key.hasPrefix(Self.reservedMetaPrefix) }
        members["_meta"] = kept.isEmpty ? nil : .object(kept)
        return .object(members)
    }
}
