/// Every way the gateway refuses a request. This is the one place where refusals become
/// HTTP statuses, challenges and JSON-RPC error bodies.
public enum GatewayRejection: Error, Sendable, Hashable {
    /// No bearer token: 401 with a challenge and no error code.
    case missingToken
    /// 401 `invalid_token`.
    case invalidToken(TokenError)
    /// 401: the token's binding was not proven (DPoP, certificate), or the resource takes only
    /// bound tokens; the `DPoP` challenge (with a fresh `DPoP-Nonce` when one is asked for).
    case senderConstraint(SenderConstraint.Refusal, nonce: String?)
    /// 400 `invalid_request`: a token in the query or a form body, two Authorization headers...
    case invalidRequest(String)
    /// 403 `insufficient_scope` with a JSON-RPC error.
    case insufficientScope(needed: [String], id: JSONValue?)
    /// 403: the policy does not allow this method or target at all.
    case policyDenied(reason: String, id: JSONValue?)
    /// 403: `Origin` not on the allow-list (DNS rebinding).
    case forbiddenOrigin(String)
    /// 400/404/405/413/415 with a JSON-RPC error.
    case jsonRPC(JSONRPCFailure)
    case headersTooLarge
    /// A request head RFC 9112 has a server refuse (400, 415 or 501, plain text); the
    /// connection is closed after the answer.
    case malformedHead(RequestHeadFacts.Violation)
    /// Bytes the codec refused as HTTP/1.1 (``HTTP1ParseError``: 400, 501 for a method the
    /// gateway does not take, 505 for another HTTP version; plain text).
    case malformedHTTP(HTTP1ParseError)
    /// A body over `limits.max_body_bytes`, declared or counted: 413.
    case bodyTooLarge(limit: Int)
    /// Chunk sizes, extensions and trailers past their bound (RFC 9112 7.1.1): 400.
    case chunkFramingTooLarge(bytes: Int, body: Int)
    /// A request head not received within `limits.header_read_timeout_seconds` of its
    /// first byte: 408.
    case headerReadTimeout(seconds: Int64)
    case notFound
    /// A gateway endpoint (a metadata document) asked for with a method it does not serve.
    case methodNotAllowed(allow: String)
    /// The authorization server's keys could not be fetched: the token cannot be checked.
    case authorizationServerUnavailable(String, id: JSONValue? = nil)
    case upstreamUnavailable(String, id: JSONValue?)
    case upstreamTimeout(id: JSONValue?)
    /// A message from the upstream (a JSON body or an SSE event) over `limits.max_event_bytes`:
    /// the gateway cannot inspect it, so nothing of it reaches the client.
    case upstreamMessageTooLarge(limit: Int, id: JSONValue?)
    /// More server-to-client requests in one response than the gateway relays (`limit`): a
    /// flood, not a conversation. 502, or an error event that ends the stream.
    case upstreamRequestFlood(limit: Int, id: JSONValue?)
    /// `tools/call` of a tool whose definition is not the approved one (`tool_pins`, `block`).
    case toolNotApproved(tool: String, ToolRefusal, id: JSONValue?)
    /// The upstream credential could not be obtained because the authorization server is
    /// down, slow or shedding load: 503, worth retrying.
    case upstreamCredentialUnavailable(String, id: JSONValue?)
    /// The authorization server refused the exchange (`invalid_target`, `invalid_scope`,
    /// `unauthorized_client`, ...): 502 naming the cause class.
    case upstreamCredentialRefused(cause: String, reason: String, id: JSONValue?)
    /// The audit trail's queue is full and `audit.on_overflow` is `refuse`: nothing is
    /// forwarded that would go unrecorded. 503, worth retrying.
    case auditUnavailable(id: JSONValue?)
    /// A session id that is not this user's (or is forged, expired, for another resource):
    /// 404, so the client starts a new session (MCP transport, session management).
    case sessionMismatch(SessionMismatch, id: JSONValue?)
    /// The user's token bucket for this resource is empty (`rate_limit`): 429 with Retry-After.
    case rateLimited(retryAfterSeconds: Int, id: JSONValue?)

