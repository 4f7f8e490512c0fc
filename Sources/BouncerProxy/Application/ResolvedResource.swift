import BouncerCore
import BouncerTLS
import NIOConcurrencyHelpers
import NIOCore

/// One protected resource resolved at load into everything a request to it needs: its policy,
/// its authorization server's rules and key store, the client for token exchange or
/// introspection, the upstream's TLS context and the metadata document. Built once per policy
/// by ``Gateway``; the request path reads one reference (the route) and looks nothing up by
/// name. A policy reload will swap these whole.
package final class ResolvedResource: Sendable {
    package let policy: ResourcePolicy
    let server: AuthorizationServerPolicy
    /// What a token presented here must satisfy.
    let requirements: TokenRequirements
    let keys: KeySetStore
    /// The gateway's client at the authorization server, when it has one: introspection of
    /// opaque tokens, and token exchange.
    let client: OAuthEndpointClient?
    let credential: UpstreamCredential
    /// For an https upstream.
    let upstreamTLS: TLSContext?
    /// The RFC 9728 document, rendered once.
    let metadataDocument: String
    /// The resource's histograms (request and upstream time, response size).
    let metrics: GatewayMetrics.ResourceMetrics
    /// What the resource's tools look like now, as the lists relayed showed them (`tool_pins`).
    let tools = ToolDefinitionMemory()
    /// `rate_limit`: a token bucket per user, shared by the event loops.
    let rateLimiter: NIOLockedValueBox<RateLimiter>?
    /// The upstream's MCP era (`upstream_protocol`, or what `server/discover` said).
    package let era: UpstreamEraMemory
    /// The gateway's DPoP key and the servers' nonces, when the upstream leg is DPoP-bound
    /// (`token_exchange.dpop_key`).
    let upstreamDPoP: UpstreamDPoP?

    /// The credential the upstream gets, with what obtaining it needs.
    enum UpstreamCredential: Sendable {
        case none
        case staticHeader(name: String, value: String)
        case tokenExchange(TokenExchangePolicy, client: OAuthEndpointClient)
    }

    /// The loader guarantees what this relies on: every resource names a configured
    /// authorization server, and token exchange has a client there (`check` reports it).
    init(
        policy: ResourcePolicy, server: AuthorizationServerPolicy, keys: KeySetStore, client: OAuthEndpointClient?, upstreamTLS: TLSContext?,
        metrics: GatewayMetrics.ResourceMetrics, certificateBound: Bool = false, clock: WallClock = .system
    ) {
        self.metrics = metrics
        self.policy = policy
        self.server = server
        self.requirements = TokenRequirements(server: server, resource: policy)
        self.keys = keys
        self.client = client
        self.upstreamTLS = upstreamTLS
        self.metadataDocument = policy.metadataDocument(issuer: server.issuer, certificateBound: certificateBound)
        self.rateLimiter = policy.rateLimit.map { NIOLockedValueBox(RateLimiter(rate: $0)) }
        self.era = UpstreamEraMemory(policy.upstreamProtocol)
        if case .tokenExchange(let exchange) = policy.credentials, let key = exchange.dpopKey {
            self.upstreamDPoP = UpstreamDPoP(signer: UpstreamDPoP.signer(for: key), upstream: policy.upstream, clock: clock)
        } else {
            self.upstreamDPoP = nil
        }
        switch policy.credentials {
        case .none:
            self.credential = .none
        case .staticHeader(let name, let value):
            self.credential = .staticHeader(name: name, value: value)
        case .tokenExchange(let exchange):
            guard let client else {
                preconditionFailure("PolicyLoader admitted token_exchange at \(policy.path) without a client at \(server.name)")
            }
            self.credential = .tokenExchange(exchange, client: client)
        }
    }

    var upstream: UpstreamTarget { self.policy.upstream }

    /// Takes a token from `user`'s bucket (its issuer and subject); the rejection when it is empty.
    func rateLimit(user: String, now: NIODeadline) -> GatewayRejection? {
        guard let limiter = self.rateLimiter else { return nil }
        let decision = limiter.withLockedValue { $0.take(user, now: Int64(now.uptimeNanoseconds)) }
        guard case .limited(let seconds) = decision else { return nil }
        return .rateLimited(retryAfterSeconds: seconds, id: nil)
    }
}
