/// Which MCP era an upstream speaks, as the policy says (`upstream_protocol`).
public enum UpstreamProtocol: String, Sendable, Hashable, CaseIterable {
    /// Asked with `server/discover` when the gateway starts (the default).
    case auto
    /// 2024-11-05 to 2025-11-25: `initialize`, sessions, server-to-client requests on streams.
    case legacy
    /// 2026-07-28: stateless, `server/discover`.
    case modern
}

/// What the gateway knows of an upstream's era.
public enum UpstreamEra: String, Sendable, Hashable, CaseIterable {
    /// Not asked yet, or no answer that says (an error, a refusal, a timeout).
    case unknown
    case legacy
    case modern

    /// The era a policy setting fixes (`auto` leaves it to discovery).
    public init(_ setting: UpstreamProtocol) {
        switch setting {
        case .auto: self = .unknown
        case .legacy: self = .legacy
        case .modern: self = .modern
        }
    }
}

/// Reads an upstream's answer to `server/discover` (a POST with `MCP-Protocol-Version:
/// 2026-07-28` and `Mcp-Method: server/discover`, no session): the era it shows, or why it shows
/// none. Pure: the proxy sends the request and hands the answer here.
///
/// - A result whose `supportedVersions` include 2026-07-28 is a modern server; a result without
///   it, a JSON-RPC error (a legacy server does not know the method), or a 400, 404, 405, 406 or
///   415 (a legacy transport refusing a request without a session or an unknown version) is a
///   legacy one.
/// - An error only a 2026-07-28 server gives (-32020 header mismatch, -32021 missing capability,
///   -32022 unsupported version, -32602 for the request's `_meta` envelope) is a modern server
///   refusing this request: it says the server is not legacy, but not that it serves the
///   gateway, so it is inconclusive too. So are 401, 403, 407, 408, 429, any 5xx, a redirect, a
///   body that is not JSON-RPC, and no answer (timeout, refused connection): never remembered.
public enum UpstreamDiscovery {
    public enum Verdict: Sendable, Hashable {
        case modern(versions: [String])
        case legacy(reason: String)
        case inconclusive(reason: String)
    }

    /// The id the gateway's `server/discover` request carries.
    public static let requestID = JSONValue.number("1")

    public static func judge(status: Int, contentType: String?, body: [UInt8]) -> Verdict {
        let error = Self.jsonRPCError(body)
        if let code = error?.code, Self.modernRefusals.contains(code) {
            return .inconclusive(reason: "HTTP \(status), JSON-RPC error \(code) (a 2026-07-28 server refusing the request): \(error?.message ?? "")")
        }
        switch status {
        case 200..<300:
            break
        case 400, 404, 405, 406, 415:
            return .legacy(reason: "HTTP \(status) to server/discover without a session")
        default:
            return .inconclusive(reason: "HTTP \(status)")
        }
        guard let message = MCPResponses.response(id: Self.requestID, body: body, contentType: contentType) else {
            return .inconclusive(reason: "HTTP \(status) without a JSON-RPC response to server/discover")
        }
        if let error = message["error"] {
            return .legacy(reason: "server/discover answered JSON-RPC error \(error["code"]?.serialized ?? "?")")
        }
        guard let result = message["result"] else {
            return .inconclusive(reason: "a response with neither result nor error")
        }
        guard case .array(let listed)? = result["supportedVersions"] else {
            return .legacy(reason: "a server/discover result without supportedVersions")
        }
        let versions = listed.compactMap(\.stringValue)
        guard versions.contains(MCPProtocol.statelessVersion) else {
            return .legacy(reason: "supportedVersions \(versions.joined(separator: ", ")) without \(MCPProtocol.statelessVersion)")
        }
        return .modern(versions: versions)
    }

    /// Whether the upstream's answer to a forwarded request contradicts its `era`, so that the
    /// gateway asks `server/discover` again (at most once a minute per upstream): a 2026-07-28
    /// request served (2xx) by an upstream known as legacy, which cannot serve one; answered
    /// 404 or 405 by one known as modern, which serves POST at its endpoint without sessions;
    /// or any answer while the era is unknown (it was down, or refused, at the last ask). The
    /// proxy asks this for 2026-07-28 requests only.
    public static func contradicts(era: UpstreamEra, requestVersion: String?, status: Int) -> Bool {
        switch era {
        case .unknown: return true
        case .legacy: return requestVersion == MCPProtocol.statelessVersion && (200..<300).contains(status)
        case .modern: return requestVersion == MCPProtocol.statelessVersion && (status == 404 || status == 405)
        }
    }

    /// Errors only a 2026-07-28 server gives a request it will not serve.
    static let modernRefusals: Set<Int64> = [-32020, -32021, -32022, -32602]

    /// The code and message of a JSON-RPC error body, whatever its id.
    private static func jsonRPCError(_ body: [UInt8]) -> (code: Int64, message: String)? {
        guard let value = try? JSONParser(maxDepth: 16).parse(body), let error = value["error"], let code = error["code"]?.int64Value else { return nil }
        return (code, error["message"]?.stringValue ?? "")
    }
}
