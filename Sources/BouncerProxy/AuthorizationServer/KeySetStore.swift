import BouncerCore
import BouncerTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The signing keys of one authorization server: discovered (RFC 8414 / OpenID), fetched,
/// cached, and re-fetched when a token names a `kid` we have not seen (key rotation) at most
/// once per `jwks_refresh_min_interval_seconds`, so a flood of forged `kid`s cannot turn the
/// gateway into a load generator against the identity provider.
///
/// Thread-safe: the snapshot is read under a lock once per cache miss; concurrent fetches
/// are coalesced into one.
package final class KeySetStore: Sendable {
    package let server: AuthorizationServerPolicy
    private let fetcher: HTTPFetcher
    /// For https discovery and key set URLs.
    private let tls: TLSContext?
    /// Only `mcp-bouncer demo` trusts its own development authorization server.
    private let allowDevelopmentServer: Bool
    private let logger: Logger
    private let events: GatewayEvents
    private let state = NIOLockedValueBox(State())

    private struct State {
        var keys: JSONWebKeySet?
        var fetchedAt: NIODeadline?
        /// Any fetch; failed first loads are retried no more often than the minimum interval.
        var lastAttempt: NIODeadline?
        /// Fetches caused by an unknown `kid`: at most one per minimum interval.
        var lastUnknownKeyRefresh: NIODeadline?
        var inflight: EventLoopFuture<JSONWebKeySet>?
        var lastError: String?
        /// Whether the last fetch succeeded (`nil` before the first), to report changes once.
        var reachable: Bool?
        /// The discovered RFC 8414 / OpenID metadata, kept once found.
        var metadata: AuthorizationServerMetadata?
    }

    package init(
        server: AuthorizationServerPolicy, fetcher: HTTPFetcher, tls: TLSContext?, allowDevelopmentServer: Bool = false, events: GatewayEvents = GatewayEvents(),
        logger: Logger
    ) {
        self.events = events
        self.server = server
        self.fetcher = fetcher
        self.tls = tls
        self.allowDevelopmentServer = allowDevelopmentServer
        var logger = logger
        logger[metadataKey: "authorization_server"] = "\(server.name)"
        self.logger = logger
    }

    /// Whether a key set has been loaded (readiness).
    package var isLoaded: Bool { self.state.withLockedValue { $0.keys != nil } }

    /// The cached key set, fetching it first if there is none. A set older than
    /// `jwks_max_age_seconds` is still used while a refresh runs in the background.
    package func keys(on eventLoop: any EventLoop) -> EventLoopFuture<JSONWebKeySet> {
        let now = NIODeadline.now()
        let (cached, stale) = self.state.withLockedValue { state -> (JSONWebKeySet?, Bool) in
            guard let keys = state.keys, let fetchedAt = state.fetchedAt else { return (nil, true) }
            return (keys, now - fetchedAt > .seconds(self.server.jwksMaxAgeSeconds))
        }
        if let cached {
            if stale { _ = self.fetchCoalesced(reason: "key set older than \(self.server.jwksMaxAgeSeconds)s", unknownKey: false, on: eventLoop) }
            return eventLoop.makeSucceededFuture(cached)
        }
        return self.fetchCoalesced(reason: "first use", unknownKey: false, on: eventLoop)
    }

    /// Re-fetches the key set because a token named a `kid` it does not hold (the provider
    /// may have rotated its keys), unless such a refresh happened less than the minimum
    /// interval ago; then the current set is returned unchanged.
    package func refreshForUnknownKey(_ keyID: String?, on eventLoop: any EventLoop) -> EventLoopFuture<JSONWebKeySet> {
        self.fetchCoalesced(reason: "unknown kid \(keyID ?? "(none)")", unknownKey: true, on: eventLoop)
    }

    private func fetchCoalesced(reason: String, unknownKey: Bool, on eventLoop: any EventLoop) -> EventLoopFuture<JSONWebKeySet> {
        let now = NIODeadline.now()
        let interval = TimeAmount.seconds(self.server.jwksRefreshMinIntervalSeconds)
        enum Next {
            case wait(EventLoopFuture<JSONWebKeySet>)
            case current(JSONWebKeySet)
            case throttled(String)
            case fetch(EventLoopPromise<JSONWebKeySet>)
        }
        let next: Next = self.state.withLockedValue { state in
            if let inflight = state.inflight { return .wait(inflight) }
            if unknownKey, let keys = state.keys, let last = state.lastUnknownKeyRefresh, now - last < interval {
                return .current(keys)
            }
            if !unknownKey, let last = state.lastAttempt, now - last < interval {
                // A dead authorization server is not asked again on every request.
                if let keys = state.keys { return .current(keys) }
                return .throttled(state.lastError ?? "key set fetch failed")
            }
            let promise = eventLoop.makePromise(of: JSONWebKeySet.self)
            state.inflight = promise.futureResult
            state.lastAttempt = now
            if unknownKey { state.lastUnknownKeyRefresh = now }
            return .fetch(promise)
        }
        switch next {
        case .wait(let future): return future.hop(to: eventLoop)
        case .current(let keys): return eventLoop.makeSucceededFuture(keys)
        case .throttled(let error): return eventLoop.makeFailedFuture(AuthorizationServerError(.refreshThrottled, error))
        case .fetch(let promise):
            self.logger.info("fetching signing keys", metadata: ["reason": "\(reason)"])
            self.fetch(on: eventLoop).whenComplete { result in
                let wasReachable = self.state.withLockedValue { state -> Bool? in
                    state.inflight = nil
                    let was = state.reachable
                    switch result {
                    case .success(let keys):
                        state.keys = keys
                        state.fetchedAt = .now()
                        state.lastError = nil
                        state.reachable = true
                    case .failure(let error):
                        state.lastError = "\(error)"
                        state.reachable = false
                    }
                    return was
                }
                switch result {
                case .success where wasReachable != true:
                    self.events.authorizationServer(self.server.issuer, reachable: true, reason: nil)
                case .failure(let error) where wasReachable != false:
                    self.events.authorizationServer(self.server.issuer, reachable: false, reason: "\(error)")
                default:
                    break
                }
                switch result {
                case .success(let keys):
                    self.logger.info("signing keys loaded", metadata: [
                        "keys": "\(keys.keys.count)", "kids": "\(keys.keys.compactMap(\.keyID).joined(separator: ","))",
                        "skipped": "\(keys.skipped.joined(separator: "; "))",
                    ])
                case .failure(let error):
                    self.logger.error("cannot load signing keys", metadata: ["error": "\(error)"])
                }
                promise.completeWith(result)
            }
            return promise.futureResult
        }
    }

    private func fetch(on eventLoop: any EventLoop) -> EventLoopFuture<JSONWebKeySet> {
        let jwksURI: EventLoopFuture<String>
        if let configured = self.server.jwksURI {
            jwksURI = eventLoop.makeSucceededFuture(configured)
        } else {
            jwksURI = self.metadata(on: eventLoop).flatMapThrowing { metadata in
                guard let uri = metadata.jwksURI else { throw AuthorizationServerError(.noKeySetURI, "the metadata of \(self.server.issuer) has no jwks_uri") }
                return uri
            }
        }
        return jwksURI.flatMap { uri in
            self.fetcher.get(uri, purpose: "jwks", tls: self.tls, serverName: self.server.tls.serverName, on: eventLoop).flatMapThrowing { body in
                do {
                    let keys = try JSONWebKeySet(json: body)
                    if keys.isDevelopmentOnly, !self.allowDevelopmentServer {
                        throw AuthorizationServerError(.developmentServer, "\(uri) belongs to mcp-bouncer's development authorization server, which only `mcp-bouncer demo` trusts")
                    }
                    guard !keys.keys.isEmpty else { throw AuthorizationServerError(.noUsableKey, "\(uri) holds no usable signing key (\(keys.skipped.joined(separator: "; ")))") }
                    return keys
                } catch let error as AuthorizationServerError where error.code == .keySetInvalid {
                    throw AuthorizationServerError(.keySetInvalid, "\(uri): \(error.reason)")
                }
            }
        }
    }

    /// The authorization server's metadata (token, introspection and key set endpoints),
    /// discovered once and then served from memory.
    package func metadata(on eventLoop: any EventLoop) -> EventLoopFuture<AuthorizationServerMetadata> {
        if let cached = self.state.withLockedValue({ $0.metadata }) {
            return eventLoop.makeSucceededFuture(cached)
        }
        return self.discover(self.server.metadataCandidates[...], on: eventLoop, failures: []).map { metadata in
            self.state.withLockedValue { $0.metadata = metadata }
            return metadata
        }
    }

    /// Tries each discovery URL in turn; the first document whose `issuer` matches wins.
    private func discover(_ candidates: ArraySlice<String>, on eventLoop: any EventLoop, failures: [String]) -> EventLoopFuture<AuthorizationServerMetadata> {
        guard let url = candidates.first else {
            return eventLoop.makeFailedFuture(AuthorizationServerError(.metadataNotFound, "no metadata document for issuer \(self.server.issuer): \(failures.joined(separator: "; "))"))
        }
        return self.fetcher.get(url, purpose: "metadata", tls: self.tls, serverName: self.server.tls.serverName, on: eventLoop).flatMapThrowing { body -> AuthorizationServerMetadata in
            let metadata: AuthorizationServerMetadata
            do {
                metadata = try AuthorizationServerMetadata(json: body, expectedIssuer: self.server.issuer)
            } catch let error as AuthorizationServerError {
                throw AuthorizationServerError(error.code, "\(url): \(error.reason)")
            }
            if metadata.isDevelopmentOnly, !self.allowDevelopmentServer {
                // Stops the search: this issuer is the development server, wherever it is looked up.
                throw AuthorizationServerError(.developmentServer, "\(url): \(self.server.issuer) is mcp-bouncer's development authorization server, which only `mcp-bouncer demo` trusts")
            }
            return metadata
        }.flatMapError { error in
            // An issuer mismatch is a hard failure: trying other locations could only find a
            // document for some other issuer.
            if let error = error as? AuthorizationServerError, error.endsDiscovery {
                return eventLoop.makeFailedFuture(error)
            }
            return self.discover(candidates.dropFirst(), on: eventLoop, failures: failures + ["\(error)"])
        }
    }
}
