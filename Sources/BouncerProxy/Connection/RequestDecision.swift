import BouncerCore
import NIOCore
import NIOHTTP1
import Prometheus
import Logging

/// Where a request's decision goes: the connection's handler, which applies it.
protocol RequestDecisionSink: AnyObject {
    /// Whether `request` is still the one being decided: a step that comes back later (token
    /// verification, token exchange) is dropped when the client left or the connection closed.
    func isDeciding(_ request: ClientRequest) -> Bool
    func decided(_ request: ClientRequest, _ outcome: RequestDecision.Outcome)
}

/// The decision phase of one request, from its whole body to what happens to it: the
/// gateway's own endpoints answer at once; a request to a protected resource meets the
/// ``Enforcement`` stages in their order, with the two steps that need the network between
/// them (token verification between 3 and 5, the upstream credential after 5b). It decides
/// with the pure stages and reports the outcome to its sink; it writes nothing.
enum RequestDecision {
    enum Outcome {
        /// The gateway answers itself (health, readiness, metadata).
        case answer(GatewayResponse)
        /// Refused; recorded when `resource` is a protected one.
        case refuse(GatewayRejection, resource: ResolvedResource?)
        /// Allowed: forward it with the gateway's own credential for the upstream, if any.
        case forward(ResolvedResource, upstreamToken: String?, errorID: JSONValue?)
        /// Allowed, and served by the protocol bridge (a 2026-07-28 client, a legacy upstream).
        case bridged(ProtocolBridge.Answer, resource: ResolvedResource)
        /// Allowed: a bridged `subscriptions/listen`, streamed.
        case bridgedStream(NIOLoopBound<BridgeSubscription>, resource: ResolvedResource)
    }

    /// Decides `request` (its head and body are in); `random` starts trace ids for requests
    /// without a valid `traceparent`; `previousToken` is the connection's last request's token
    /// (the same one again is that String, not a new one).
    static func decide(
        _ request: ClientRequest, previousToken: String? = nil, gateway: Gateway, random: inout SplitMix64, eventLoop: any EventLoop, sink: some RequestDecisionSink
    ) {
        switch request.route {
        case .notFound:
            sink.decided(request, .refuse(.notFound, resource: nil))
        case .health:
            sink.decided(request, .answer(GatewayResponse(status: 200, headers: [("Content-Type", "text/plain")], body: "ok\n")))
        case .readiness:
            let readiness = gateway.readiness
            sink.decided(request, .answer(GatewayResponse(status: readiness.ready ? 200 : 503, headers: [("Content-Type", "text/plain")], body: readiness.text)))
        case .metadata(let resource):
            guard request.head.method == .GET || request.head.method == .HEAD else {
                return sink.decided(request, .refuse(.methodNotAllowed(allow: "GET"), resource: nil))
            }
            // Browser-based MCP clients fetch this cross-origin.
            sink.decided(request, .answer(GatewayResponse(status: 200, headers: [
                ("Content-Type", "application/json"), ("Cache-Control", "max-age=300"), ("Access-Control-Allow-Origin", "*"),
            ], body: resource.metadataDocument)))
        case .resource(let resource):
            request.trace = RequestTrace.resolve(request.facts, using: &random)
            Self.admit(request, previousToken: previousToken, resource: resource, gateway: gateway, eventLoop: eventLoop, sink: sink)
        }
    }

