import BouncerCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Opaque tokens by RFC 7662 introspection: positive answers cached until the token's
/// `exp` (at most `introspection_cache_seconds`), negative ones briefly.
final class Introspector: Sendable {
    private let cache: NIOLockedValueBox<ExpiringCache<CacheKey, Introspection.Outcome>>

    /// The token only as a digest (see ``TokenExchanger``), for one resource.
    private struct CacheKey: Hashable, Sendable {
        let token: TokenDigest.Value
        let resource: String
    }
    private let clock: WallClock

    init(capacity: Int, clock: WallClock = .system) {
        self.cache = NIOLockedValueBox(ExpiringCache(capacity: capacity))
        self.clock = clock
    }

    /// Fails with a ``GatewayRejection``.
    func claims(token: String, resource: ResourcePolicy, requirements: TokenRequirements, client: OAuthEndpointClient, on eventLoop: any EventLoop) -> EventLoopFuture<AccessTokenClaims> {
        let key = CacheKey(token: TokenDigest.value(token), resource: resource.path)
        let now = self.clock.seconds()
        if let outcome = self.cache.withLockedValue({ $0.value(for: key, now: now) }) {
            return eventLoop.makeCompletedFuture(Self.result(outcome))
        }
        let server = client.server
        return client.introspect(token, on: eventLoop).flatMapError { error in
            eventLoop.makeFailedFuture(GatewayRejection.authorizationServerUnavailable("introspection at \(server.issuer): \(error)"))
        }.flatMapThrowing { body in
            let finished = self.clock.seconds()
            switch Introspection.parse(body: body, requirements: requirements, now: finished, maxLifetimeSeconds: server.introspectionCacheSeconds) {
            case .failure(let error):
                throw GatewayRejection.authorizationServerUnavailable("introspection at \(server.issuer): \(error)")
            case .success(let outcome):
                let until: Int64
                switch outcome {
                case .active(let claims): until = min(claims.expiresAt, finished + server.introspectionCacheSeconds)
                case .rejected: until = finished + server.introspectionNegativeCacheSeconds
                }
                self.cache.withLockedValue { $0.set(outcome, for: key, expiresAt: until, now: finished) }
                return try Self.result(outcome).get()
            }
        }
    }

    private static func result(_ outcome: Introspection.Outcome) -> Result<AccessTokenClaims, any Error> {
        switch outcome {
        case .active(let claims): return .success(claims)
        case .rejected(let error): return .failure(GatewayRejection.invalidToken(error))
        }
    }
}