    /// The same refusal, with the JSON-RPC id of the request it answers where the error body
    /// carries one (refusals made away from the request, e.g. by the token exchanger, have none).
    public func answering(_ id: JSONValue?) -> GatewayRejection {
        switch self {
        case .insufficientScope(let needed, _): return .insufficientScope(needed: needed, id: id)
        case .policyDenied(let reason, _): return .policyDenied(reason: reason, id: id)
        case .upstreamUnavailable(let reason, _): return .upstreamUnavailable(reason, id: id)
        case .upstreamTimeout: return .upstreamTimeout(id: id)
        case .upstreamMessageTooLarge(let limit, _): return .upstreamMessageTooLarge(limit: limit, id: id)
        case .upstreamRequestFlood(let limit, _): return .upstreamRequestFlood(limit: limit, id: id)
        case .authorizationServerUnavailable(let reason, _): return .authorizationServerUnavailable(reason, id: id)
        case .toolNotApproved(let tool, let refusal, _): return .toolNotApproved(tool: tool, refusal, id: id)
        case .upstreamCredentialUnavailable(let reason, _): return .upstreamCredentialUnavailable(reason, id: id)
        case .upstreamCredentialRefused(let cause, let reason, _): return .upstreamCredentialRefused(cause: cause, reason: reason, id: id)
        case .auditUnavailable: return .auditUnavailable(id: id)
        case .sessionMismatch(let mismatch, _): return .sessionMismatch(mismatch, id: id)
        case .rateLimited(let seconds, _): return .rateLimited(retryAfterSeconds: seconds, id: id)
        default: return self
        }
    }

    /// A stable short code for logs and metrics.
    public var code: String {
        switch self {
        case .missingToken: return "missing_token"
        case .invalidToken(let error): return "invalid_token.\(error.code.rawValue)"
        case .senderConstraint(let refusal, _): return "sender_constraint.\(refusal.code)"
        case .invalidRequest: return "invalid_request"
        case .insufficientScope: return "insufficient_scope"
        case .policyDenied: return "policy_denied"
        case .forbiddenOrigin: return "forbidden_origin"
        case .jsonRPC(let failure): return "jsonrpc.\(failure.code)"
        case .headersTooLarge: return "headers_too_large"
        case .malformedHead: return "malformed_head"
        case .malformedHTTP: return "malformed_http"
        case .bodyTooLarge: return "body_too_large"
        case .chunkFramingTooLarge: return "chunk_framing_too_large"
        case .headerReadTimeout: return "header_read_timeout"
        case .notFound: return "not_found"
        case .methodNotAllowed: return "method_not_allowed"
        case .authorizationServerUnavailable: return "authorization_server_unavailable"
        case .upstreamUnavailable: return "upstream_unavailable"
        case .upstreamTimeout: return "upstream_timeout"
        case .upstreamMessageTooLarge: return "upstream_message_too_large"
        case .upstreamRequestFlood: return "upstream_request_flood"
        case .toolNotApproved(_, let refusal, _): return "tool_not_approved.\(refusal.rawValue)"
        case .upstreamCredentialUnavailable: return "upstream_credential_unavailable"
        case .upstreamCredentialRefused(let cause, _, _): return "upstream_credential_refused.\(cause)"
        case .auditUnavailable: return "audit_unavailable"
        case .sessionMismatch(let mismatch, _): return "session_mismatch.\(mismatch.code)"
        case .rateLimited: return "rate_limited"
        }
    }

