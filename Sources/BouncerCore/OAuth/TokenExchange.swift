/// RFC 8693 token types the gateway uses.
public enum TokenType {
    public static let accessToken = "urn:ietf:params:oauth:token-type:access_token"
    public static let jwt = "urn:ietf:params:oauth:token-type:jwt"
    public static let grantType = "urn:ietf:params:oauth:grant-type:token-exchange"
}

/// What to ask for when exchanging an inbound token for an upstream one.
public struct TokenExchangeTarget: Sendable, Hashable {
    /// RFC 8707 resource indicators (absolute URIs).
    public var resources: [String]
    /// Logical audience names.
    public var audiences: [String]
    /// Space-separated scope; `nil` asks for what the server grants by default.
    public var scope: String?
    public var requestedTokenType: String?

    public init(resources: [String] = [], audiences: [String] = [], scope: String? = nil, requestedTokenType: String? = nil) {
        self.resources = resources
        self.audiences = audiences
        self.scope = scope
        self.requestedTokenType = requestedTokenType
    }

    /// A stable string for cache keys.
    public var cacheKey: String {
        "r=\(self.resources.joined(separator: ","))|a=\(self.audiences.joined(separator: ","))|s=\(self.scope ?? "")|t=\(self.requestedTokenType ?? "")"
    }
}

/// `upstream_credentials.token_exchange` of a resource.
public struct TokenExchangePolicy: Sendable, Hashable {
    public var target: TokenExchangeTarget
    /// Per-tool overrides of the target (`tools/call` by `params.name`).
    public var toolTargets: [String: TokenExchangeTarget]
    /// Send the gateway's own client-credentials token as `actor_token`.
    public var sendActorToken: Bool
    /// `dpop_key`: the upstream leg is DPoP-bound (RFC 9449) to this key.
    public var dpopKey: UpstreamDPoPKey?

    public init(target: TokenExchangeTarget, toolTargets: [String: TokenExchangeTarget] = [:], sendActorToken: Bool = false, dpopKey: UpstreamDPoPKey? = nil) {
        self.target = target
        self.toolTargets = toolTargets
        self.sendActorToken = sendActorToken
        self.dpopKey = dpopKey
    }

    /// The target for a request: the tool's override for `tools/call`, else the default.
    public func target(forTool tool: String?) -> TokenExchangeTarget {
        tool.flatMap { self.toolTargets[$0] } ?? self.target
    }
}

/// `token_exchange.dpop_key`: the gateway's key for a DPoP-bound upstream leg.
public enum UpstreamDPoPKey: Sendable, Hashable {
    /// A PEM private key (P-256 or RSA of at least 2048 bits).
    case pem(AssertionSigningKey)
    /// A P-256 key made when the gateway loads the policy, held in memory only (a restart or a
    /// reload makes a new one, and tokens are exchanged again for it).
    case generate
}

/// Building the RFC 8693 request and reading its answer.
public enum TokenExchange {
    public static func formFields(subjectToken: String, target: TokenExchangeTarget, actorToken: String?) -> [(String, String)] {
        var fields: [(String, String)] = [
            ("grant_type", TokenType.grantType),
            ("subject_token", subjectToken),
            ("subject_token_type", TokenType.accessToken),
        ]
        for resource in target.resources { fields.append(("resource", resource)) }
        for audience in target.audiences { fields.append(("audience", audience)) }
        if let scope = target.scope { fields.append(("scope", scope)) }
        if let type = target.requestedTokenType { fields.append(("requested_token_type", type)) }
        if let actorToken {
            // RFC 8693 2.1: both or neither.
            fields.append(("actor_token", actorToken))
            fields.append(("actor_token_type", TokenType.accessToken))
        }
        return fields
    }
}

/// A token endpoint's successful answer (RFC 8693 section 2.2.1, RFC 6749 section 5.1).
public struct IssuedToken: Sendable, Hashable {
    public var accessToken: String
    public var issuedTokenType: String?
    public var tokenType: String
    public var expiresIn: Int64?
    public var scope: String?
}

