import BouncerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Everything a connection needs, built once from a policy and shared (read-only) by all
/// connections: each resource resolved (``ResolvedResource``) and routed.
package final class Gateway: Sendable {
    package let policy: GatewayPolicy
    /// Routes to resolved resources.
    let router: GatewayRouter<ResolvedResource>
    package let resources: [ResolvedResource]
    package let logger: Logger
    let keyStores: [String: KeySetStore]
    /// The gateway's OAuth clients, per authorization server name (token exchange, introspection).
    let clients: [String: OAuthEndpointClient]
    let authenticator: TokenAuthenticator
    let pools: UpstreamPools
    package let tls: GatewayTLSContexts
    let exchanger: TokenExchanger
    let introspector: Introspector
    package let metrics: GatewayMetrics
    /// The audit trail, when the policy has one.
    package let audit: AuditTrail?
    /// For the gateway's own calls to upstreams (the tools/list of pinned resources).
    let fetcher: HTTPFetcher
    /// The elicitation and sampling guard's memory and answers.
    let serverRequests: ServerRequestAnswers
    /// Resources whose tools are being listed again (`notifications/tools/list_changed`): one
    /// listing at a time, however often an upstream says its tools changed.
    private let relisting = NIOLockedValueBox(Set<String>())
    /// Seals and opens session ids (`sessions:`).
    package let sessions: SessionSealer
    /// The time of day: session ages.
    let wallClock: WallClock
    /// Where events that are not requests are reported (log, metric and audit record).
    let events: GatewayEvents
    /// Serves 2026-07-28 clients from legacy upstreams (`bridge:`).
    let bridge: ProtocolBridge
    /// DPoP replay memory and nonces (`dpop:`).
    let dpop: DPoPGuard

    /// - Parameter tls: from ``GatewayTLSContexts/load(_:logger:)``; empty for plain-http policies.
    /// - Parameter allowDevelopmentAuthorizationServer: `true` only for `mcp-bouncer demo`.
    /// - Parameter previous: the gateway a policy reload replaces: its key stores and OAuth
    ///   clients of authorization servers whose settings did not change, its upstream pools (when
    ///   their limits did not change) and the elicitation guard's memory are kept.
    package init(
        policy: GatewayPolicy, fetcher: HTTPFetcher, tls: GatewayTLSContexts = GatewayTLSContexts(), allowDevelopmentAuthorizationServer: Bool = false,
        metrics: GatewayMetrics = GatewayMetrics(), audit: AuditTrail? = nil, sessionKey: SessionKey = .random(), previous: Gateway? = nil, wallClock: WallClock = .system, logger: Logger
    ) {
        self.wallClock = wallClock
        self.sessions = policy.sessions.sealer(fallback: sessionKey)
        self.tls = tls
        self.fetcher = fetcher
        self.metrics = metrics
        self.audit = audit
        self.policy = policy
        self.logger = logger
        let events = GatewayEvents(audit: audit, metrics: metrics, logger: logger)
        self.events = events
        for warning in policy.warnings {
            logger.warning("policy: \(warning.message)", metadata: ["key": "\(warning.keyPath)", "line": "\(warning.line.map(String.init) ?? "-")"])
        }
        var stores: [String: KeySetStore] = [:]
        var clients: [String: OAuthEndpointClient] = [:]
        for (name, server) in policy.authorizationServers {
            if let previous, previous.policy.authorizationServers[name] == server, let store = previous.keyStores[name] {
                stores[name] = store
                clients[name] = previous.clients[name]
                continue
            }
            let store = KeySetStore(
                server: server, fetcher: fetcher, tls: tls.authorizationServers[name],
                allowDevelopmentServer: allowDevelopmentAuthorizationServer, events: events, logger: logger
            )
            stores[name] = store
            if let credentials = server.client {
                clients[name] = OAuthEndpointClient(
                    server: server, credentials: credentials, keys: store, fetcher: fetcher, tls: tls.authorizationServers[name], events: events, logger: logger,
                    clock: wallClock
                )
            }
        }
        self.keyStores = stores
        self.clients = clients
        self.serverRequests = previous?.serverRequests ?? ServerRequestAnswers()
        if let previous, previous.policy.dpop == policy.dpop, previous.sessions.keys == self.sessions.keys {
            self.dpop = previous.dpop
        } else {
            self.dpop = DPoPGuard(settings: policy.dpop, keys: self.sessions.keys)
        }
        // The bridge's held sessions and parked calls survive a reload that changes neither
        // its settings nor the keys its requestStates are sealed with.
        if let previous, previous.policy.bridge == policy.bridge, previous.sessions.keys == self.sessions.keys {
            self.bridge = previous.bridge
        } else {
            previous?.bridge.endAll()
            self.bridge = ProtocolBridge(settings: policy.bridge, keys: self.sessions.keys, fetcher: fetcher, events: events, clock: wallClock)
        }
        self.resources = policy.resources.map { resource in
            guard let server = policy.authorizationServers[resource.authorizationServer], let keys = stores[resource.authorizationServer] else {
                preconditionFailure("PolicyLoader admitted \(resource.path) with an unknown authorization server \(resource.authorizationServer)")
            }
            return ResolvedResource(
                policy: resource, server: server, keys: keys, client: clients[resource.authorizationServer], upstreamTLS: tls.upstreams[resource.path],
                metrics: metrics.resource(resource), certificateBound: (policy.tls?.clientVerification ?? .none) != .none,
                clock: wallClock
            )
        }
        self.router = GatewayRouter(resources: self.resources.map { ($0.policy.uri.path, $0) })
        self.exchanger = TokenExchanger(capacity: policy.limits.exchangeCacheEntries, marginSeconds: policy.limits.exchangeExpiryMarginSeconds, logger: logger, clock: wallClock)
        self.introspector = Introspector(capacity: policy.limits.tokenCacheEntries, clock: wallClock)
        self.authenticator = TokenAuthenticator(cacheCapacity: policy.limits.tokenCacheEntries, clock: wallClock)
        if let previous, previous.policy.limits.upstreamConnectTimeoutSeconds == policy.limits.upstreamConnectTimeoutSeconds,
           previous.policy.limits.upstreamMaxIdleConnections == policy.limits.upstreamMaxIdleConnections {
            self.pools = previous.pools
        } else {
            self.pools = UpstreamPools(
                connectTimeout: .seconds(policy.limits.upstreamConnectTimeoutSeconds),
                maxIdle: policy.limits.upstreamMaxIdleConnections
            )
        }
    }

    /// Loads every authorization server's keys once, so the first request does not wait
    /// and `/readyz` turns green. Failures are logged; requests retry later.
    package func warmUp(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let loads = self.keyStores.values.map { store in
            store.keys(on: eventLoop).map { _ in () }.recover { _ in () }
        }
        return EventLoopFuture.andAllComplete(loads, on: eventLoop)
    }

    /// Lists the tools of every resource with `tool_pins` itself, as a client would, so a call
    /// to a tool whose definition changed is refused even if no client listed tools since the
    /// start. Resources whose upstream credential is a token exchange are skipped: there is no
    /// client token to exchange yet (their clients' lists are compared as they go by). A
    /// failure is logged; the pins still decide by name.
    package func listPinnedTools() async {
        for resource in self.resources where resource.policy.toolPinning != nil {
            await self.listTools(of: resource)
        }
    }

    /// Lists `resource`'s tools again after its upstream said they changed
    /// (`notifications/tools/list_changed`), so a changed tool is refused before a client lists.
    func relistTools(of resource: ResolvedResource) {
        let path = resource.policy.path
        guard resource.policy.toolPinning != nil, self.relisting.withLockedValue({ $0.insert(path).inserted }) else { return }
        Task {
            await self.listTools(of: resource)
            self.relisting.withLockedValue { _ = $0.remove(path) }
        }
    }

    /// The gateway's own MCP client for `resource`'s upstream, with its static credential;
    /// nil when the upstream takes an exchanged token (that needs a user).
    func upstreamClient(for resource: ResolvedResource) -> MCPClient? {
        var headers: [(String, String)] = []
        switch resource.credential {
        case .none: break
        case .staticHeader(let name, let value): headers.append((name, value))
        case .tokenExchange: return nil
        }
        return MCPClient(fetcher: self.fetcher, url: resource.upstream.uri.origin + resource.upstream.requestPath, headers: headers, tls: resource.upstreamTLS)
    }

    /// Lists one pinned resource's tools as an MCP client and compares them with their pins.
    /// Only with no upstream credential or a static one: an exchanged token needs a user.
    private func listTools(of resource: ResolvedResource) async {
        guard let lister = self.upstreamClient(for: resource) else { return }
        do {
            let tools = try await lister.listTools()
            var seen: [String: String] = [:]
            var findings: [ToolFinding] = []
            for case let (name, digest, finding)? in tools.map({ resource.policy.toolPinning!.pins.check($0) }) {
                seen[name] = digest
                if let finding { findings.append(finding) }
            }
            self.noteTools(resource, seen: seen, findings: findings)
            self.logger.info("upstream tools compared with their pins", metadata: ["resource": "\(resource.policy.path)", "tools": "\(tools.count)", "not_approved": "\(findings.count)"])
        } catch {
            self.logger.warning("cannot list the upstream's tools; calls are judged by the pins' names until a client lists them", metadata: [
                "resource": "\(resource.policy.path)", "reason": "\(error.reason)",
            ])
        }
    }

    /// Remembers the tools a list showed and reports the definitions that do not match their
    /// pins: once per tool and definition, in the audit trail, a metric and a warning.
    func noteTools(_ resource: ResolvedResource, seen: [String: String], findings: [ToolFinding]) {
        let action = resource.policy.toolPinning?.onChange ?? .block
        for finding in resource.tools.learn(seen, findings: findings) {
            self.events.toolDefinitionChanged(resource: resource.policy.path, finding, action: action.rawValue)
        }
    }

    /// Claims for a JWT already verified for `resource` and still valid, or `nil` when the
    /// token needs ``authenticate(token:resource:on:)`` (first sight, expiry, introspection).
    func cachedClaims(token: String, resource: ResolvedResource) -> AccessTokenClaims? {
        guard resource.server.tokenFormat.verifiesAsJWT(token) else { return nil }
        return self.authenticator.cachedClaims(token: token, resource: resource.policy)
    }

    /// Verified claims for a bearer token presented to `resource`: JWT verification or RFC 7662
    /// introspection, as the authorization server's `token_format` says. Fails with a
    /// ``GatewayRejection``.
    func authenticate(token: String, resource: ResolvedResource, on eventLoop: any EventLoop) -> EventLoopFuture<AccessTokenClaims> {
        if resource.server.tokenFormat.verifiesAsJWT(token) {
            return self.authenticator.authenticate(token: token, resource: resource.policy, requirements: resource.requirements, keys: resource.keys, on: eventLoop)
        }
        guard let client = resource.client else {
            return eventLoop.makeFailedFuture(GatewayRejection.invalidToken(TokenError(.malformed, "not a JWT, and no introspection client is configured for \(resource.server.issuer)")))
        }
        let metrics = self.metrics
        return self.introspector.claims(token: token, resource: resource.policy, requirements: resource.requirements, client: client, on: eventLoop)
            .always { result in
                let outcome: String
                switch result {
                case .success: outcome = "active"
                case .failure(let error): outcome = (error as? GatewayRejection).map { $0.response(resource: nil).status >= 500 } == false ? "inactive" : "unavailable"
                }
                metrics.introspection(result: outcome)
            }
    }

    /// The key store of one authorization server, by its policy name.
    package func keyStore(named name: String) -> KeySetStore? { self.keyStores[name] }

    /// Ready when every authorization server's keys are loaded and the audit sink writes.
    package var isReady: Bool { self.notReadyReasons.isEmpty }

    /// Why the gateway is not ready (`/readyz`), if it is not.
    package var notReadyReasons: [String] {
        var reasons: [String] = []
        if !self.keyStores.values.allSatisfy(\.isLoaded) { reasons.append("signing keys not loaded") }
        if let failure = self.audit?.failureReason { reasons.append("audit sink failing: \(failure)") }
        return reasons
    }

    /// What `/readyz` answers: ready (or why not), then each upstream's MCP era and what it
    /// rests on (details that do not change readiness).
    package var readiness: (ready: Bool, text: String) {
        let reasons = self.notReadyReasons
        let eras = self.resources.map { "upstream \($0.policy.path): \($0.era.era.rawValue) (\($0.era.detail))" }
        return (reasons.isEmpty, ((reasons.isEmpty ? ["ready"] : reasons) + eras).joined(separator: "\n") + "\n")
    }

}
