import BouncerCore
import BouncerTLS

/// One protected resource resolved at load into everything a request to it needs: its policy,
/// its authorization server's rules and key store, the client for token exchange or
/// introspection, the upstream's TLS context and the metadata document. Built once per policy
/// by ``Gateway``; the request path reads one reference (the route) and looks nothing up by
/// name. A policy reload will swap these whole.
public final class ResolvedResource: Sendable {
    public let policy: ResourcePolicy
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
        metrics: GatewayMetrics.ResourceMetrics
    ) {
        self.metrics = metrics
        self.policy = policy
        self.server = server
        self.requirements = TokenRequirements(server: server, resource: policy)
        self.keys = keys
        self.client = client
        self.upstreamTLS = upstreamTLS
        self.metadataDocument = policy.metadataDocument(issuer: server.issuer)
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
}