    /// Stages 2-3, then 4: the token verified (from the cache, or by the authorization server).
    private static func admit(
        _ request: ClientRequest, previousToken: String?, resource: ResolvedResource, gateway: Gateway, eventLoop: any EventLoop, sink: some RequestDecisionSink
    ) {
        let token: String
        switch Enforcement.admit(
            request.facts, method: request.head.method.rawValue, query: request.query, body: request.body, resource: resource.policy, previousToken: previousToken
        ) {
        case .failure(let rejection):
            return sink.decided(request, .refuse(rejection, resource: resource))
        case .success(let admitted):
            token = admitted.value
            request.tokenIsDPoP = admitted.isDPoP
        }
        request.token = token
        if let claims = gateway.cachedClaims(token: token, resource: resource) {
            gateway.metrics.tokenVerification(result: "valid", cached: true)
            return Self.authorize(request, resource: resource, token: token, claims: claims, gateway: gateway, eventLoop: eventLoop, sink: sink)
        }
        gateway.authenticate(token: token, resource: resource, on: eventLoop).assumeIsolated().whenComplete { result in
            guard sink.isDeciding(request) else { return }
            switch result {
            case .success(let claims):
                gateway.metrics.tokenVerification(result: "valid", cached: false)
                Self.authorize(request, resource: resource, token: token, claims: claims, gateway: gateway, eventLoop: eventLoop, sink: sink)
            case .failure(let error):
                var rejection = error as? GatewayRejection ?? .authorizationServerUnavailable("\(error)")
                if case .authorizationServerUnavailable = rejection {
                    // A 503 answers the request's id, like every JSON-RPC error after it.
                    rejection = rejection.answering(Enforcement.errorID(of: request.body, limits: gateway.policy.limits))
                }
                gateway.metrics.tokenVerification(result: rejection.response(resource: nil).status >= 500 ? "unavailable" : "invalid", cached: false)
                sink.decided(request, .refuse(rejection, resource: resource))
            }
        }
    }

    /// The rate limit, stages 5 and 5b, then the upstream credential.
    private static func authorize(
        _ request: ClientRequest, resource: ResolvedResource, token: String, claims: AccessTokenClaims, gateway: Gateway, eventLoop: any EventLoop,
        sink: some RequestDecisionSink
    ) {
        request.log.subject = claims.subject ?? "-"
        request.log.clientID = claims.clientID ?? "-"
        request.claims = claims
        if let refusal = Self.checkBinding(request, resource: resource, token: token, claims: claims, gateway: gateway) {
            return sink.decided(request, .refuse(refusal, resource: resource))
        }
        // Before anything is parsed: a client over its rate costs as little as possible.
        if resource.rateLimiter != nil, let refusal = resource.rateLimit(user: "\(claims.issuer) \(claims.user(token: token))", now: eventLoop.now) {
            return sink.decided(request, .refuse(refusal, resource: resource))
        }
        let method = request.head.method.rawValue
        // Scopes the token's scopes imply count too (`scope_implies`); challenges still name
        // the policy's.
        let granted = resource.server.scopeImplications.expand(claims.scopes)
        request.granted = granted
        let (body, decision) = Enforcement.authorize(request.facts, method: method, body: request.body, scopes: granted, resource: resource.policy, limits: gateway.policy.limits)
        request.log.body = body
        let authorization: Enforcement.Authorization
        switch decision {
        case .failure(let rejection):
            return sink.decided(request, .refuse(rejection, resource: resource))
        case .success(let allowed):
            authorization = allowed
        }
        if let body, case .failure(let rejection) = Self.bridgeRequest(request, body: body, resource: resource, gateway: gateway) {
            return sink.decided(request, .refuse(rejection, resource: resource))
        }
        let auditSlots = gateway.audit.flatMap { $0.settings.onOverflow == .refuse ? $0 : nil }
        switch Enforcement.admitCall(
            authorization, facts: request.facts, resource: resource.policy, claims: claims, token: token, sessions: gateway.sessions, clock: gateway.wallClock,
            lastSeen: resource.tools.lastSeen, auditSlots: auditSlots
        ) {
        case .failure(let refusal):
            if let mismatch = refusal.sessionMismatch {
                gateway.events.sessionMismatch(mismatch, binding: request.sessionBinding(resource), session: request.facts.sessionID, log: request.log)
            }
            if case .auditUnavailable = refusal.rejection { gateway.metrics.auditRefused.increment() }
            return sink.decided(request, .refuse(refusal.rejection, resource: resource))
        case .success(let admission):
            request.upstreamSessionID = admission.upstreamSessionID
            request.auditSlot = admission.auditSlot
        }
        if body == nil {
            // GET opens the server-to-client stream, DELETE ends a session.
            request.log.debug("request allowed", metadata: ["outcome": "allowed", "operation": "\(method) stream"])
        } else {
            request.log.debug("request allowed", metadata: ["outcome": "allowed"])
        }
        Self.obtainUpstreamCredential(request, resource: resource, token: token, claims: claims, authorization: authorization, gateway: gateway, eventLoop: eventLoop, sink: sink)
    }

