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
    /// What loaded but deserves a second look (`check` prints them, `run` logs them).
    public var warnings: [PolicyProblem] = []
}

/// `sessions:`. Without keys the gateway makes a random one at start (sessions then do not
/// survive a restart or move between replicas).
public struct SessionSettings: Sendable {
    /// The first seals, all open.
    public var keys: [SessionKey] = []
    public var maxAgeSeconds: Int64 = 86_400
    public var bindClient = false

    public init() {}

    static let integerSettings: [IntegerSetting<SessionSettings>] = [
        IntegerSetting(key: "max_age", range: 60...31_536_000, field: .int64(\.maxAgeSeconds)),
    ]

    /// The sealer for these settings; `fallback` when there are no keys.
    public func sealer(fallback: @autoclosure () -> SessionKey) -> SessionSealer {
        SessionSealer(keys: self.keys.isEmpty ? [fallback()] : self.keys, maxAgeSeconds: self.maxAgeSeconds, bindClient: self.bindClient)
    }
}

public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// A certificate chain and its key, as PEM file paths.
public struct CertificateFiles: Sendable, Hashable {
    public var certificate: String
    public var privateKey: String

    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// `tls.min_version`.
public enum MinimumTLSVersion: String, Sendable, Hashable, CaseIterable {
    case tls12 = "1.2"
    case tls13 = "1.3"
}

/// `tls.client_verify`: whether clients are asked for a certificate (RFC 8705 mutual TLS).
public enum ClientCertificateVerification: String, Sendable, Hashable, CaseIterable {
    /// No certificate is asked for.
    case none
    /// Asked for; a client without one is served, one with an unverifiable one is not.
    case optional
    /// A client without a verifiable certificate cannot connect.
    case required
}

/// TLS termination for clients (the `tls:` block). Files are named here and loaded by the
/// TLS layer, off the event loop, at start and on reload.
public struct ServerTLSSettings: Sendable, Hashable {
    public var certificate: CertificateFiles
    /// More certificates, chosen by SNI server name (lowercase; `*.example.com` allowed).
    public var sniCertificates: [String: CertificateFiles] = [:]
    /// Never lower than 1.2.
    public var minimumVersion = MinimumTLSVersion.tls12
    public var clientCA: String?
    public var clientVerification = ClientCertificateVerification.none
    public var handshakeTimeoutSeconds: Int64 = 10
    /// How often certificate and key files are checked for changes (0: only on SIGHUP).
    public var reloadIntervalSeconds: Int64 = 30

    public init(certificate: CertificateFiles) {
        self.certificate = certificate
    }

    /// The whole-number keys of `tls:`, in the order `policies/README.md` lists them.
    public static let integerSettings: [IntegerSetting<ServerTLSSettings>] = [
        IntegerSetting(key: "handshake_timeout_seconds", range: 1...300, field: .int64(\.handshakeTimeoutSeconds)),
        IntegerSetting(key: "reload_interval_seconds", range: 0...86_400, field: .int64(\.reloadIntervalSeconds)),
    ]

    /// Every file the settings name, for change detection.
    public var files: [String] {
        var files = [self.certificate.certificate, self.certificate.privateKey]
        for (_, pair) in self.sniCertificates.sorted(by: { $0.key < $1.key }) { files += [pair.certificate, pair.privateKey] }
        if let clientCA { files.append(clientCA) }
        return files
    }
}

/// How the gateway speaks TLS to an https upstream or authorization server.
public struct ClientTLSSettings: Sendable, Hashable {
    /// A PEM file of trusted CAs; `nil` means the system trust store.
    public var caFile: String?
    /// Verify the certificate against this name instead of the URL's host.
    public var serverName: String?
    /// A client certificate for mTLS.
    public var clientCertificate: CertificateFiles?
    /// Skip verification entirely. Refused by default; logged loudly when set.
    public var insecureSkipVerify = false

