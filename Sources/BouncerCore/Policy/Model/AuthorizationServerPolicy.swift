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
