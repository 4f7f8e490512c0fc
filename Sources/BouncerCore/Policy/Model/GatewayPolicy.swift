/// The validated, immutable policy: what the gateway listens on, which authorization
/// servers it trusts and which MCP servers it protects, with which scopes.
///
/// Built only by ``PolicyLoader``, which checks every value; nothing downstream re-validates.
public struct GatewayPolicy: Sendable {
    public var listen: ListenAddress
    /// What clients see; the base of every resource URI.
    public var publicURL: CanonicalURI
    /// Certificate and key for client-side TLS. `nil` means plain HTTP (loopback, or
    /// behind a TLS-terminating load balancer).
    public var tls: ServerTLSSettings?
    public var limits: GatewayLimits
    public var authorizationServers: [String: AuthorizationServerPolicy]
    public var resources: [ResourcePolicy]
    /// The audit trail; `nil` when the policy has no `audit:` section.
    public var audit: AuditSettings?
    /// The metrics and health listener; `nil` (off) by default.
    public var admin: AdminSettings?
    /// `sessions:`: how session ids are sealed (``SessionSealer``).
    public var sessions = SessionSettings()
    /// `trusted_proxies:`: the load balancers whose forwarding headers name the client.
    public var trustedProxies = TrustedProxies()
    /// `bridge:`: 2026-07-28 clients served from legacy upstreams (``BridgeSettings``).
    public var bridge = BridgeSettings()
    /// `client_certificate_header: Client-Cert`: read the client certificate a trusted proxy
    /// verified from RFC 9440 `Client-Cert` (``ClientCertField``).
    public var clientCertificateHeader = false
    /// `dpop:`: how DPoP proofs are checked (``DPoPSettings``).
    public var dpop = DPoPSettings()
    /// What loaded but deserves a second look (`check` prints them, `run` logs them).
    public var warnings: [PolicyProblem] = []
}
