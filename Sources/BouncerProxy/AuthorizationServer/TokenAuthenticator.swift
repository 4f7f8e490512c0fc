import BouncerCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Verified tokens, remembered until they expire (plus the leeway the verifier allows) so a
/// token is verified once, not once per request. Bounded, least recently used first out.
final class VerifiedTokenCache: Sendable {
    /// A token is verified for one resource (its audience): the pair is the key, hashed as
    /// two strings rather than concatenated into a third per lookup.
    struct Key: Hashable, Sendable {
        let resource: String
        let token: String
    }

    private let entries: NIOLockedValueBox<ExpiringCache<Key, AccessTokenClaims>>

    init(capacity: Int) {
        self.entries = NIOLockedValueBox(ExpiringCache(capacity: capacity))
    }

    func lookup(_ key: Key, now: Int64) -> AccessTokenClaims? {
        self.entries.withLockedValue { $0.value(for: key, now: now) }
    }

    func store(_ key: Key, _ claims: AccessTokenClaims, leeway: Int64, now: Int64) {
        self.entries.withLockedValue { $0.set(claims, for: key, expiresAt: claims.expiresAt + leeway, now: now) }
    }
}

/// Turns a bearer token into verified claims for one resource: cache, then signature and
/// claims against the issuer's key set, refreshing the set once on an unknown `kid`.
///
/// The signature check runs on the calling event loop: it is bounded CPU work (one
/// verification per token lifetime thanks to the cache), cheaper than a thread hop.
public final class TokenAuthenticator: Sendable {
    private let cache: VerifiedTokenCache
    private let clock: WallClock

    public init(cacheCapacity: Int, clock: WallClock = .system) {
        self.cache = VerifiedTokenCache(capacity: cacheCapacity)
        self.clock = clock
    }

    /// The claims of a token this authenticator verified for `resource` and that has not
    /// expired: the warm path, answered without a future.
    public func cachedClaims(token: String, resource: ResourcePolicy) -> AccessTokenClaims? {
        self.cache.lookup(Self.cacheKey(token: token, resource: resource), now: self.clock.seconds())
    }

    private static func cacheKey(token: String, resource: ResourcePolicy) -> VerifiedTokenCache.Key {
        VerifiedTokenCache.Key(resource: resource.path, token: token)
    }

    /// Fails with a ``GatewayRejection``: `.invalidToken` or `.authorizationServerUnavailable`.
    package func authenticate(
        token: String, resource: ResourcePolicy, requirements: TokenRequirements, keys: KeySetStore, on eventLoop: any EventLoop
    ) -> EventLoopFuture<AccessTokenClaims> {
        let now = self.clock.seconds()
        let cacheKey = Self.cacheKey(token: token, resource: resource)
        if let claims = self.cache.lookup(cacheKey, now: now) {
            return eventLoop.makeSucceededFuture(claims)
        }
        // Parse before touching the network: garbage must not trigger a key fetch.
        let jws: CompactJWS
        do {
            jws = try CompactJWS(token)
        } catch {
            return eventLoop.makeFailedFuture(GatewayRejection.invalidToken(error))
        }
        return keys.keys(on: eventLoop).flatMapError { error in
            eventLoop.makeFailedFuture(GatewayRejection.authorizationServerUnavailable("\(error)"))
        }.flatMap { keySet in
            let firstAttempt = Result { () throws(TokenError) in try self.verify(jws, keySet: keySet, requirements: requirements, cacheKey: cacheKey) }
            switch firstAttempt {
            case .success(let claims):
                return eventLoop.makeSucceededFuture(claims)
            case .failure(let error) where error.code == .unknownKey:
                // Possibly a rotated key: refresh once (rate-limited) and retry.
                return keys.refreshForUnknownKey(jws.keyID, on: eventLoop).flatMapError { _ in
                    eventLoop.makeFailedFuture(GatewayRejection.invalidToken(error))
                }.flatMapThrowing { refreshed in
                    do throws(TokenError) {
                        return try self.verify(jws, keySet: refreshed, requirements: requirements, cacheKey: cacheKey)
                    } catch {
                        throw GatewayRejection.invalidToken(error)
                    }
                }
            case .failure(let error):
                return eventLoop.makeFailedFuture(GatewayRejection.invalidToken(error))
            }
        }
    }

    /// Verifies a JWT with a key set already in hand and remembers it for `resource`: what
    /// ``authenticate(token:resource:requirements:keys:on:)`` does once the keys are loaded.
    public func verify(token: String, resource: ResourcePolicy, requirements: TokenRequirements, keySet: JSONWebKeySet) throws(TokenError) -> AccessTokenClaims {
        try self.verify(CompactJWS(token), keySet: keySet, requirements: requirements, cacheKey: Self.cacheKey(token: token, resource: resource))
    }

    private func verify(_ jws: CompactJWS, keySet: JSONWebKeySet, requirements: TokenRequirements, cacheKey: VerifiedTokenCache.Key) throws(TokenError) -> AccessTokenClaims {
        try AccessTokenVerifier.verifySignature(jws, keys: keySet, requirements: requirements)
        let now = self.clock.seconds()
        let claims = try AccessTokenVerifier.validateClaims(jws, requirements: requirements, now: now)
        self.cache.store(cacheKey, claims, leeway: requirements.leewaySeconds, now: now)
        return claims
    }
}