/// A token endpoint's refusal (RFC 6749 section 5.2 codes plus RFC 8693's `invalid_target`).
public struct TokenEndpointError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_target`, or `invalid_response`
    /// when the answer itself is malformed.
    public var code: String
    public var description_: String?
    public var status: Int

    public init(code: String, description_: String?, status: Int) {
        self.code = code
        self.description_ = description_
        self.status = status
    }

    public var description: String { "\(self.code) (HTTP \(self.status))" + (self.description_.map { ": \($0)" } ?? "") }

    static let knownCodes: Set<String> = [
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
        "invalid_scope", "invalid_target", "access_denied", "temporarily_unavailable", "server_error",
        "invalid_dpop_proof", "use_dpop_nonce",
    ]
}

extension IssuedToken {
    /// Parses a token endpoint response. Optional fields may be absent or `null`; required
    /// ones must be strings; `token_type` must be Bearer (case-insensitive) because that is
    /// what the gateway will send upstream, or DPoP when the request carried the gateway's
    /// proof (`dpopBound`): a Bearer answer then means the server did not bind the token, and
    /// the gateway does not present an unbound token as bound (RFC 9449 §5).
    public static func parse(status: Int, body: [UInt8], dpopBound: Bool = false) -> Result<IssuedToken, TokenEndpointError> {
        let document = try? JSONParser(maxDepth: 16).parse(body)
        guard status == 200 else {
            let code = document?["error"]?.stringValue.map { TokenEndpointError.knownCodes.contains($0) ? $0 : "unknown_error" } ?? "http_\(status)"
            return .failure(TokenEndpointError(code: code, description_: document?["error_description"]?.stringValue, status: status))
        }
        func invalid(_ reason: String) -> Result<IssuedToken, TokenEndpointError> {
            .failure(TokenEndpointError(code: "invalid_response", description_: reason, status: status))
        }
        guard let document, document.objectValue != nil else { return invalid("the response is not a JSON object") }
        guard let accessToken = document["access_token"]?.stringValue, !accessToken.isEmpty else { return invalid("no access_token") }
        // It goes upstream as "Authorization: Bearer <token>": nothing that could end or split
        // the header (the upstream request's headers are not re-validated).
        guard BearerTokenExtractor.isB64Token(accessToken) else { return invalid("access_token has characters outside the RFC 6750 b64token syntax") }
        guard let tokenType = document["token_type"]?.stringValue else { return invalid("no token_type") }
        if dpopBound {
            guard tokenType.equalsIgnoringASCIICase("dpop") else {
                return invalid("token_type \(tokenType) is not DPoP: the server did not bind the token to the gateway's DPoP key")
            }
        } else {
            guard tokenType.equalsIgnoringASCIICase("bearer") else { return invalid("token_type \(tokenType) is not Bearer") }
        }
        var expiresIn: Int64?
        switch document["expires_in"] {
        case .none, .some(.null): expiresIn = nil
        case .some(let value):
            guard let seconds = value.int64Value, seconds >= 0 else { return invalid("expires_in is not a non-negative number") }
            expiresIn = seconds
        }
        func optionalString(_ key: String) -> String?? {
            switch document[key] {
            case .none, .some(.null): return .some(nil)
            case .some(.string(let value)): return .some(value)
            default: return nil
            }
        }
        guard let issuedType = optionalString("issued_token_type"), let scope = optionalString("scope") else {
            return invalid("issued_token_type or scope is not a string")
        }
        return .success(IssuedToken(accessToken: accessToken, issuedTokenType: issuedType, tokenType: tokenType, expiresIn: expiresIn, scope: scope))
    }
}

/// How long an exchanged token may be reused.
public enum ExchangedTokenLifetime {
    /// Until `expires_in` minus a margin, never past the subject token's own `exp`. Without
    /// `expires_in` the token is used for this request only (0).
    public static func cacheUntil(now: Int64, expiresIn: Int64?, subjectExpiresAt: Int64, marginSeconds: Int64) -> Int64 {
        guard let expiresIn else { return now }
        return min(now + expiresIn - marginSeconds, subjectExpiresAt)
    }
}
