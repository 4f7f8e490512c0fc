/// The outcome of checking one request body against a resource's `methods:`.
public enum AccessDecision: Sendable, Hashable {
    case allow
    /// Some scopes are missing. `needed` is every scope the operation requires (MCP
    /// step-up: the client asks for all of them in one go).
    case insufficientScope(needed: [String])
    /// No scope would help: the policy does not list this method or target.
    case denied(reason: String)
}

/// The label of one checked message, for logs: `tools/call create_issue`.
public struct OperationLabel: Sendable, Hashable, CustomStringConvertible {
    public var method: String
    public var target: String?
    public init(method: String, target: String?) {
        self.method = method
        self.target = target
    }

    public var description: String { self.target.map { "\(self.method) \($0)" } ?? self.method }
}

extension ResourcePolicy {
    /// The scopes one message needs, or why it is denied outright.
    public func requiredScopes(for message: JSONRPCMessage) throws(JSONRPCFailure) -> Result<[String], AccessDenial> {
        guard let method = message.method else {
            guard let scopes = self.clientResponses else {
                return .failure(AccessDenial(reason: "JSON-RPC responses from the client are not allowed by the policy (client_responses)"))
            }
            return .success(scopes)
        }
        guard let (_, rule) = self.methods.rules.lookup(method) else {
            return .failure(AccessDenial(reason: "method \(method) is not allowed by the policy"))
        }
        switch rule {
        case .scopes(let scopes):
            return .success(scopes)
        case .byTarget(let targets):
            guard var target = try message.target() else {
                return .failure(AccessDenial(reason: "method \(method) has per-target rules but no target"))
            }
            if method == "resources/read" {
                // Rules name URIs in normalised form (the loader normalises them too).
                do {
                    target = try ResourceURI.normalise(target)
                } catch {
                    throw JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidParams, message: "Invalid params: params.uri cannot be checked safely: \(error.reason)", id: message.id)
                }
            }
            guard let (_, scopes) = targets.lookup(target) else {
                return .failure(AccessDenial(reason: "\(method) \(target) is not allowed by the policy"))
            }
            return .success(scopes)
        }
    }

    /// Decides a whole body: every message of a batch is checked before anything is forwarded.
    /// The list of every scope needed is made only when one is missing (an allowed request,
    /// nearly every one, allocates nothing here).
    public func decide(_ body: JSONRPCBody, granted: Set<String>) throws(JSONRPCFailure) -> AccessDecision {
        var missing = false
        for message in body.messages {
            switch try self.requiredScopes(for: message) {
            case .failure(let denial):
                return .denied(reason: denial.reason)
            case .success(let scopes):
                missing = missing || !scopes.allSatisfy(granted.contains)
            }
        }
        guard missing else { return .allow }
        var needed: [String] = []
        for message in body.messages {
            guard case .success(let scopes) = try self.requiredScopes(for: message) else { continue }
            for scope in scopes where !needed.contains(scope) { needed.append(scope) }
        }
        return .insufficientScope(needed: needed)
    }
}

public struct AccessDenial: Error, Sendable, Hashable {
    public var reason: String
}

/// Checks of the MCP HTTP headers that mirror or qualify the body.
public enum MCPHeaderRules {
    /// 2026-07-28 `Mcp-Method` / `Mcp-Name` must agree with the body they mirror
    /// (intermediaries that read the body MUST reject a mismatch). Returns why not.
    public static func mirroredHeaderMismatch(mcpMethod: String?, mcpName: String?, body: JSONRPCBody) -> String? {
        guard mcpMethod != nil || mcpName != nil else { return nil }
        guard !body.isBatch, let message = body.messages.first else {
            return "Mcp-Method / Mcp-Name cannot describe a batch"
        }
        if let mcpMethod, mcpMethod != message.method {
            return "Mcp-Method '\(mcpMethod)' does not match the body's method '\(message.method ?? "(response)")'"
        }
        if let mcpName {
            guard let decoded = self.decodeHeaderValue(mcpName) else { return "Mcp-Name is not a valid encoded value" }
            let target = try? message.target()
            if decoded != target {
                return "Mcp-Name '\(decoded)' does not match the body's \(message.method == "resources/read" ? "params.uri" : "params.name")"
            }
        }
        return nil
    }

    /// Header values are plain, or `=?base64?<standard base64 of UTF-8>?=` for values
    /// that are not plain ASCII.
    public static func decodeHeaderValue(_ value: String) -> String? {
        guard value.hasPrefix("=?base64?"), value.hasSuffix("?="), value.count >= 11 else { return value }
        var text = value.dropFirst(9).dropLast(2)
        while text.hasSuffix("=") { text = text.dropLast() }
        let urlSafe = text.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 }
        guard let bytes = Base64URL.decode(String(urlSafe)) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The `_meta` protocol version a 2026-07-28 request carries, which must equal the header.
    public static func metaProtocolVersion(_ message: JSONRPCMessage) -> String? {
        message.params?["_meta"]?["io.modelcontextprotocol/protocolVersion"]?.stringValue
    }
}
