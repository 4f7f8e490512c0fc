import BouncerCore
import Logging
import NIOCore

/// Everything a connection needs, built once from a policy and shared (read-only) by all
/// connections.
public final class Gateway: Sendable {
    public let policy: GatewayPolicy
    public let router: GatewayRouter
    public let logger: Logger
    let keyStores: [String: KeySetStore]
    let requirements: [String: TokenRequirements]
    let authenticator: TokenAuthenticator
    let pools: UpstreamPools
    public let tls: GatewayTLSContexts
    /// The gateway's OAuth client per authorization server that configures one.
    let oauthClients: [String: OAuthEndpointClient]
    let exchanger: TokenExchanger
    let introspector: Introspector

    /// - Parameter tls: from ``GatewayTLSContexts/load(_:logger:)``; empty for plain-http policies.
    /// - Parameter allowDevelopmentAuthorizationServer: `true` only for `mcp-bouncer demo`.
    public init(policy: GatewayPolicy, fetcher: HTTPFetcher, tls: GatewayTLSContexts = GatewayTLSContexts(), allowDevelopmentAuthorizationServer: Bool = false, logger: Logger) {
        self.tls = tls
        self.policy = policy
        self.router = GatewayRouter(policy: policy)
        self.logger = logger
        var stores: [String: KeySetStore] = [:]
        for (name, server) in policy.authorizationServers {
            stores[name] = KeySetStore(
                server: server, fetcher: fetcher, tls: tls.authorizationServers[name],
                allowDevelopmentServer: allowDevelopmentAuthorizationServer, logger: logger
            )
        }
        self.keyStores = stores
        var clients: [String: OAuthEndpointClient] = [:]
        for (name, server) in policy.authorizationServers {
            if let credentials = server.client, let store = stores[name] {
                clients[name] = OAuthEndpointClient(
                    server: server, credentials: credentials, keys: store, fetcher: fetcher, tls: tls.authorizationServers[name], logger: logger
                )
            }
        }
        self.oauthClients = clients
        self.exchanger = TokenExchanger(capacity: policy.limits.exchangeCacheEntries, marginSeconds: policy.limits.exchangeExpiryMarginSeconds, logger: logger)
        self.introspector = Introspector(capacity: policy.limits.tokenCacheEntries)
        var requirements: [String: TokenRequirements] = [:]
        for resource in policy.resources {
            if let server = policy.authorizationServers[resource.authorizationServer] {
                requirements[resource.path] = TokenRequirements(server: server, resource: resource)
            }
        }
        self.requirements = requirements
        self.authenticator = TokenAuthenticator(cacheCapacity: policy.limits.tokenCacheEntries)
        self.pools = UpstreamPools(
            connectTimeout: .seconds(policy.limits.upstreamConnectTimeoutSeconds),
            maxIdle: policy.limits.upstreamMaxIdleConnections
        )
    }

    /// Loads every authorization server's keys once, so the first request does not wait
    /// and `/readyz` turns green. Failures are logged; requests retry later.
    public func warmUp(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let loads = self.keyStores.values.map { store in
            store.keys(on: eventLoop).map { _ in () }.recover { _ in () }
        }
        return EventLoopFuture.andAllComplete(loads, on: eventLoop)
    }

    /// Claims for a JWT already verified for `resource` and still valid, or `nil` when the
    /// token needs ``authenticate(token:resource:on:)`` (first sight, expiry, introspection).
    func cachedClaims(token: String, resource: ResourcePolicy) -> AccessTokenClaims? {
        guard let server = self.policy.authorizationServers[resource.authorizationServer], server.tokenFormat.verifiesAsJWT(token) else { return nil }
        return self.authenticator.cachedClaims(token: token, resource: resource)
    }

    /// Verified claims for a bearer token presented to `resource`: JWT verification or RFC 7662
    /// introspection, as the authorization server's `token_format` says. Fails with a
    /// ``GatewayRejection``.
    func authenticate(token: String, resource: ResourcePolicy, on eventLoop: any EventLoop) -> EventLoopFuture<AccessTokenClaims> {
        guard let server = self.policy.authorizationServers[resource.authorizationServer],
              let requirements = self.requirements[resource.path], let keys = self.keyStores[resource.authorizationServer]
        else {
            return eventLoop.makeFailedFuture(GatewayRejection.authorizationServerUnavailable("no authorization server for \(resource.path)"))
        }
        if server.tokenFormat.verifiesAsJWT(token) {
            return self.authenticator.authenticate(token: token, resource: resource, requirements: requirements, keys: keys, on: eventLoop)
        }
        guard let client = self.oauthClients[resource.authorizationServer] else {
            return eventLoop.makeFailedFuture(GatewayRejection.invalidToken(TokenError(.malformed, "not a JWT, and no introspection client is configured for \(server.issuer)")))
        }
        return self.introspector.claims(token: token, resource: resource, requirements: requirements, client: client, on: eventLoop)
    }

    /// The key store of one authorization server, by its policy name.
    public func keyStore(named name: String) -> KeySetStore? { self.keyStores[name] }

    /// Ready when every authorization server's keys are loaded.
    public var isReady: Bool { self.keyStores.values.allSatisfy(\.isLoaded) }

    func issuer(of resource: ResourcePolicy) -> String {
        self.policy.authorizationServers[resource.authorizationServer]?.issuer ?? ""
    }
}
