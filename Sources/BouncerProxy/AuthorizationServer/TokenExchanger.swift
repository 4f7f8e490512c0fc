import BouncerCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Upstream tokens by RFC 8693 token exchange: cached per (subject token digest, server,
/// target), reused until shortly before they expire and never past the subject token's own
/// expiry, with concurrent misses for the same key coalesced into one exchange.
///
/// The cache lives behind a lock that is held only to read or update it, never across a call.
final class TokenExchanger: Sendable {
    private struct State {
        var cache: ExpiringCache<CacheKey, String>
        var inflight: [CacheKey: EventLoopFuture<String>] = [:]
    }

    /// Compared and hashed as fields, with no key string built per request.
    private enum CacheKey: Hashable, Sendable {
        /// The subject token only as a digest, so the cache never holds it.
        /// `binding`: the thumbprint of the gateway's DPoP key the token is bound to.
        case exchanged(subject: TokenDigest.Value, server: String, target: TokenExchangeTarget, sendActorToken: Bool, binding: String?)
        /// The gateway's own token from `server`, sent as `actor_token`.
        case actor(server: String)
    }

    private let state: NIOLockedValueBox<State>
    private let marginSeconds: Int64
    private let logger: Logger
    private let clock: WallClock

    init(capacity: Int, marginSeconds: Int64, logger: Logger, clock: WallClock = .system) {
        self.state = NIOLockedValueBox(State(cache: ExpiringCache(capacity: capacity)))
        self.marginSeconds = marginSeconds
        self.logger = logger
        self.clock = clock
    }

    private static func cacheKey(subjectToken: String, target: TokenExchangeTarget, policy: TokenExchangePolicy, client: OAuthEndpointClient, dpop: UpstreamDPoP?) -> CacheKey {
        .exchanged(
            subject: TokenDigest.value(subjectToken), server: client.server.name, target: target, sendActorToken: policy.sendActorToken, binding: dpop?.signer.thumbprint
        )
    }

    /// A cached upstream token for this subject that is still fresh: the warm path, answered
    /// without a future. `nil` means ``upstreamToken(subjectToken:subjectClaims:policy:tool:client:dpop:on:)``.
    func cachedUpstreamToken(subjectToken: String, policy: TokenExchangePolicy, tool: String?, client: OAuthEndpointClient, dpop: UpstreamDPoP?) -> String? {
        let key = Self.cacheKey(subjectToken: subjectToken, target: policy.target(forTool: tool), policy: policy, client: client, dpop: dpop)
        let now = self.clock.seconds()
        return self.state.withLockedValue { $0.cache.value(for: key, now: now) }
    }

    /// The token to send upstream for this subject, bound to `dpop`'s key when the upstream
    /// leg is DPoP-bound. Fails with a ``GatewayRejection``.
    func upstreamToken(
        subjectToken: String, subjectClaims: AccessTokenClaims, policy: TokenExchangePolicy, tool: String?,
        client: OAuthEndpointClient, dpop: UpstreamDPoP?, on eventLoop: any EventLoop
    ) -> EventLoopFuture<String> {
        let target = policy.target(forTool: tool)
        let key = Self.cacheKey(subjectToken: subjectToken, target: target, policy: policy, client: client, dpop: dpop)
        let now = self.clock.seconds()
        enum Next {
            case cached(String)
            case wait(EventLoopFuture<String>)
            case exchange(EventLoopPromise<String>)
        }
        let next: Next = self.state.withLockedValue { state in
            if let token = state.cache.value(for: key, now: now) { return .cached(token) }
            if let inflight = state.inflight[key] { return .wait(inflight) }
            let promise = eventLoop.makePromise(of: String.self)
            state.inflight[key] = promise.futureResult
            return .exchange(promise)
        }
        switch next {
        case .cached(let token):
            return eventLoop.makeSucceededFuture(token)
        case .wait(let future):
            return future.hop(to: eventLoop)
        case .exchange(let promise):
            let actor: EventLoopFuture<String?> = policy.sendActorToken
                ? self.actorToken(client: client, on: eventLoop).map { Optional($0) }
                : eventLoop.makeSucceededFuture(nil)
            actor.flatMap { actorToken in
                client.exchange(subjectToken: subjectToken, target: target, actorToken: actorToken, dpop: dpop, on: eventLoop)
            }.whenComplete { result in
                let finished = self.clock.seconds()
                self.state.withLockedValue { state in
                    state.inflight[key] = nil
                    if case .success(let issued) = result {
                        let until = ExchangedTokenLifetime.cacheUntil(
                            now: finished, expiresIn: issued.expiresIn, subjectExpiresAt: subjectClaims.expiresAt, marginSeconds: self.marginSeconds
                        )
                        state.cache.set(issued.accessToken, for: key, expiresAt: until, now: finished)
                    }
                }
                switch result {
                case .success(let issued):
                    self.logger.debug("token exchanged", metadata: [
                        "issuer": "\(client.server.issuer)", "target": "\(target.cacheKey)", "expires_in": "\(issued.expiresIn.map { "\($0)" } ?? "-")",
                        "token_type": "\(issued.tokenType)",
                    ])
                    promise.succeed(issued.accessToken)
                case .failure(let error):
                    promise.fail(Self.rejection(for: error, issuer: client.server.issuer))
                }
            }
            return promise.futureResult
        }
    }

    /// The gateway's own access token for `actor_token`, cached like exchanged ones.
    private func actorToken(client: OAuthEndpointClient, on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        let key = CacheKey.actor(server: client.server.name)
        let now = self.clock.seconds()
        if let token = self.state.withLockedValue({ $0.cache.value(for: key, now: now) }) {
            return eventLoop.makeSucceededFuture(token)
        }
        return client.clientCredentialsToken(on: eventLoop).map { issued in
            let until = now + max(0, (issued.expiresIn ?? 0) - self.marginSeconds)
            self.state.withLockedValue { $0.cache.set(issued.accessToken, for: key, expiresAt: until, now: now) }
            return issued.accessToken
        }
    }

    /// Maps a failed call to what the client is told. `invalid_grant` means the subject
    /// token itself was refused: that is the client's token problem (401).
    static func rejection(for error: any Error, issuer: String) -> GatewayRejection {
        guard let error = error as? OAuthClientError else {
            return .upstreamCredentialUnavailable("token exchange at \(issuer): \(error)", id: nil)
        }
        switch error.code {
        case .unavailable:
            return .upstreamCredentialUnavailable("token exchange at \(issuer): \(error.reason)", id: nil)
        case .refused where error.refusal?.code == "invalid_grant":
            return .invalidToken(TokenError(.expired, "token exchange at \(issuer) refused the subject token: \(error.reason)"))
        case .refused:
            return .upstreamCredentialRefused(cause: error.refusal?.code ?? "refused", reason: "token exchange at \(issuer): \(error.reason)", id: nil)
        case .misconfigured, .authenticationFailed, .keyInvalid:
            // The gateway cannot ask as configured: no retry helps, as with a refusal.
            return .upstreamCredentialRefused(cause: "misconfigured", reason: "token exchange at \(issuer): \(error.reason)", id: nil)
        }
    }
}
