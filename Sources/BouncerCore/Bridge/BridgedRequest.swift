import Crypto

/// A 2026-07-28 request the bridge serves in a legacy upstream's place, checked as the
/// 2026-07-28 transport requires of a server (`basic/transports`, `basic/versioning`): the
/// `_meta` envelope (protocol version and client capabilities) present, `Mcp-Method` present
/// (and `Mcp-Name` for the methods that name something), each equal to the body. Equality of
/// the mirrored headers and of the `_meta` version with the header is checked for every
/// request at stage 5 (``Enforcement``); here what a server adds on top.
public struct BridgedRequest: Sendable {
    /// The client's id; nil for a notification.
    public var id: JSONValue?
    public var method: String
    public var params: JSONValue?
    /// `io.modelcontextprotocol/clientCapabilities`.
    public var declaredCapabilities: [String: JSONValue]
    /// `io.modelcontextprotocol/logLevel`: without it, the upstream's log messages are not
    /// relayed.
    public var logLevel: String?
    /// A retry of a multi round-trip call: the sealed state and the client's answers.
    public var requestState: String?
    public var inputResponses: [String: JSONValue]

    public static let metaKeys = (
        protocolVersion: "io.modelcontextprotocol/protocolVersion", clientCapabilities: "io.modelcontextprotocol/clientCapabilities",
        logLevel: "io.modelcontextprotocol/logLevel"
    )

    /// Checks a single-message body (stage 5 refused batches for this revision). The failure
    /// is the JSON-RPC error the client gets, at 400.
    public static func check(_ body: JSONRPCBody, facts: RequestHeadFacts) -> Result<BridgedRequest, JSONRPCFailure> {
        guard !body.isBatch, body.messages.count == 1, let message = body.messages.first else {
            return .failure(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: one message per request in 2026-07-28", id: nil))
        }
        let id = message.id
        guard let method = message.method else {
            return .failure(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: 2026-07-28 has no client responses; answers travel in inputResponses", id: id
            ))
        }
        guard facts.mcpMethod != nil else {
            return .failure(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.headerMismatch, message: "Bad Request: the Mcp-Method header is required", id: id))
        }
        if MethodTable.targetParameter[method] != nil, facts.mcpName == nil {
            return .failure(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.headerMismatch, message: "Bad Request: the Mcp-Name header is required for \(method)", id: id))
        }
        let meta = message.params?["_meta"]?.objectValue
        var request = BridgedRequest(id: id, method: method, params: message.params, declaredCapabilities: [:], inputResponses: [:])
        if case .notification = message {
            // Notifications carry no envelope to check beyond the header's version.
            return .success(request)
        }
        guard let meta, let version = meta[Self.metaKeys.protocolVersion], case .object(let capabilities)? = meta[Self.metaKeys.clientCapabilities] else {
            return .failure(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.invalidParams,
                message: "Invalid params: params._meta must carry \(Self.metaKeys.protocolVersion) and \(Self.metaKeys.clientCapabilities) (an object)", id: id
            ))
        }
        guard version.stringValue == MCPProtocol.statelessVersion else {
            return .failure(Self.unsupportedVersion(version.stringValue ?? version.serialized, id: id))
        }
        request.declaredCapabilities = capabilities
        request.logLevel = meta[Self.metaKeys.logLevel]?.stringValue
        if let state = message.params?["requestState"] {
            guard let text = state.stringValue else {
                return .failure(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidParams, message: "Invalid params: requestState must be a string", id: id))
            }
            request.requestState = text
        }
        if let responses = message.params?["inputResponses"] {
            guard case .object(let answers) = responses else {
                return .failure(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidParams, message: "Invalid params: inputResponses must be an object", id: id))
            }
            request.inputResponses = answers
        }
        return .success(request)
    }

    /// `-32022` with the revisions the bridge serves, as `data.supported`.
    public static func unsupportedVersion(_ requested: String, id: JSONValue?) -> JSONRPCFailure {
        JSONRPCFailure(
            status: 400, code: JSONRPCErrorCode.unsupportedProtocolVersion, message: "Unsupported protocol version", id: id,
            data: .object(["supported": .array([.string(MCPProtocol.statelessVersion)]), "requested": .string(requested)])
        )
    }

    /// What identifies the request across its retries: the method and its params without
    /// `_meta`, `inputResponses` and `requestState` (canonical JSON, SHA-256, hex). A retry
    /// that asks for something else does not resume a parked call.
    public var digest: String {
        var bytes = Array(self.method.utf8)
        bytes.append(0)
        if case .object(var members)? = self.params {
            members["_meta"] = nil
            members["inputResponses"] = nil
            members["requestState"] = nil
            CanonicalJSON.append(.object(members), to: &bytes)
        }
        return Hex.encode(SHA256.hash(data: bytes))
    }

    /// The message the legacy upstream gets: the client's method and params under the
    /// gateway's own id on that session, reserved `_meta` keys and the multi round-trip
    /// members removed.
    public func legacyMessage(upstreamID: JSONValue?) -> JSONValue {
        var params = BridgeMapping.legacyParams(self.params)
        if case .object(var members)? = params {
            members["inputResponses"] = nil
            members["requestState"] = nil
            params = .object(members)
        }
        var message: [String: JSONValue] = ["jsonrpc": .string("2.0"), "method": .string(self.method)]
        if let upstreamID { message["id"] = upstreamID }
        if let params { message["params"] = params }
        return .object(message)
    }

    /// The client capabilities the bridge asks the upstream session for: of what the client
    /// declared, what the bridge can relay as multi round-trip input (elicitation, sampling,
    /// roots without `listChanged`), never more.
    public var sessionCapabilities: JSONValue {
        var relayed: [String: JSONValue] = [:]
        for name in BridgeMapping.relayableClientCapabilities {
            guard let declared = self.declaredCapabilities[name] else { continue }
            relayed[name] = name == "roots" ? .object([:]) : (declared.objectValue != nil ? declared : .object([:]))
        }
        return .object(relayed)
    }
}
