import BouncerCore

/// Every kind of finding `mcp-bouncer probe` reports, with its severity, the requirement and
/// the fix. Stable ids: CI jobs and SARIF consumers key on them.
public enum ProbeRules {
    static let authorization = "MCP 2025-11-25, Authorization"
    static let fixGateway = "Put mcp-bouncer in front of it: `mcp-bouncer init --upstream URL` writes the policy."

    public static let unreachable = ProbeRule("probe.unreachable", .high, "No MCP endpoint answered", reference: "MCP 2025-11-25, Transports", fix: "Check the URL (the Streamable HTTP endpoint, e.g. https://host/mcp) and that the server runs.")
    public static let timeout = ProbeRule("probe.timeout", .high, "The probe did not finish in time", reference: "mcp-bouncer probe --timeout", fix: "Find out why the server answers slowly, or raise --timeout.")
    public static let notTested = ProbeRule("probe.not-tested", .info, "Checks not run for want of input", reference: "mcp-bouncer probe --help", fix: "")
    public static let transport = ProbeRule("mcp.transport", .info, "Transport and protocol revisions", reference: "MCP 2025-11-25, Transports; MCP 2026-07-28, server/discover", fix: "")
    public static let legacyTransport = ProbeRule("mcp.legacy-sse-transport", .medium, "Uses the HTTP+SSE transport of 2024-11-05", reference: "MCP 2025-03-26, Transports (Streamable HTTP replaces HTTP+SSE)", fix: "Upgrade the server's MCP SDK to Streamable HTTP; mcp-bouncer protects Streamable HTTP servers.")
    public static let noToolCalled = ProbeRule("mcp.no-read-only-tool", .info, "No tool was called", reference: "MCP 2025-11-25, Tools (annotations.readOnlyHint)", fix: "")

    public static let openInitialize = ProbeRule("auth.none.initialize", .critical, "initialize succeeds without a token", reference: "\(authorization): a protected server answers requests without a valid token with 401", fix: fixGateway)
    public static let openToolsList = ProbeRule("auth.none.tools-list", .critical, "tools/list succeeds without a token", reference: "\(authorization), Access Token Usage", fix: fixGateway)
    public static let openToolCall = ProbeRule("auth.none.tool-call", .critical, "A tool call succeeds without a token", reference: "\(authorization), Access Token Usage", fix: fixGateway)

    public static let noChallenge = ProbeRule("auth.challenge.missing", .high, "A request without a token is not answered 401 with WWW-Authenticate", reference: "RFC 9728 section 5.1; RFC 6750 section 3; \(authorization), Protected Resource Metadata Discovery", fix: "Answer 401 with `WWW-Authenticate: Bearer resource_metadata=\"...\"` (mcp-bouncer does).")
    public static let noResourceMetadata = ProbeRule("auth.challenge.no-resource-metadata", .high, "The 401 challenge does not name the resource metadata", reference: "RFC 9728 section 5.1; \(authorization), Protected Resource Metadata Discovery", fix: "Add `resource_metadata=\"https://host/.well-known/oauth-protected-resource/<path>\"` to the challenge.")
    public static let noChallengeScope = ProbeRule("auth.challenge.no-scope", .low, "The 401 challenge names no scope", reference: "\(authorization), Scope Selection Strategy (2025-11-25: SHOULD include scope)", fix: "Add `scope=\"...\"` with the scopes a client needs first.")

    public static let metadataMissing = ProbeRule("prm.missing", .high, "No Protected Resource Metadata", reference: "RFC 9728 section 3; \(authorization): MCP servers MUST implement RFC 9728", fix: "Publish /.well-known/oauth-protected-resource/<path> (mcp-bouncer does).")
    public static let metadataRootOnly = ProbeRule("prm.root-only", .low, "Protected Resource Metadata only at the root well-known URL", reference: "RFC 9728 section 3.1 (path insertion); \(authorization)", fix: "Serve it at /.well-known/oauth-protected-resource<path> too, so each MCP server on a host has its own.")
    public static let metadataResourceMismatch = ProbeRule("prm.resource-mismatch", .high, "The metadata's resource is not the URL probed", reference: "RFC 9728 section 3.3: resource MUST be identical to the resource the metadata is for", fix: "Make `resource` the exact URL clients use, the audience tokens must name.")
    public static let metadataNoServers = ProbeRule("prm.no-authorization-servers", .high, "The metadata names no authorization server", reference: "\(authorization): the metadata MUST include authorization_servers", fix: "List the issuer(s) in `authorization_servers`.")
    public static let senderConstraint = ProbeRule("prm.sender-constraint", .info, "Sender-constrained tokens advertised", reference: "RFC 9728 section 2 (dpop_signing_alg_values_supported, dpop_bound_access_tokens_required, tls_client_certificate_bound_access_tokens); RFC 9449; RFC 8705", fix: "")
    public static let metadataInvalid = ProbeRule("prm.invalid", .high, "The Protected Resource Metadata is not a JSON object", reference: "RFC 9728 section 3.2", fix: "Serve a JSON object with `resource` and `authorization_servers`.")