    public init(caFile: String? = nil, serverName: String? = nil, clientCertificate: CertificateFiles? = nil, insecureSkipVerify: Bool = false) {
        self.caFile = caFile
        self.serverName = serverName
        self.clientCertificate = clientCertificate
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// Limits and timeouts. Every value has a default that suits a gateway in front of
/// interactive MCP traffic; all are overridable under `limits:`.
public struct GatewayLimits: Sendable, Hashable {
    /// Total size of a request's header block. Past it: 431.
    public var maxHeaderBytes = 16 * 1024
    /// A POST body is read whole (it is inspected) up to this size. Past it: 413.
    public var maxBodyBytes = 1024 * 1024
    /// Nesting limit for the JSON-RPC parser.
    public var maxJSONDepth = 64
    /// A client connection with no request in flight is closed after this long.
    public var clientIdleTimeoutSeconds: Int64 = 120
    /// A request head must arrive whole within this long of its first byte. Past it: 408.
    public var headerReadTimeoutSeconds: Int64 = 10
    /// Time allowed to open a TCP connection to an upstream. Past it: 502.
    public var upstreamConnectTimeoutSeconds: Int64 = 5
    /// Time allowed between forwarding a request and the upstream's response head. Past it: 504.
    public var upstreamResponseTimeoutSeconds: Int64 = 60
    /// Verified tokens remembered (until their `exp`) so each is checked once.
    public var tokenCacheEntries = 10_000
    /// Idle keep-alive connections kept per upstream per event loop.
    public var upstreamMaxIdleConnections = 32
    /// On SIGTERM/SIGINT, in-flight exchanges get this long to finish before connections close.
    public var shutdownGraceSeconds: Int64 = 10
    /// Exchanged upstream tokens remembered (least recently used go first).
    public var exchangeCacheEntries = 10_000
    /// An exchanged token is reused until this long before it expires.
    public var exchangeExpiryMarginSeconds: Int64 = 30
    /// Time allowed for a token or introspection request to the authorization server.
    public var authorizationServerTimeoutSeconds: Int64 = 10
    /// The most bytes of one upstream message the gateway reads to inspect it: an SSE event
    /// (blank line included) or an `application/json` body whose messages it checks.
    public var maxEventBytes = 1024 * 1024
    /// Open client connections; beyond it a new connection is closed at once.
    public var maxConnections = 10_000

    public init() {}

    /// Every `limits:` key, in the order `policies/README.md` lists them. The loader reads the
    /// section with this table, and a test checks the README against it.
    public static let settings: [IntegerSetting<GatewayLimits>] = [
        IntegerSetting(key: "max_header_bytes", range: 1024...1_048_576, field: .int(\.maxHeaderBytes)),
        IntegerSetting(key: "max_body_bytes", range: 1024...(64 * 1_048_576), field: .int(\.maxBodyBytes)),
        IntegerSetting(key: "max_json_depth", range: 4...512, field: .int(\.maxJSONDepth)),
        IntegerSetting(key: "client_idle_timeout_seconds", range: 1...86_400, field: .int64(\.clientIdleTimeoutSeconds)),
        IntegerSetting(key: "header_read_timeout_seconds", range: 1...3600, field: .int64(\.headerReadTimeoutSeconds)),
        IntegerSetting(key: "upstream_connect_timeout_seconds", range: 1...300, field: .int64(\.upstreamConnectTimeoutSeconds)),
        IntegerSetting(key: "upstream_response_timeout_seconds", range: 1...86_400, field: .int64(\.upstreamResponseTimeoutSeconds)),
        IntegerSetting(key: "token_cache_entries", range: 0...10_000_000, field: .int(\.tokenCacheEntries)),
        IntegerSetting(key: "upstream_max_idle_connections", range: 0...10_000, field: .int(\.upstreamMaxIdleConnections)),
        IntegerSetting(key: "exchange_cache_entries", range: 0...10_000_000, field: .int(\.exchangeCacheEntries)),
        IntegerSetting(key: "exchange_expiry_margin_seconds", range: 0...3600, field: .int64(\.exchangeExpiryMarginSeconds)),
        IntegerSetting(key: "authorization_server_timeout_seconds", range: 1...300, field: .int64(\.authorizationServerTimeoutSeconds)),
        IntegerSetting(key: "shutdown_grace_seconds", range: 0...3600, field: .int64(\.shutdownGraceSeconds)),
        IntegerSetting(key: "max_event_bytes", range: 1024...(64 * 1_048_576), field: .int(\.maxEventBytes)),
        IntegerSetting(key: "max_connections", range: 1...1_000_000, field: .int(\.maxConnections)),
    ]
}

/// A trusted authorization server: where its keys come from and how its tokens are read.
public struct AuthorizationServerPolicy: Sendable, Equatable {
    public var name: String
    /// Compared byte for byte with the `iss` claim and the metadata document's `issuer`.
    public var issuer: String
    /// Overrides RFC 8414 / OpenID discovery of the metadata document.
    public var metadataURL: String?
    /// Overrides the `jwks_uri` from the metadata document (then no discovery is done).
    public var jwksURI: String?
    public var algorithms = Set(JWSAlgorithm.allCases)
    public var leewaySeconds: Int64 = 60
    /// Require the RFC 9068 `typ` header (`at+jwt` / `application/at+jwt`).
    public var requireAccessTokenType = false
    /// Claims that carry granted scopes, each a space-separated string or an array of strings.
    public var scopeClaims: [ScopeClaim] = [.scope, .scp]
    /// The claim that names the user (`sub`; Microsoft Entra's `oid` is stable across
    /// applications). What sessions, rate limits, the audit trail and token exchange know them by.
    public var subjectClaim = "sub"
    /// Claims every token from this server must carry with a given value (a tenant, an
    /// authorised party).
    public var requiredClaims: [RequiredClaim] = []
    /// How to speak TLS to it when its URLs are https.
    public var tls = ClientTLSSettings()
    /// The gateway's own client here, for token exchange and introspection.
    public var client: OAuthClientCredentials?
    /// Override the discovered endpoints.
    public var tokenEndpoint: String?
    public var introspectionEndpoint: String?
    public var tokenFormat: TokenFormat = .auto
    /// Introspection results are cached until the token's `exp`, at most this long.
    public var introspectionCacheSeconds: Int64 = 300
    /// `active: false` answers are remembered this long.
    public var introspectionNegativeCacheSeconds: Int64 = 10
    /// `scope_implies`: broader scopes that grant narrower ones.
    public var scopeImplications = ScopeImplications.none
    /// Unknown `kid`s trigger a key-set refresh at most this often.
    public var jwksRefreshMinIntervalSeconds: Int64 = 30
    /// Key sets are re-fetched after this long even when every `kid` is known.
    public var jwksMaxAgeSeconds: Int64 = 3600

    public init(name: String, issuer: String) {
        self.name = name
        self.issuer = issuer
    }

    /// The whole-number keys of `authorization_servers.<name>`, in the order
    /// `policies/README.md` lists them.
    public static let integerSettings: [IntegerSetting<AuthorizationServerPolicy>] = [
        IntegerSetting(key: "leeway_seconds", range: 0...300, field: .int64(\.leewaySeconds)),
        IntegerSetting(key: "jwks_refresh_min_interval_seconds", range: 1...3600, field: .int64(\.jwksRefreshMinIntervalSeconds)),
        IntegerSetting(key: "jwks_max_age_seconds", range: 60...604_800, field: .int64(\.jwksMaxAgeSeconds)),
        IntegerSetting(key: "introspection_cache_seconds", range: 0...86_400, field: .int64(\.introspectionCacheSeconds)),
        IntegerSetting(key: "introspection_negative_cache_seconds", range: 0...3600, field: .int64(\.introspectionNegativeCacheSeconds)),
    ]

    /// The discovery URLs to try in order, or just the override.
    public var metadataCandidates: [String] {
        if let metadataURL { return [metadataURL] }
        return AuthorizationServerMetadata.discoveryURLs(forIssuer: self.issuer)
    }
}

/// A claim that carries granted scopes: any top-level claim name (`scope`, `scp`, `roles`, an
/// Auth0 namespaced claim such as `https://example.com/roles`). Its value may be a
/// space-separated string or an array of strings.
public struct ScopeClaim: RawRepresentable, Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public init(stringLiteral value: String) {
        self.rawValue = value
    }

    /// A space-separated string (RFC 8693, RFC 9068).
    public static let scope: ScopeClaim = "scope"
    /// An array of strings, or a string (Microsoft Entra, Okta).
    public static let scp: ScopeClaim = "scp"

    public var description: String { self.rawValue }
}

/// `required_claims`: a claim the token must carry with one of `values`. A string claim must
/// equal one; a boolean or a number is compared by its JSON text (`true`, `42`); an array claim
/// must contain one.
public struct RequiredClaim: Sendable, Hashable {
    public var name: String
    public var values: [String]

