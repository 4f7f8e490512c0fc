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
