/// The parts of an authorization server's RFC 8414 / OpenID metadata the gateway uses.
public struct AuthorizationServerMetadata: Sendable, Hashable {
    public var issuer: String
    public var jwksURI: String?
    public var tokenEndpoint: String?
    public var introspectionEndpoint: String?
    public var tokenEndpointAuthMethods: [String]
    /// The document says it comes from mcp-bouncer's development server (`demo` only).
    public var isDevelopmentOnly = false

    /// Where to look, in order (RFC 8414 section 3.1 path insertion, then OpenID
    /// discovery both inserted and appended, as the MCP authorization spec lists).
    public static func discoveryURLs(forIssuer issuer: String) -> [String] {
        guard let uri = try? CanonicalURI(issuer) else { return [] }
        if uri.path.isEmpty {
            return [
                uri.origin + "/.well-known/oauth-authorization-server",
                uri.origin + "/.well-known/openid-configuration",
            ]
        }
        return [
            uri.origin + "/.well-known/oauth-authorization-server" + uri.path,
            uri.origin + "/.well-known/openid-configuration" + uri.path,
            uri.origin + uri.path + "/.well-known/openid-configuration",
        ]
    }

    public init(issuer: String, jwksURI: String?, tokenEndpoint: String? = nil, introspectionEndpoint: String? = nil, tokenEndpointAuthMethods: [String] = []) {
        self.issuer = issuer
        self.jwksURI = jwksURI
        self.tokenEndpoint = tokenEndpoint
        self.introspectionEndpoint = introspectionEndpoint
        self.tokenEndpointAuthMethods = tokenEndpointAuthMethods
    }

    /// Parses a metadata document and checks that its `issuer` is exactly the configured
    /// one (RFC 8414 section 3.3), so a compromised discovery response cannot swap issuers.
    public init(json: some Collection<UInt8>, expectedIssuer: String) throws(AuthorizationServerError) {
        let document: JSONValue
        do {
            document = try JSONParser(maxDepth: 16).parse(json)
        } catch {
            throw AuthorizationServerError(.metadataInvalid, "metadata is not valid JSON: \(error)")
        }
        guard document.objectValue != nil else { throw AuthorizationServerError(.metadataInvalid, "metadata is not a JSON object") }
        guard let issuer = document["issuer"]?.stringValue else { throw AuthorizationServerError(.metadataInvalid, "metadata has no issuer") }
        guard issuer == expectedIssuer else {
            throw AuthorizationServerError(.issuerMismatch, "metadata issuer \(issuer) does not match the configured issuer \(expectedIssuer)")
        }
        self.issuer = issuer
        self.jwksURI = document["jwks_uri"]?.stringValue
        self.tokenEndpoint = document["token_endpoint"]?.stringValue
        self.introspectionEndpoint = document["introspection_endpoint"]?.stringValue
        self.tokenEndpointAuthMethods = document["token_endpoint_auth_methods_supported"]?.arrayValue?.compactMap(\.stringValue) ?? []
        self.isDevelopmentOnly = document[DevelopmentMarker.key] == .bool(true)
    }
}

/// The flag mcp-bouncer's development authorization server puts in its metadata and key set,
/// so that `mcp-bouncer run` can refuse to trust it.
public enum DevelopmentMarker {
    public static let key = "mcp_bouncer_development_only"
}