    /// What goes to the log (never a token).
    public var logReason: String {
        switch self {
        case .missingToken: return "no bearer token"
        case .invalidToken(let error): return error.description
        case .senderConstraint(let refusal, _): return refusal.description
        case .invalidRequest(let reason), .forbiddenOrigin(let reason), .authorizationServerUnavailable(let reason, _): return reason
        case .insufficientScope(let needed, _): return "needs scopes \(needed.joined(separator: " "))"
        case .policyDenied(let reason, _): return reason
        case .jsonRPC(let failure): return failure.message
        case .headersTooLarge: return "request headers too large"
        case .malformedHead(let violation): return violation.description
        case .malformedHTTP(let error): return error.description
        case .bodyTooLarge(let limit): return "body larger than \(limit) bytes"
        case .chunkFramingTooLarge(let bytes, let body): return "\(bytes) bytes of chunk framing for a body of \(body) bytes"
        case .headerReadTimeout(let seconds): return "request head not received within \(seconds) s of its first byte"
        case .notFound: return "no route"
        case .methodNotAllowed(let allow): return "only \(allow) is served here"
        case .upstreamUnavailable(let reason, _): return reason
        case .upstreamTimeout: return "upstream did not answer in time"
        case .upstreamMessageTooLarge(let limit, _): return "a message from the upstream is over limits.max_event_bytes (\(limit) bytes)"
        case .upstreamRequestFlood(let limit, _): return "the upstream sent more than \(limit) requests for the client in one response"
        case .toolNotApproved(let tool, let refusal, _): return Self.toolNotApprovedMessage(tool, refusal)
        case .auditUnavailable: return "the audit queue is full (audit.on_overflow: refuse)"
        case .sessionMismatch(let mismatch, _): return "session id refused: \(mismatch.description)"
        case .rateLimited(let seconds, _): return "rate limit reached; retry after \(seconds) s"
        case .upstreamCredentialUnavailable(let reason, _): return reason
        case .upstreamCredentialRefused(_, let reason, _): return reason
        }
    }

    /// What a client reads when nothing of the upstream's JSON body could be relayed (a
    /// server-to-client request the policy blocked, text that is not strict JSON).
    public static let upstreamResponseWithheldMessage = "Bad Gateway: the MCP server's response held nothing the gateway may relay (a request the policy blocks, or text that is not strict JSON)"
    /// What the client reads when a message from the upstream was too large to inspect (also
    /// as the JSON-RPC error event that ends an inspected stream).
    public static let upstreamMessageTooLargeMessage = "Bad Gateway: the MCP server sent a message larger than the gateway inspects (limits.max_event_bytes)"

    /// What the client reads when the upstream flooded a response with requests for it.
    public static func serverRequestFloodMessage(limit: Int) -> String {
        "Bad Gateway: the MCP server sent more requests for the client than the gateway relays in one response (\(limit)); the stream was ended"
    }

    static func toolNotApprovedMessage(_ tool: String, _ refusal: ToolRefusal) -> String {
        switch refusal {
        case .changed: return "the definition of tool '\(tool)' changed since it was approved; it stays blocked until its pin is updated"
        case .neverApproved: return "tool '\(tool)' was never approved (it has no pin in the resource's tool_pins)"
        }
    }