    public init(name: String, values: [String]) {
        self.name = name
        self.values = values
    }

    /// Whether `value` (the token's claim) satisfies this requirement.
    public func isSatisfied(by value: JSONValue) -> Bool {
        switch value {
        case .array(let elements): return elements.contains { self.matches($0) }
        default: return self.matches(value)
        }
    }

    private func matches(_ value: JSONValue) -> Bool {
        switch value {
        case .string(let text): return self.values.contains(text)
        case .bool(let flag): return self.values.contains(flag ? "true" : "false")
        case .number(let text): return self.values.contains(text)
        default: return false
        }
    }
}

/// How access tokens from an authorization server are checked.
public enum TokenFormat: String, Sendable, Hashable, CaseIterable {
    /// Verify as a JWT against the key set.
    case jwt
    /// Ask the introspection endpoint (RFC 7662), whatever the token looks like.
    case opaque
    /// JWT when the token looks like a compact JWS, introspection otherwise.
    case auto

    /// Whether `token` is verified as a JWT (else it is introspected).
    public func verifiesAsJWT(_ token: String) -> Bool {
        switch self {
        case .jwt: return true
        case .opaque: return false
        case .auto: return CompactJWS.looksLikeJWS(token)
        }
    }
}

/// One protected MCP server. A class: routed on every request and referenced from each exchange, so it is shared, not
/// copied field by field (it holds a dozen reference-counted values).
public final class ResourcePolicy: Sendable {
    /// Public path, e.g. `/jira/mcp`.
    public let path: String
    /// The canonical resource URI: `public_url` + `path`. Tokens must name it in `aud`.
    public let uri: CanonicalURI
    public let name: String?
    public let documentation: String?
    public let authorizationServer: String
    public let scopesSupported: [String]
    public let upstream: UpstreamTarget
    /// For https upstreams.
    public let upstreamTLS: ClientTLSSettings
    public let credentials: UpstreamCredentials
    public let methods: MethodTable
    /// Scopes needed to send a JSON-RPC response (an answer to a server-to-client
    /// request such as `elicitation/create`). `nil`: responses are refused.
    public let clientResponses: [String]?
    /// Origins allowed in an `Origin` header. Requests without `Origin` (non-browser
    /// clients) are not affected.
    public let allowedOrigins: Set<String>
    public let protocolVersions: Set<String>

