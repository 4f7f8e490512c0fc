import NIOCore

/// What the gateway decides about a request, in the order the request meets it (the README's
/// "What it does to a request"), read top to bottom in this one file. Pure: no IO and no
/// clock; the NIO handler gathers the facts, calls these stages and applies what they return,
/// and decides nothing itself (``UpstreamExchangeStateMachine`` and ``ClientConnectionStateMachine``
/// decide what happens to the exchange and the connection).
///
/// 0. ``checkHead(_:method:isHTTP11OrLater:target:limits:)``: the head, RFC 9112 and the limits.
/// 1. Routing: ``GatewayRouter``, one dictionary hit.
/// 2-3. ``admit(_:method:query:body:resource:)``: Origin, method and protocol version, and the
///    bearer token from the Authorization header only.
/// 4. Token verification needs the authorization server's keys (or its introspection
///    endpoint): the proxy does it, between 3 and 5.
/// 5. ``authorize(_:method:body:scopes:resource:limits:)``: the JSON-RPC body parsed once,
///    the batch rule, the mirrored headers, the policy decision. (Before it, the proxy takes
///    a token from the user's bucket when the resource has a `rate_limit`.)
/// 5b. ``admitCall(_:facts:resource:claims:token:sessions:clock:lastSeen:auditSlots:)``:
///    the session is this user's, the tool is approved (`tool_pins`), the audit record has
///    room (`audit.on_overflow: refuse`).
/// 6. ``ClientFieldFilter`` and ``gatewayFields(facts:resource:peer:peerIsTrustedProxy:publicURL:bodyLength:isPOST:upstreamToken:upstreamSessionID:traceparent:add:)`` (UpstreamFields.swift):
///    the head the upstream gets, without the client's credentials or hop-by-hop fields.
public enum Enforcement {
    // MARK: 0. The request head

    /// The access token a request presented, and how.
    public struct PresentedToken: Sendable, Hashable {
        public var value: String
        /// `Authorization: DPoP` rather than `Bearer`.
        public var isDPoP: Bool

        public init(value: String, isDPoP: Bool) {
            self.value = value
            self.isDPoP = isDPoP
        }
    }

    /// Where an admitted request goes: its origin-form target split once.
    public struct Target: Sendable {
        public var path: String
        public var query: Substring?
    }

    /// Refuses what RFC 9112 has a server refuse and llhttp lets through, heads over
    /// `max_header_bytes` and declared bodies over `max_body_bytes` (before a byte of them is
    /// read, and before any 100 Continue). Every refusal here closes the connection.
    public static func checkHead(
        _ facts: RequestHeadFacts, method: String, isHTTP11OrLater: Bool, target: String, limits: GatewayLimits
    ) -> Result<Target, GatewayRejection> {
        if facts.headerBytes > limits.maxHeaderBytes { return .failure(.headersTooLarge) }
        if let violation = facts.violation(method: method, isHTTP11OrLater: isHTTP11OrLater) {
            return .failure(.malformedHead(violation))
        }
        // `OPTIONS *` (asterisk-form) is a valid target; it names no resource here (404).
        let asterisk: Substring? = method == "OPTIONS" && target == "*" ? "*" : nil
        guard let originForm = RequestHeadFacts.originForm(of: target) ?? asterisk else {
            return .failure(.malformedHead(.invalidTarget))
        }
        if let length = facts.contentLength, length > limits.maxBodyBytes {
            return .failure(.bodyTooLarge(limit: limits.maxBodyBytes))
        }
        let (path, query) = RequestTarget.split(target: originForm)
        return .success(Target(path: path, query: query))
    }

    /// Whether the gateway answers `Expect: 100-continue` itself: it reads the body (to
    /// inspect it), so it, not the upstream, says continue. An HTTP/1.0 client's expectation
    /// is ignored: it gets no 1xx (RFC 9110 10.1.1, 15.2).
    public static func answersContinue(_ facts: RequestHeadFacts, isHTTP11OrLater: Bool) -> Bool {
        isHTTP11OrLater && facts.expectsContinue
    }

    // MARK: 2-3. Admission to a protected resource

