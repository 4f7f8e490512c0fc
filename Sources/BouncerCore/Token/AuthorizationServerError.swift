/// Why an authorization server's metadata or signing keys could not be used. The `code` is
/// stable (logs, metrics, tests); the `reason` says which document, URL or key, for the log.
public struct AuthorizationServerError: CodedError {
    public enum Code: String, Sendable, Hashable {
        /// The metadata document is not JSON, not an object, or has no `issuer`.
        case metadataInvalid = "metadata_invalid"
        /// The metadata document is for another issuer (RFC 8414 section 3.3): never usable.
        case issuerMismatch = "issuer_mismatch"
        /// No discovery location gave a usable metadata document.
        case metadataNotFound = "metadata_not_found"
        /// The metadata names no `jwks_uri`.
        case noKeySetURI = "no_jwks_uri"
        /// The key set is not JSON or has no `keys` array.
        case keySetInvalid = "jwks_invalid"
        /// One key of a key set cannot be used (it is skipped, the others are kept).
        case keyInvalid = "key_invalid"
        /// The key set holds no key the gateway can verify with.
        case noUsableKey = "no_usable_key"
        /// The server is mcp-bouncer's development authorization server, trusted by `demo` only.
        case developmentServer = "development_server"
        /// A refresh was asked for sooner than `jwks_refresh_min_interval_seconds` after a failure.
        case refreshThrottled = "refresh_throttled"
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// Discovery stops here instead of trying the next location: another location could only
    /// give a document for some other issuer, or the same development server.
    public var endsDiscovery: Bool { self.code == .issuerMismatch || self.code == .developmentServer }
}