    /// Batches are a 2025-03-26 feature; removed in 2025-06-18.
    public let acceptsBatches: Bool
    /// List results keep only what the caller's token could use (`list_filtering`, default on).
    public let listFiltering: Bool
    /// `tool_pins` and `on_tool_change`.
    public let toolPinning: ToolPinning?
    /// `elicitation:` and `server_requests:`: what the upstream may ask of the client.
    public let serverRequests: ServerRequestPolicy
    /// `inspect_responses` (default on): what the upstream sends back is read (lists, pins,
    /// the elicitation and sampling guard). Off, it is relayed unread.
    public let inspectResponses: Bool
    /// `rate_limit:`: a token bucket per user of this resource; `nil`: no limit.
    public let rateLimit: RateLimit?
    /// `accepted_audiences:`: `aud` values accepted besides ``uri``, for authorization servers
    /// that do not implement RFC 8707 (an Entra application ID URI, an Auth0 API identifier).
    /// Compared byte for byte. No two resources share one (the loader refuses it).
    public let acceptedAudiences: [String]

    public init(
        path: String, uri: CanonicalURI, name: String?, documentation: String?, authorizationServer: String,
        scopesSupported: [String], upstream: UpstreamTarget, upstreamTLS: ClientTLSSettings, credentials: UpstreamCredentials,
        methods: MethodTable, clientResponses: [String]?, allowedOrigins: Set<String>, protocolVersions: Set<String>, listFiltering: Bool = true,
        toolPinning: ToolPinning? = nil, serverRequests: ServerRequestPolicy = .standard, inspectResponses: Bool = true,
        rateLimit: RateLimit? = nil, acceptedAudiences: [String] = []
    ) {
        self.path = path
        self.uri = uri
        self.name = name
        self.documentation = documentation
        self.authorizationServer = authorizationServer
        self.scopesSupported = scopesSupported
        self.upstream = upstream
        self.upstreamTLS = upstreamTLS
        self.credentials = credentials
        self.methods = methods
        self.clientResponses = clientResponses
        self.allowedOrigins = allowedOrigins
        self.protocolVersions = protocolVersions
        self.acceptsBatches = protocolVersions.contains("2025-03-26")
        self.listFiltering = listFiltering
        self.toolPinning = toolPinning
        self.serverRequests = serverRequests
        self.inspectResponses = inspectResponses
        self.rateLimit = rateLimit
        self.acceptedAudiences = acceptedAudiences
    }

