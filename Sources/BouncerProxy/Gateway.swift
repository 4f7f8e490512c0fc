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

    /// - Parameter tls: from ``GatewayTLSContexts/load(_:logger:)``; empty for plain-http policies.
    public init(policy: GatewayPolicy, fetcher: HTTPFetcher, tls: GatewayTLSContexts = GatewayTLSContexts(), logger: Logger) {
        self.tls = tls
        self.policy = policy
        self.router = GatewayRouter(policy: policy)
        self.logger = logger
        var stores: [String: KeySetStore] = [:]
        for (name, server) in policy.authorizationServers {
            stores[name] = KeySetStore(server: server, fetcher: fetcher, tls: tls.authorizationServers[name], logger: logger)
        }
        self.keyStores = stores
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

    /// Ready when every authorization server's keys are loaded.
    public var isReady: Bool { self.keyStores.values.allSatisfy(\.isLoaded) }

    func issuer(of resource: ResourcePolicy) -> String {
        self.policy.authorizationServers[resource.authorizationServer]?.issuer ?? ""
    }
}
