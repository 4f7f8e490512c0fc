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
    /// `upstream_protocol`: the upstream's MCP era, or `auto` to ask it (`server/discover`).
    public let upstreamProtocol: UpstreamProtocol
    /// `sender_constraint`: whether plain bearer tokens are accepted (``SenderConstraint``).
    public let senderConstraint: SenderConstraint.Mode
    /// What a DPoP proof must satisfy here (the policy's `dpop:`).
    public let dpop: DPoPRequirements

    public init(
        path: String, uri: CanonicalURI, name: String?, documentation: String?, authorizationServer: String,
        scopesSupported: [String], upstream: UpstreamTarget, upstreamTLS: ClientTLSSettings, credentials: UpstreamCredentials,
        methods: MethodTable, clientResponses: [String]?, allowedOrigins: Set<String>, protocolVersions: Set<String>, listFiltering: Bool = true,
        toolPinning: ToolPinning? = nil, serverRequests: ServerRequestPolicy = .standard, inspectResponses: Bool = true,
        rateLimit: RateLimit? = nil, acceptedAudiences: [String] = [], upstreamProtocol: UpstreamProtocol = .auto,
        senderConstraint: SenderConstraint.Mode = .optional, dpop: DPoPRequirements = DPoPRequirements()
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
        self.acceptsBatches = protocolVersions.contains(MCPProtocol.batchVersion)
        self.listFiltering = listFiltering
        self.toolPinning = toolPinning
        self.serverRequests = serverRequests
        self.inspectResponses = inspectResponses
        self.rateLimit = rateLimit
        self.acceptedAudiences = acceptedAudiences
        self.upstreamProtocol = upstreamProtocol
        self.senderConstraint = senderConstraint
        self.dpop = dpop
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