    public var metadataURL: String { self.uri.protectedResourceMetadataURL }
}

/// Where an upstream MCP server listens.
public struct UpstreamTarget: Sendable, Hashable, CustomStringConvertible {
    public let uri: CanonicalURI
    /// Path and query sent upstream (at least `/`).
    public let requestPath: String
    /// The host to connect to (IPv6 without brackets). Derived once: used on every request.
    public let host: String
    public let port: Int
    /// `Host` header value for the upstream.
    public let hostHeader: String
    /// `scheme://host:port`: what pooled connections are keyed by.
    public let connectionKey: String

    public init(uri: CanonicalURI, requestPath: String) {
        self.uri = uri
        self.requestPath = requestPath
        self.host = uri.host.hasPrefix("[") ? String(uri.host.dropFirst().dropLast()) : uri.host
        self.port = uri.effectivePort
        self.hostHeader = uri.port.map { "\(uri.host):\($0)" } ?? uri.host
        self.connectionKey = "\(uri.scheme)://\(self.host):\(self.port)"
    }

    public var description: String { self.uri.description }
}

/// The credential the gateway presents upstream. The client's token is never one of them.
public enum UpstreamCredentials: Sendable, Hashable {
    /// The upstream trusts the network.
    case none
    /// A fixed header, its value read from the environment or a file at load time.
    case staticHeader(name: String, value: String)
    /// A fresh token per subject from RFC 8693 token exchange at the resource's
    /// authorization server, sent as `Authorization: Bearer`.
    case tokenExchange(TokenExchangePolicy)
}

/// The protocol revisions the gateway understands.
public enum MCPProtocol {
    public static let knownVersions: Set<String> = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
    public static let defaultVersions: Set<String> = ["2025-06-18", "2025-11-25", "2026-07-28"]
    /// The stateless revision: POST only, mirrored `Mcp-Method`/`Mcp-Name` headers.
    public static let statelessVersion = "2026-07-28"
}

/// `audit:`: the signed, hash-chained audit trail (`docs/audit.md`).
public struct AuditSettings: Sendable {
    /// A file path, or `-` for standard output.
    public var file: String
    public var arguments = AuditArgumentsMode.hash
    /// Signs checkpoints when set.
    public var signingKey: AuditSigner?
    public var checkpointEvery = 1000
    public var fsync = AuditFsync.interval
    public var onOverflow = AuditOverflow.drop
    /// Records waiting for the writer thread before `on_overflow` applies.
    public var queueCapacity = 65_536

    public init(file: String) {
        self.file = file
    }

    public var isStandardOutput: Bool { self.file == "-" }

    public static let integerSettings: [IntegerSetting<AuditSettings>] = [
        IntegerSetting(key: "checkpoint_every", range: 1...100_000_000, field: .int(\.checkpointEvery)),
        IntegerSetting(key: "queue_capacity", range: 16...10_000_000, field: .int(\.queueCapacity)),
    ]
}

/// `audit.fsync`: when written records are forced to disk.
public enum AuditFsync: String, Sendable, CaseIterable {
    /// Left to the kernel.
    case never
    /// At most a second after they are written.
    case interval
    /// After every batch the writer thread writes.
    case always
}

/// `audit.on_overflow`: what happens to a record when the writer's queue is full.
public enum AuditOverflow: String, Sendable, CaseIterable {
    /// The record is dropped and counted; a `dropped` record with the count follows when there
    /// is room.
    case drop
    /// Requests that would go unrecorded are refused with 503 before anything is forwarded.
    case refuse
}

/// `admin:`: the listener for `/metrics`, `/healthz` and `/readyz`, never the public port.
public struct AdminSettings: Sendable {
    public var listen: ListenAddress

    public init(listen: ListenAddress) {
        self.listen = listen
    }
}