    /// Token exchange when the resource asks for it (the client's token is the subject, never
    /// the credential).
    private static func obtainUpstreamCredential(
        _ request: ClientRequest, resource: ResolvedResource, token: String, claims: AccessTokenClaims, authorization: Enforcement.Authorization,
        gateway: Gateway, eventLoop: any EventLoop, sink: some RequestDecisionSink
    ) {
        let errorID = authorization.errorID
        guard case .tokenExchange(let policy, let client) = resource.credential else {
            if case .staticHeader = resource.policy.credentials { request.credential = .static }
            return Self.proceed(request, resource: resource, upstreamToken: nil, errorID: errorID, gateway: gateway, eventLoop: eventLoop, sink: sink)
        }
        let tool = authorization.tool
        if gateway.audit != nil {
            let target = policy.target(forTool: tool)
            request.credential = .tokenExchange(audience: (target.resources + target.audiences).joined(separator: " "), dpopKey: resource.upstreamDPoP?.signer.thumbprint)
        }
        if let upstreamToken = gateway.exchanger.cachedUpstreamToken(subjectToken: token, policy: policy, tool: tool, client: client, dpop: resource.upstreamDPoP) {
            gateway.metrics.tokenExchange(result: "cached")
            return Self.proceed(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, gateway: gateway, eventLoop: eventLoop, sink: sink)
        }
        gateway.exchanger.upstreamToken(
            subjectToken: token, subjectClaims: claims, policy: policy, tool: tool, client: client, dpop: resource.upstreamDPoP, on: eventLoop
        )
            .assumeIsolated()
            .whenComplete { result in
                guard sink.isDeciding(request) else { return }
                switch result {
                case .success(let upstreamToken):
                    gateway.metrics.tokenExchange(result: "ok")
                    Self.proceed(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, gateway: gateway, eventLoop: eventLoop, sink: sink)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .upstreamCredentialUnavailable("\(error)", id: nil)
                    let result = if case .upstreamCredentialRefused = rejection { "refused" } else { "unavailable" }
                    gateway.metrics.tokenExchange(result: result)
                    sink.decided(request, .refuse(rejection.answering(errorID), resource: resource))
                }
            }
    }

    // MARK: Sender-constrained tokens

    /// Stage 4b: a bound token only with its proof, and with `sender_constraint: required` only
    /// bound tokens (``SenderConstraint``); then a DPoP proof's nonce and `jti` (``DPoPGuard``).
    private static func checkBinding(_ request: ClientRequest, resource: ResolvedResource, token: String, claims: AccessTokenClaims, gateway: Gateway) -> GatewayRejection? {
        let policy = resource.policy
        // The common case costs nothing more: a bearer token, no proof, nothing required.
        if claims.confirmation == nil, !request.tokenIsDPoP, policy.senderConstraint == .optional {
            request.binding = .bearer
            return nil
        }
        let now = gateway.wallClock.seconds()
        let presentation = SenderConstraint.Presentation(
            token: token, isDPoP: request.tokenIsDPoP, proof: request.facts.dpop, proofCount: request.facts.dpopCount, method: request.head.method.rawValue,
            publicURL: policy.uri, clientCertificate: request.log.clientCertificate
        )
        switch SenderConstraint.check(claims.confirmation, presentation: presentation, mode: policy.senderConstraint, requirements: policy.dpop, now: now) {
        case .failure(let refusal):
            gateway.metrics.senderConstraint(result: refusal.code)
            let proofRefusal: DPoPRefusal? = if case .proof(let inner) = refusal { inner } else { nil }
            return .senderConstraint(refusal, nonce: gateway.dpop.nonce(after: proofRefusal, now: now))
        case .success(let binding):
            if case .dpop(let proof) = binding {
                if let refusal = gateway.dpop.admit(proof, now: now) {
                    gateway.metrics.senderConstraint(result: SenderConstraint.Refusal.proof(refusal).code)
                    return .senderConstraint(.proof(refusal), nonce: gateway.dpop.nonce(after: refusal, now: now))
                }
                request.nextNonce = gateway.dpop.nonce(forResponseTo: proof, now: now)
            }
            gateway.metrics.senderConstraint(result: binding.name)
            request.binding = binding
            return nil
        }
    }