    public static let serverMetadataMissing = ProbeRule("as.metadata-missing", .high, "The authorization server publishes no metadata", reference: "RFC 8414 section 3; OpenID Connect Discovery 1.0; \(authorization), Authorization Server Metadata Discovery", fix: "Publish /.well-known/oauth-authorization-server (or openid-configuration) for the issuer.")
    public static let serverIssuerMismatch = ProbeRule("as.issuer-mismatch", .high, "The authorization server metadata names another issuer", reference: "RFC 8414 section 3.3: issuer MUST be identical to the issuer identifier", fix: "Make the metadata's `issuer` the issuer URL the resource metadata lists.")
    public static let noPKCE = ProbeRule("as.no-pkce-s256", .high, "The authorization server does not advertise PKCE S256", reference: "\(authorization), Authorization Code Protection: clients MUST refuse to proceed without code_challenge_methods_supported", fix: "Require PKCE with S256 and list it in `code_challenge_methods_supported` (Keycloak: per client; see docs/identity-providers.md).")
    public static let noRegistration = ProbeRule("as.no-client-registration", .low, "Neither Client ID Metadata Documents nor dynamic registration", reference: "\(authorization), Client Registration Approaches", fix: "Offer `client_id_metadata_document_supported` or a `registration_endpoint`, or pre-register every client.")
    public static let serverFacts = ProbeRule("as.metadata", .info, "Authorization server metadata", reference: "RFC 8414 section 2", fix: "")
    public static let resourceIgnored = ProbeRule("as.resource-ignored", .high, "The authorization server ignores the resource parameter", reference: "RFC 8707 section 2; \(authorization), Resource Parameter Implementation", fix: "Enable resource indicators at the identity provider, or accept its audience for this server only with mcp-bouncer's accepted_audiences (docs/identity-providers.md).")
    public static let resourceRefused = ProbeRule("as.resource-refused", .medium, "The authorization server refused a token for this resource", reference: "RFC 8707 section 2 (invalid_target)", fix: "Register the resource URL at the authorization server for this client.")
    public static let resourceHonoured = ProbeRule("as.resource-honoured", .info, "The authorization server honours the resource parameter", reference: "RFC 8707 section 2", fix: "")
    public static let tokenRequestFailed = ProbeRule("as.token-request-failed", .medium, "No token could be obtained with the client credentials given", reference: "RFC 6749 section 4.4", fix: "Check --client-id/--client-secret and that the client may use client_credentials.")

    public static let validTokenRefused = ProbeRule("token.valid-refused", .medium, "The token given with --token was refused", reference: "\(authorization), Token Handling", fix: "Check that the token is current, for this server (aud) and has the scopes initialize needs.")
    public static let foreignTokenAccepted = ProbeRule("token.foreign-accepted", .high, "A token issued for another resource is accepted", reference: "RFC 8707; \(authorization), Token Audience Binding and Validation: servers MUST validate that tokens were issued for them", fix: "Validate `aud` against this server's URL (mcp-bouncer does); until then any token of the issuer opens it (confused deputy).")
    public static let queryTokenAccepted = ProbeRule("token.query-accepted", .high, "A token in the query string is accepted", reference: "OAuth 2.1 section 5.1.1; \(authorization), Access Token Usage: tokens MUST NOT be in the URI query string", fix: "Accept tokens only in the Authorization header (mcp-bouncer does).")

