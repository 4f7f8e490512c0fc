import BouncerCore
import BouncerTLS
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The gateway as an OAuth client of one authorization server: token exchange, client
/// credentials (for actor tokens) and introspection, authenticated with the configured
/// method, guarded by a circuit breaker so a dead server is not hammered.
final class OAuthEndpointClient: Sendable {
    let server: AuthorizationServerPolicy
    let credentials: OAuthClientCredentials
    private let keys: KeySetStore
    private let fetcher: HTTPFetcher
    private let tls: TLSContext?
    private let breaker = NIOLockedValueBox(CircuitBreaker())
    private let logger: Logger
    private let events: GatewayEvents
    private let clock: WallClock

    init(server: AuthorizationServerPolicy, credentials: OAuthClientCredentials, keys: KeySetStore, fetcher: HTTPFetcher, tls: TLSContext?,
         events: GatewayEvents = GatewayEvents(), logger: Logger, clock: WallClock = .system) {
        self.events = events
        self.server = server
        self.credentials = credentials
        self.keys = keys
        self.fetcher = fetcher
        self.tls = tls
        self.logger = logger
        self.clock = clock
    }

    /// RFC 8693 token exchange. With `dpop`, the request carries the gateway's DPoP proof so
    /// the token is bound to its key, and only a DPoP token is accepted back.
    func exchange(subjectToken: String, target: TokenExchangeTarget, actorToken: String?, dpop: UpstreamDPoP? = nil, on eventLoop: any EventLoop) -> EventLoopFuture<IssuedToken> {
        self.tokenEndpoint(on: eventLoop).flatMap { endpoint in
            let fields = TokenExchange.formFields(subjectToken: subjectToken, target: target, actorToken: actorToken)
            guard let dpop else { return self.post(endpoint, purpose: "token", fields: fields, on: eventLoop) }
            return self.postWithProof(endpoint, fields: fields, dpop: dpop, retried: false, on: eventLoop)
        }.flatMapThrowing { response in
            try IssuedToken.parse(status: response.status, body: response.body, dpopBound: dpop != nil).mapError { OAuthClientError.refused($0) }.get()
        }
    }