    /// The HTTP response. `resource` is the protected resource the request was for; the
    /// challenges need it, so it is `nil` only for requests that matched no resource.
    /// - Parameter dpop: the request's token came as `Authorization: DPoP`: a 403 challenges in
    ///   the scheme the client used (RFC 9449 §7.1).
    public func response(resource: ResourcePolicy?, dpop: Bool = false) -> GatewayResponse {
        func challenge(_ status: Int, _ challenge: BearerChallenge, body: String) -> GatewayResponse {
            GatewayResponse.json(status, body, extra: [("WWW-Authenticate", challenge.headerValue)])
        }
        switch self {
        case .missingToken, .invalidToken, .invalidRequest:
            guard let resource else { return GatewayResponse.json(401, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.unauthorized, message: "Unauthorized", id: nil)) }
            if case .missingToken = self, resource.senderConstraint == .required {
                // Only sender-constrained tokens here: the challenge says so, and where to start.
                let challenge = DPoPChallenge(algorithms: resource.dpop.algorithms, scopes: resource.scopesSupported, resourceMetadata: resource.metadataURL)
                let message = "Unauthorized: a DPoP-bound (or certificate-bound) token for \(resource.uri) is required"
                return GatewayResponse.json(401, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.unauthorized, message: message, id: nil), extra: [
                    ("WWW-Authenticate", challenge.headerValue),
                ])
            }
            var bearer = BearerChallenge(resourceMetadata: resource.metadataURL, scopes: resource.scopesSupported)
            var status = 401
            var message = "Unauthorized: a bearer token for \(resource.uri) is required"
            if case .invalidToken(let error) = self {
                bearer.error = .invalidToken
                bearer.errorDescription = error.clientDescription
                message = "Unauthorized: \(error.clientDescription)"
            } else if case .invalidRequest(let reason) = self {
                status = 400
                bearer.error = .invalidRequest
                bearer.errorDescription = reason
                message = "Bad Request: \(reason)"
            }
            return challenge(status, bearer, body: JSONRPCFailure.errorBody(code: status == 400 ? JSONRPCErrorCode.invalidRequest : JSONRPCErrorCode.unauthorized, message: message, id: nil))
        case .senderConstraint(let refusal, let nonce):
            guard let resource else { return GatewayResponse.json(401, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.unauthorized, message: "Unauthorized", id: nil)) }
            var headers: [(String, String)] = [("WWW-Authenticate", DPoPChallenge(
                algorithms: resource.dpop.algorithms, error: refusal.challengeError, errorDescription: refusal.description
            ).headerValue)]
            if resource.senderConstraint == .optional {
                // Bearer tokens are accepted too: say where to get one (RFC 9449 §7.1).
                headers.append(("WWW-Authenticate", BearerChallenge(resourceMetadata: resource.metadataURL, scopes: resource.scopesSupported).headerValue))
            }
            if let nonce { headers.append(("DPoP-Nonce", nonce)) }
            return GatewayResponse.json(401, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.unauthorized, message: "Unauthorized: \(refusal.description)", id: nil), extra: headers)
        case .insufficientScope(let needed, let id):
            guard let resource else { return GatewayResponse.json(403, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.forbidden, message: "Forbidden", id: id)) }
            let bearer = BearerChallenge(
                resourceMetadata: resource.metadataURL, scopes: needed, error: .insufficientScope,
                errorDescription: "This operation needs the scopes: \(needed.joined(separator: " "))"
            )
            var data = JSONWriter()
            data.add("error", "insufficient_scope")
            data.add("scope", needed.joined(separator: " "))
            data.add("resource_metadata", resource.metadataURL)
            let body = JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.forbidden,
                message: "Forbidden: insufficient scope, this operation needs \(needed.joined(separator: " "))",
                id: id, data: try? JSONParser().parse(data.string)
            )
            if dpop {
                let challenge = DPoPChallenge(
                    algorithms: resource.dpop.algorithms, error: "insufficient_scope", errorDescription: bearer.errorDescription, scopes: needed,
                    resourceMetadata: resource.metadataURL
                )
                return GatewayResponse.json(403, body, extra: [("WWW-Authenticate", challenge.headerValue)])
            }
            return challenge(403, bearer, body: body)
        case .policyDenied(let reason, let id):
            return GatewayResponse.json(403, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.forbidden, message: "Forbidden: \(reason)", id: id))
        case .forbiddenOrigin:
            return GatewayResponse.json(403, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.forbidden, message: "Forbidden: Origin not allowed", id: nil))
        case .jsonRPC(let failure):
            var extra: [(String, String)] = []
            if failure.status == 405 { extra.append(("Allow", "POST")) }
            return GatewayResponse.json(failure.status, failure.body, extra: extra)
        case .headersTooLarge:
            return GatewayResponse.json(431, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.invalidRequest, message: "Request header fields too large", id: nil))
        case .malformedHead(let violation):
            switch violation.status {
            case 501: return .plain(501, "Not Implemented: \(violation)")
            case 415: return .plain(415, "Unsupported Media Type: \(violation)", extra: [("Accept-Encoding", "identity")])
            default: return .plain(violation.status, "Bad Request: \(violation)")
            }
        case .malformedHTTP(let error):
            switch error.status {
            case 501: return .plain(501, "Not Implemented: \(error)")
            case 505: return .plain(505, "HTTP Version Not Supported: \(error)")
            default: return .plain(400, "Bad Request: \(error)")
            }
        case .bodyTooLarge(let limit):
            return GatewayResponse.json(413, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.invalidRequest, message: "Payload Too Large: the body exceeds \(limit) bytes", id: nil))
        case .chunkFramingTooLarge:
            return .plain(400, "Bad Request: chunk framing (sizes, extensions, trailers) too large")
        case .headerReadTimeout(let seconds):
            return .plain(408, "Request Timeout: the request head took longer than \(seconds) s")
        case .methodNotAllowed(let allow):
            return GatewayResponse(status: 405, headers: [("Allow", allow)])
        case .notFound:
            return GatewayResponse.json(404, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.methodNotFound, message: "Not Found", id: nil))
        case .authorizationServerUnavailable(_, let id):
            return GatewayResponse.json(503, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: "Service Unavailable: the authorization server's keys cannot be fetched, so the token cannot be verified", id: id), extra: [("Retry-After", "5")])
        case .upstreamUnavailable(_, let id):
            return GatewayResponse.json(502, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: "Bad Gateway: the MCP server is unavailable", id: id))
        case .upstreamTimeout(let id):
            return GatewayResponse.json(504, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: "Gateway Timeout: the MCP server did not answer in time", id: id))
        case .upstreamMessageTooLarge(_, let id):
            return GatewayResponse.json(502, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: Self.upstreamMessageTooLargeMessage, id: id))
        case .upstreamRequestFlood(let limit, let id):
            return GatewayResponse.json(502, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: Self.serverRequestFloodMessage(limit: limit), id: id))
        case .toolNotApproved(let tool, let refusal, let id):
            return GatewayResponse.json(403, JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.forbidden, message: "Forbidden: " + Self.toolNotApprovedMessage(tool, refusal), id: id,
                data: .object(["cause": .string("tool_\(refusal.rawValue)"), "tool": .string(tool)])
            ))
        case .upstreamCredentialUnavailable(_, let id):
            return GatewayResponse.json(503, JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.upstreamError,
                message: "Service Unavailable: the authorization server cannot issue the upstream credential right now",
                id: id, data: .object(["cause": .string("authorization_server_unavailable")])
            ), extra: [("Retry-After", "5")])
        case .upstreamCredentialRefused(let cause, _, let id):
            return GatewayResponse.json(502, JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.upstreamError,
                message: "Bad Gateway: the authorization server refused to issue the upstream credential (\(cause))",
                id: id, data: .object(["cause": .string(cause)])
            ))
        case .auditUnavailable(let id):
            return GatewayResponse.json(503, JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.upstreamError, message: "Service Unavailable: the request cannot be recorded in the audit trail right now, so it is not forwarded",
                id: id, data: .object(["cause": .string("audit_unavailable")])
            ), extra: [("Retry-After", "1")])
        case .sessionMismatch(_, let id):
            // The same answer for every reason: a client learns nothing about whose session it is.
            return GatewayResponse.json(404, JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.sessionNotFound, message: "Not Found: session not found; start a new session (initialize without Mcp-Session-Id)", id: id
            ))
        case .rateLimited(let seconds, let id):
            return GatewayResponse.json(429, JSONRPCFailure.errorBody(
                code: JSONRPCErrorCode.rateLimited, message: "Too Many Requests: the rate limit for this resource is reached; retry after \(seconds) s",
                id: id, data: .object(["cause": .string("rate_limited"), "retry_after": .number(String(seconds))])
            ), extra: [("Retry-After", String(seconds))])
        }
    }
}

extension GatewayRejection {
    /// How a request the codec refused is answered: the size bounds as the other head size
    /// refusals (431), the framing rules RFC 9112 names as ``RequestHeadFacts/Violation``s
    /// (a transfer coding other than chunked: 501), anything else as malformed HTTP.
    public init(refusing error: HTTP1ParseError) {
        switch error {
        case .headTooLarge, .tooManyFields: self = .headersTooLarge
        case .unsupportedTransferCoding: self = .malformedHead(.unsupportedTransferCoding)
        case .transferEncodingInHTTP10: self = .malformedHead(.transferEncodingInHTTP10)
        case .invalidTarget: self = .malformedHead(.invalidTarget)
        default: self = .malformedHTTP(error)
        }
    }
}