    // MARK: The protocol bridge

    /// A 2026-07-28 request to a legacy upstream is the bridge's, checked as a 2026-07-28
    /// server checks it (``BridgedRequest``). With the bridge off it is refused so that a
    /// dual-era client falls back to `initialize`: 400 with -32601, none of the 2026-07-28
    /// codes (a client reads those as final). Any other request is not the bridge's.
    private static func bridgeRequest(_ request: ClientRequest, body: JSONRPCBody, resource: ResolvedResource, gateway: Gateway) -> Result<Void, GatewayRejection> {
        guard request.head.method == .POST, request.facts.protocolVersion == MCPProtocol.statelessVersion, resource.era.era == .legacy else { return .success(()) }
        guard gateway.policy.bridge.enabled else {
            return .failure(.jsonRPC(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.methodNotFound,
                message: "Method not found: this MCP server speaks an earlier revision of MCP; initialize a session to use it", id: body.errorID
            )))
        }
        switch BridgedRequest.check(body, facts: request.facts) {
        case .success(let bridged):
            request.bridgedRequest = bridged
            return .success(())
        case .failure(let failure):
            return .failure(.jsonRPC(failure))
        }
    }

    /// The decision made: forward the request, or have the bridge serve it.
    private static func proceed(
        _ request: ClientRequest, resource: ResolvedResource, upstreamToken: String?, errorID: JSONValue?, gateway: Gateway, eventLoop: any EventLoop,
        sink: some RequestDecisionSink
    ) {
        guard let bridged = request.bridgedRequest, let binding = request.sessionBinding(resource) else {
            return sink.decided(request, .forward(resource, upstreamToken: upstreamToken, errorID: errorID))
        }
        var headers: [(String, String)] = []
        switch resource.credential {
        case .staticHeader(let name, let value): headers.append((name, value))
        case .tokenExchange:
            // A DPoP-bound token gets its proof per upstream request (``BridgeUpstreamCall``).
            if let upstreamToken { headers.append(("Authorization", "\(resource.upstreamDPoP == nil ? "Bearer" : "DPoP") \(upstreamToken)")) }
        case .none: break
        }
        if let traceparent = request.trace?.replacement ?? request.facts.traceparent { headers.append(("traceparent", traceparent)) }
        let cancellation = BridgeCancellation()
        request.bridgeCancellation = cancellation
        let caller = ProtocolBridge.Caller(
            binding: binding, resource: resource, upstreamHeaders: headers, granted: request.granted ?? [], requestID: request.log.requestID,
            logLevel: bridged.logLevel, acceptsEventStream: request.head.wire.listElements(named: "accept").contains { $0.hasPrefixIgnoringASCIICase("text/event-stream") },
            cancellation: cancellation
        )
        if bridged.method == "subscriptions/listen" {
            gateway.bridge.listen(bridged, caller: caller, gateway: gateway, eventLoop: eventLoop).assumeIsolated().whenSuccess { listen in
                guard sink.isDeciding(request) else {
                    if case .stream(let subscription) = listen { subscription.value.close(outcome: "client_closed") }
                    return
                }
                switch listen {
                case .stream(let subscription): sink.decided(request, .bridgedStream(subscription, resource: resource))
                case .answer(let answer): sink.decided(request, .bridged(answer, resource: resource))
                }
            }
            return
        }
        gateway.bridge.serve(bridged, caller: caller, gateway: gateway, eventLoop: eventLoop).assumeIsolated().whenSuccess { answer in
            guard sink.isDeciding(request) else { return }
            sink.decided(request, .bridged(answer, resource: resource))
        }
    }
}