    static let dpop = "RFC 9449"
    public static let dpopChecked = ProbeRule("dpop.checked", .info, "A DPoP-bound token is held to its proofs", reference: "\(dpop) sections 4.3, 7.2, 11.1", fix: "")
    public static let dpopValidRefused = ProbeRule("dpop.valid-refused", .medium, "The DPoP-bound token was refused with a fresh proof", reference: "\(dpop) section 7.1", fix: "Check that --dpop-key is the key the token's cnf.jkt names, that the token is current and for this server.")
    public static let dpopBearerAccepted = ProbeRule("dpop.bearer-accepted", .high, "A DPoP-bound token is accepted as a Bearer token", reference: "\(dpop) section 7.2: a DPoP-bound token MUST be sent, and accepted, only with the DPoP scheme and its proof", fix: "Check cnf.jkt and refuse a bound token without its proof (mcp-bouncer does, with any sender_constraint).")
    public static let dpopReplayAccepted = ProbeRule("dpop.replay-accepted", .medium, "A DPoP proof is accepted twice", reference: "\(dpop) section 11.1 (replay of a proof: jti, nonces)", fix: "Remember each proof's jti for the iat window, or require server nonces (mcp-bouncer: dpop.replay_cache_entries, dpop.nonce).")
    public static let dpopHTUNotChecked = ProbeRule("dpop.htu-not-checked", .high, "A DPoP proof made for another URL is accepted", reference: "\(dpop) section 4.3 (htu MUST match the request's URI)", fix: "Compare htu with the resource's public URL, not with the Host header (mcp-bouncer does).")
    public static let dpopStaleAccepted = ProbeRule("dpop.stale-accepted", .medium, "A DPoP proof issued ten minutes ago is accepted", reference: "\(dpop) sections 4.3 and 11.1 (iat within an acceptable window)", fix: "Accept proofs only within a short iat window (mcp-bouncer: dpop.iat_window_seconds, default 60).")

    public static let originNotValidated = ProbeRule("http.origin-not-validated", .medium, "A request from a foreign Origin is served", reference: "MCP 2025-11-25, Transports, Security Warning: servers MUST validate the Origin header (DNS rebinding)", fix: "Refuse requests whose Origin is not allowed with 403 (mcp-bouncer: allowed_origins).")
    public static let batchAccepted = ProbeRule("jsonrpc.batch-accepted", .low, "JSON-RPC batches are accepted", reference: "MCP 2025-06-18 changelog: batching removed", fix: "Refuse batches unless clients of 2025-03-26 need them (mcp-bouncer: only when protocol_versions lists 2025-03-26).")

    public static let plainHTTP = ProbeRule("tls.plain-http", .high, "Plain HTTP off loopback", reference: "\(authorization), Communication Security: endpoints MUST be served over HTTPS; OAuth 2.1 section 1.5", fix: "Serve it over https (mcp-bouncer terminates TLS).")
    public static let tlsFailed = ProbeRule("tls.handshake-failed", .high, "TLS with a valid certificate and TLS 1.2+ could not be established", reference: "OAuth 2.1 section 1.5; RFC 9325", fix: "Serve a certificate that verifies for the host name, with TLS 1.2 or 1.3.")
    public static let tlsFacts = ProbeRule("tls.version", .info, "TLS", reference: "RFC 9325", fix: "")

    /// Every rule, in the order docs/probe.md lists them.
    public static let all: [ProbeRule] = [
        unreachable,
        timeout,
        notTested,
        transport,
        legacyTransport,
        noToolCalled,
        openInitialize,
        openToolsList,
        openToolCall,
        noChallenge,
        noResourceMetadata,
        noChallengeScope,
        metadataMissing,
        metadataRootOnly,
        metadataResourceMismatch,
        metadataNoServers,
        senderConstraint,
        metadataInvalid,
        serverMetadataMissing,
        serverIssuerMismatch,
        noPKCE,
        noRegistration,
        serverFacts,
        resourceIgnored,
        resourceRefused,
        resourceHonoured,
        tokenRequestFailed,
        validTokenRefused,
        foreignTokenAccepted,
        queryTokenAccepted,
        dpopChecked,
        dpopValidRefused,
        dpopBearerAccepted,
        dpopReplayAccepted,
        dpopHTUNotChecked,
        dpopStaleAccepted,
        originNotValidated,
        batchAccepted,
        plainHTTP,
        tlsFailed,
        tlsFacts,
    ]
}
