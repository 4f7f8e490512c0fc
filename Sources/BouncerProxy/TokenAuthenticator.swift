import BouncerCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Verified tokens, remembered until they expire so a token is verified once, not once per
/// request. Bounded: when full, expired entries go first, then the entries closest to expiry.
final class VerifiedTokenCache: Sendable {
    private let capacity: Int
    private let entries = NIOLockedValueBox([String: AccessTokenClaims]())

    init(capacity: Int) {
        self.capacity = capacity
    }

    func lookup(_ key: String, now: Int64, leeway: Int64) -> AccessTokenClaims? {
        guard self.capacity > 0 else { return nil }
        return self.entries.withLockedValue { entries in
            guard let claims = entries[key] else { return nil }
            if now >= claims.expiresAt + leeway {
                entries[key] = nil
                return nil
            }
            return claims
        }
    }

    func store(_ key: String, _ claims: AccessTokenClaims, now: Int64) {
        guard self.capacity > 0 else { return }
        self.entries.withLockedValue { entries in
            if entries.count >= self.capacity {
                entries = entries.filter { $0.value.expiresAt > now }
                if entries.count >= self.capacity {
                    let evict = entries.sorted { $0.value.expiresAt < $1.value.expiresAt }.prefix(entries.count - self.capacity / 2)
                    for (key, _) in evict { entries[key] = nil }
                }
            }
            entries[key] = claims
        }
    }

    var count: Int { self.entries.withLockedValue { $0.count } }
}

/// Turns a bearer token into verified claims for one resource: cache, then signature and
/// claims against the issuer's key set, refreshing the set once on an unknown `kid`.
///
/// The signature check runs on the calling event loop: it is bounded CPU work (one
/// verification per token lifetime thanks to the cache), cheaper than a thread hop.
public final class TokenAuthenticator: Sendable {
    private let cache: VerifiedTokenCache
    private let now: @Sendable () -> Int64

    public init(cacheCapacity: Int, now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.cache = VerifiedTokenCache(capacity: cacheCapacity)
        self.now = now
    }

    /// Fails with a ``GatewayRejection``: `.invalidToken` or `.authorizationServerUnavailable`.
    public func authenticate(
        token: String, resource: ResourcePolicy, requirements: TokenRequirements, keys: KeySetStore, on eventLoop: any EventLoop
    ) -> EventLoopFuture<AccessTokenClaims> {
        let now = self.now()
        let cacheKey = resource.path + " " + token
        if let claims = self.cache.lookup(cacheKey, now: now, leeway: requirements.leewaySeconds) {
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

    private func verify(_ jws: CompactJWS, keySet: JSONWebKeySet, requirements: TokenRequirements, cacheKey: String) throws(TokenError) -> AccessTokenClaims {
        try AccessTokenVerifier.verifySignature(jws, keys: keySet, requirements: requirements)
        let now = self.now()
        let claims = try AccessTokenVerifier.validateClaims(jws, requirements: requirements, now: now)
        self.cache.store(cacheKey, claims, now: now)
        return claims
    }

    var cachedTokenCount: Int { self.cache.count }
}