    /// A token request with a DPoP proof (`htm` POST, `htu` the endpoint, no `ath`). A server
    /// that asks for a nonce (`use_dpop_nonce` with a `DPoP-Nonce`, RFC 9449 §8) is asked
    /// again once with it; the nonce is remembered for the next request.
    private func postWithProof(_ endpoint: String, fields: [(String, String)], dpop: UpstreamDPoP, retried: Bool, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPFetchResponse> {
        let url = String(endpoint.prefix { $0 != "?" && $0 != "#" })
        guard let proof = dpop.proof(method: "POST", url: url, accessToken: nil) else {
            return eventLoop.makeFailedFuture(OAuthClientError(.keyInvalid, "cannot sign a DPoP proof with the dpop_key"))
        }
        return self.post(endpoint, purpose: "token", fields: fields, headers: [("DPoP", proof)], on: eventLoop).flatMap { response in
            let fresh = dpop.noteNonce(response.header("DPoP-Nonce"), from: url)
            guard !retried, fresh, response.status == 400 || response.status == 401,
                  case .failure(let refusal) = IssuedToken.parse(status: response.status, body: response.body), refusal.code == "use_dpop_nonce"
            else { return eventLoop.makeSucceededFuture(response) }
            return self.postWithProof(endpoint, fields: fields, dpop: dpop, retried: true, on: eventLoop)
        }
    }

    /// The gateway's own token (client credentials), used as `actor_token`.
    func clientCredentialsToken(on eventLoop: any EventLoop) -> EventLoopFuture<IssuedToken> {
        self.tokenEndpoint(on: eventLoop).flatMap { endpoint in
            self.post(endpoint, purpose: "token", fields: [("grant_type", "client_credentials")], on: eventLoop)
        }.flatMapThrowing { response in
            try IssuedToken.parse(status: response.status, body: response.body).mapError { OAuthClientError.refused($0) }.get()
        }
    }

    /// The raw 200 body of an introspection call.
    func introspect(_ token: String, on eventLoop: any EventLoop) -> EventLoopFuture<[UInt8]> {
        self.introspectionEndpoint(on: eventLoop).flatMap { endpoint in
            self.post(endpoint, purpose: "introspection", fields: Introspection.formFields(token: token), on: eventLoop)
        }.flatMapThrowing { response in
            guard response.status == 200 else {
                throw OAuthClientError.refused(TokenEndpointError(code: "http_\(response.status)", description_: "introspection failed", status: response.status))
            }
            return response.body
        }
    }

    private func tokenEndpoint(on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        if let configured = self.server.tokenEndpoint { return eventLoop.makeSucceededFuture(configured) }
        return self.discovered(\.tokenEndpoint, "token_endpoint", on: eventLoop)
    }

    private func introspectionEndpoint(on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        if let configured = self.server.introspectionEndpoint { return eventLoop.makeSucceededFuture(configured) }
        return self.discovered(\.introspectionEndpoint, "introspection_endpoint", on: eventLoop)
    }

    private func discovered(_ field: any KeyPath<AuthorizationServerMetadata, String?> & Sendable, _ name: String, on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        self.keys.metadata(on: eventLoop).flatMapErrorThrowing { error in
            throw OAuthClientError(.unavailable, "\(error)")
        }.flatMapThrowing { metadata in
            guard let url = metadata[keyPath: field] else {
                throw OAuthClientError(.misconfigured, "the metadata of \(self.server.issuer) has no \(name)")
            }
            let supported = metadata.tokenEndpointAuthMethods
            if !supported.isEmpty, !supported.contains(self.credentials.method.rawValue) {
                throw OAuthClientError(
                    .misconfigured, "\(self.server.issuer) does not support \(self.credentials.method.rawValue) (it supports \(supported.joined(separator: ", ")))"
                )
            }
            return url
        }
    }

    private func post(
        _ endpoint: String, purpose: String, fields: [(String, String)], headers extra: [(String, String)] = [], on eventLoop: any EventLoop
    ) -> EventLoopFuture<HTTPFetchResponse> {
        let now = self.clock.seconds()
        guard self.breaker.withLockedValue({ $0.allow(now: now) }) else {
            return eventLoop.makeFailedFuture(OAuthClientError(.unavailable, "circuit open after repeated failures of \(self.server.issuer)"))
        }
        let authentication: (headers: [(String, String)], fields: [(String, String)])
        do {
            authentication = try self.credentials.authenticate(endpoint: endpoint, now: now, jti: UUID().uuidString)
        } catch {
            // Nothing went to the server: the breaker learns nothing from it.
            self.breaker.withLockedValue { $0.callNotMade() }
            return eventLoop.makeFailedFuture(error)
        }
        return self.fetcher.postForm(endpoint, purpose: purpose, fields: fields + authentication.fields, headers: authentication.headers + extra, tls: self.tls,
                                     serverName: self.server.tls.serverName, on: eventLoop)
            .flatMapErrorThrowing { error in
                self.recordFailure(now: now, reason: "\(error)")
                throw OAuthClientError(.unavailable, "\(endpoint): \(error)")
            }
            .flatMapThrowing { response in
                if response.status >= 500 || response.status == 429 {
                    self.recordFailure(now: now, reason: "HTTP \(response.status)")
                    throw OAuthClientError(.unavailable, "\(endpoint) answered \(response.status)")
                }
                self.recordSuccess()
                return response
            }
    }

    private func recordSuccess() {
        let closed = self.breaker.withLockedValue { breaker -> Bool in
            let wasOpen: Bool
            if case .closed = breaker.state { wasOpen = false } else { wasOpen = true }
            breaker.recordSuccess()
            return wasOpen
        }
        if closed {
            self.events.circuit(self.server.issuer, open: false, reason: nil)
        }
    }

    private func recordFailure(now: Int64, reason: String) {
        let opened = self.breaker.withLockedValue { breaker -> Bool in
            let wasOpen: Bool
            if case .closed = breaker.state { wasOpen = false } else { wasOpen = true }
            breaker.recordFailure(now: now)
            if case .open = breaker.state { return !wasOpen }
            return false
        }
        if opened {
            self.events.circuit(self.server.issuer, open: true, reason: reason)
        }
    }
}
