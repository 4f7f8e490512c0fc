/// What one message a legacy upstream sends while it answers a bridged request means for the
/// bridge. The upstream answers on the POST's response (a JSON body, or SSE events), and on
/// that stream it may also ask the client something or tell it something.
public enum BridgeUpstreamMessage: Sendable, Equatable {
    /// The response to the bridged request: its `result` or `error` member.
    case final(result: JSONValue?, error: JSONValue?)
    /// `ping`: the gateway answers it itself (2026-07-28 has no ping).
    case ping(id: JSONValue)
    /// A request for the client's input: elicitation, sampling or roots.
    case input(id: JSONValue, method: String, params: JSONValue?)
    /// Any other request the client cannot be asked in 2026-07-28: answered -32601.
    case unsupported(id: JSONValue, method: String)
    /// A progress notification (relayed when the client is streaming).
    case progress(JSONValue)
    /// A log message (relayed only when the request asked for a log level).
    case log(JSONValue)
    /// Anything else (other notifications, responses to other ids): dropped.
    case ignored

    /// What it is, for a log line.
    public var label: String {
        switch self {
        case .final(_, let error): error == nil ? "result" : "error"
        case .ping: "ping"
        case .input(_, let method, _): method
        case .unsupported(_, let method): "unsupported \(method)"
        case .progress: "progress"
        case .log: "log"
        case .ignored: "ignored"
        }
    }

    public static func classify(_ message: JSONValue, upstreamID: JSONValue) -> BridgeUpstreamMessage {
        guard case .object(let members) = message else { return .ignored }
        if let method = members["method"]?.stringValue {
            if let id = members["id"] {
                if method == "ping" { return .ping(id: id) }
                if ServerRequestGuard.methods.contains(method) { return .input(id: id, method: method, params: members["params"]) }
                return .unsupported(id: id, method: method)
            }
            switch method {
            case "notifications/progress": return .progress(message)
            case "notifications/message": return .log(message)
            default: return .ignored
            }
        }
        guard members["id"] == upstreamID else { return .ignored }
        let result = members["result"]
        let error = members["error"]
        guard (result == nil) != (error == nil) else { return .final(result: nil, error: .object(["code": .number("-32603"), "message": .string("the MCP server sent a malformed response")])) }
        return .final(result: result, error: error)
    }

    /// The JSON-RPC response the gateway gives the upstream for a request of its own.
    public static func reply(id: JSONValue, result: JSONValue) -> JSONValue {
        .object(["jsonrpc": .string("2.0"), "id": id, "result": result])
    }

    public static func replyError(id: JSONValue, code: Int, message: String) -> JSONValue {
        .object(["jsonrpc": .string("2.0"), "id": id, "error": .object(["code": .number(String(code)), "message": .string(message)])])
    }
}