    /// Checks made before the token is verified, in this order: `Origin` on the allow-list
    /// (DNS rebinding), a supported `MCP-Protocol-Version`, a method MCP uses, no token in the
    /// query or a form body (RFC 6750 2.2/2.3, which MCP forbids), then the bearer token from
    /// the one `Authorization` header. Returns the token: `previousToken` (the connection's
    /// last, ``BearerTokenExtractor/extract(first:count:reusing:)``) when it is the same.
    public static func admit(
        _ facts: RequestHeadFacts, method: String, query: Substring?, body: ByteBuffer?, resource: ResourcePolicy, previousToken: String? = nil
    ) -> Result<PresentedToken, GatewayRejection> {
        if let origin = facts.origin, !resource.allowedOrigins.contains(Self.normalisedOrigin(origin)) {
            return .failure(.forbiddenOrigin("Origin \(origin) is not allowed"))
        }
        let version = facts.protocolVersion
        if let version, !resource.protocolVersions.contains(version) {
            let supported = resource.protocolVersions.sorted().joined(separator: ", ")
            return .failure(.jsonRPC(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Bad Request: unsupported MCP-Protocol-Version \(version) (supported: \(supported))", id: nil
            )))
        }
        // GET opens the server-to-client stream and DELETE ends a session, in the revisions
        // that have them; the stateless one is POST only.
        let methodAllowed = method == "POST" || (version != MCPProtocol.statelessVersion && (method == "GET" || method == "DELETE"))
        if !methodAllowed {
            return .failure(.jsonRPC(JSONRPCFailure(status: 405, code: JSONRPCErrorCode.invalidRequest, message: "Method Not Allowed", id: nil)))
        }
        if let query, BearerTokenExtractor.carriesAccessToken(formEncoded: query) {
            return .failure(.invalidRequest("Access tokens are accepted in the Authorization header only, not in the query string"))
        }
        if let contentType = facts.contentType, contentType.hasPrefixIgnoringASCIICase("application/x-www-form-urlencoded"),
           let body, BearerTokenExtractor.carriesAccessToken(formEncoded: String(buffer: body)) {
            return .failure(.invalidRequest("Access tokens are accepted in the Authorization header only, not in a form body"))
        }
        switch BearerTokenExtractor.extract(first: facts.authorization, count: facts.authorizationCount, reusing: previousToken) {
        case .none: return .failure(.missingToken)
        case .invalid(let reason): return .failure(.invalidRequest(reason))
        case .token(let token): return .success(PresentedToken(value: token, isDPoP: false))
        case .dpop(let token): return .success(PresentedToken(value: token, isDPoP: true))
        }
    }

    /// An `Origin` as the allow-list holds it: canonical scheme, host and port (`null` stays).
    public static func normalisedOrigin(_ origin: String) -> String {
        if origin == "null" { return origin }
        return (try? CanonicalURI(origin).origin) ?? origin
    }

    // MARK: 5. Authorisation of the JSON-RPC body

    /// What a request allowed to go upstream carries forward: what token exchange and the
    /// audit record need.
    public struct Authorization: Sendable {
        /// The parsed body; `nil` for GET and DELETE, which carry no JSON-RPC message.
        public var body: JSONRPCBody?
        /// The tool a single `tools/call` names (token exchange may narrow per tool).
        public var tool: String?
        /// The id errors about this request answer to.
        public var errorID: JSONValue?
    }

    /// After the token is verified: the body is parsed once (bounded depth), batches are
    /// refused where the protocol revision has none, `Mcp-Method`/`Mcp-Name` and the 2026-07-28
    /// `_meta` version must agree with the body, and the policy decides with the granted
    /// `scopes`. GET and DELETE need only a valid token for this resource.
    ///
    /// - Returns: the decision, and the body as parsed whatever the decision (a refusal is
    ///   logged with the operation it refused).
    public static func authorize(
        _ facts: RequestHeadFacts, method: String, body: ByteBuffer?, scopes: Set<String>, resource: ResourcePolicy, limits: GatewayLimits
    ) -> (body: JSONRPCBody?, decision: Result<Authorization, GatewayRejection>) {
        guard method == "POST" else { return (nil, .success(Authorization())) }
        let parsed: JSONRPCBody
        do {
            parsed = try JSONRPCBody.parse(body.map { $0.readableBytesView } ?? ByteBuffer().readableBytesView, maxDepth: limits.maxJSONDepth)
        } catch {
            return (nil, .failure(.jsonRPC(error)))
        }
        return (parsed, self.decide(parsed, facts: facts, scopes: scopes, resource: resource))
    }

    private static func decide(_ parsed: JSONRPCBody, facts: RequestHeadFacts, scopes: Set<String>, resource: ResourcePolicy) -> Result<Authorization, GatewayRejection> {
        let version = facts.protocolVersion
        if parsed.isBatch, !resource.acceptsBatches || (version != nil && version != MCPProtocol.batchVersion) {
            return .failure(.jsonRPC(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: JSON-RPC batches are not supported by this protocol revision", id: nil
            )))
        }
        if let mismatch = MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: facts.mcpMethod, mcpName: facts.mcpName, body: parsed) {
            return .failure(.jsonRPC(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.headerMismatch, message: "Bad Request: \(mismatch)", id: parsed.errorID)))
        }
        if version == MCPProtocol.statelessVersion, let message = parsed.messages.first, let meta = MCPHeaderRules.metaProtocolVersion(message), meta != version {
            return .failure(.jsonRPC(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.headerMismatch,
                message: "Bad Request: MCP-Protocol-Version \(version ?? "") does not match _meta protocolVersion \(meta)", id: parsed.errorID
            )))
        }
        let decision: AccessDecision
        do {
            decision = try resource.decide(parsed, granted: scopes)
        } catch {
            return .failure(.jsonRPC(error))
        }
        switch decision {
        case .allow:
            let tool = parsed.isBatch ? nil : parsed.messages.first.flatMap { $0.method == "tools/call" ? try? $0.target() : nil }
            return .success(Authorization(body: parsed, tool: tool, errorID: parsed.errorID))
        case .insufficientScope(let needed):
            return .failure(.insufficientScope(needed: needed, id: parsed.errorID))
        case .denied(let reason):
            return .failure(.policyDenied(reason: reason, id: parsed.errorID))
        }
    }

    // MARK: 5b. Admission of the call

    /// What an admitted call carries to the upstream.
    public struct CallAdmission: Sendable, Equatable {
        /// The upstream's own session id, from the sealed one the client sent.
        public var upstreamSessionID: String?
        /// Whether a slot in the audit queue was taken for the request's record.
        public var auditSlot = false

        public init(upstreamSessionID: String? = nil, auditSlot: Bool = false) {
            self.upstreamSessionID = upstreamSessionID
            self.auditSlot = auditSlot
        }
    }

    /// Why a call was refused at 5b: the answer, and for a session id that is not this user's,
    /// the mismatch (reported to the audit trail: whose session it was, digested).
    public struct CallRefusal: Error, Sendable, Equatable {
        public var rejection: GatewayRejection
        public var sessionMismatch: SessionMismatch?

        public init(rejection: GatewayRejection, sessionMismatch: SessionMismatch? = nil) {
            self.rejection = rejection
            self.sessionMismatch = sessionMismatch
        }
    }

    /// After authorisation, in this order:
    /// - a sealed `Mcp-Session-Id` (one, never two) must open as a session of this resource
    ///   and this user (``SessionBinding``): another token's session is "not found";
    /// - a `tools/call` of a tool not approved, or changed since (`tool_pins` with
    ///   `on_change: block`, judged with the definition `lastSeen` in a list), is refused;
    /// - with `audit.on_overflow: refuse` (`auditSlots` given), the audit queue must have room
    ///   for the record: nothing is forwarded that could go unrecorded. Asked last, so that no
    ///   refusal holds a slot.
    public static func admitCall(
        _ authorization: Authorization, facts: RequestHeadFacts, resource: ResourcePolicy, claims: AccessTokenClaims, token: String?,
        sessions: SessionSealer, clock: WallClock, lastSeen: (String) -> String?, auditSlots: (any AuditSlotReserving)?
    ) -> Result<CallAdmission, CallRefusal> {
        var admission = CallAdmission()
        if facts.sessionIDCount > 0 {
            guard facts.sessionIDCount == 1, let sealed = facts.sessionID else {
                return .failure(CallRefusal(rejection: .sessionMismatch(.malformed, id: authorization.errorID), sessionMismatch: .malformed))
            }
            switch sessions.open(sealed, expecting: SessionBinding(resource: resource.path, claims: claims, token: token), now: clock.seconds()) {
            case .success(let upstreamID):
                admission.upstreamSessionID = upstreamID
            case .failure(let mismatch):
                return .failure(CallRefusal(rejection: .sessionMismatch(mismatch, id: authorization.errorID), sessionMismatch: mismatch))
            }
        }
        if let pinning = resource.toolPinning, let body = authorization.body, let refusal = pinning.refusal(for: body, lastSeen: lastSeen) {
            return .failure(CallRefusal(rejection: .toolNotApproved(tool: refusal.tool, refusal.reason, id: authorization.errorID)))
        }
        if let auditSlots {
            guard auditSlots.reserve() else { return .failure(CallRefusal(rejection: .auditUnavailable(id: authorization.errorID))) }
            admission.auditSlot = true
        }
        return .success(admission)
    }

    /// The JSON-RPC id a refusal made before the body was parsed answers to (the 503 while the
    /// authorization server's keys cannot be fetched): the body's single request's, if it
    /// parses. Only on that rare path: it parses the body.
    public static func errorID(of body: ByteBuffer?, limits: GatewayLimits) -> JSONValue? {
        guard let body else { return nil }
        return (try? JSONRPCBody.parse(body.readableBytesView, maxDepth: limits.maxJSONDepth))?.errorID
    }
}
