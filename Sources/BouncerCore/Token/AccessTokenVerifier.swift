/// Why a token was refused. The `code` is stable (logs, metrics, tests); the `reason`
/// goes to the log only, never to the client beyond a short description.
public struct TokenError: CodedError {
    public enum Code: String, Sendable, Hashable {
        case malformed
        case unsupportedAlgorithm = "unsupported_algorithm"
        /// No key with this `kid`: the caller may refresh the key set once and retry.
        case unknownKey = "unknown_key"
        case badSignature = "bad_signature"
        case wrongType = "wrong_type"
        case wrongIssuer = "wrong_issuer"
        case wrongAudience = "wrong_audience"
        case expired
        case notYetValid = "not_yet_valid"
        case missingClaim = "missing_claim"
        /// A `required_claims` entry has another value.
        case wrongClaim = "wrong_claim"
        /// Introspection answered `active: false` (revoked, expired or unknown).
        case inactive
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// What the client is told in `error_description`: the class of failure, nothing
    /// that helps an attacker tune a forgery.
    public var clientDescription: String {
        switch self.code {
        case .malformed, .unsupportedAlgorithm, .unknownKey, .badSignature, .wrongType: return "The access token could not be verified"
        case .wrongIssuer: return "The access token was not issued by a trusted authorization server"
        case .wrongAudience: return "The access token was not issued for this resource"
        case .expired: return "The access token expired"
        case .notYetValid: return "The access token is not valid yet"
        case .missingClaim, .wrongClaim: return "The access token lacks a required claim"
        case .inactive: return "The access token is not active"
        }
    }
}

/// A sender-constrained token's `cnf` claim (RFC 7800), in a JWT or an introspection answer:
/// the JWK thumbprint of a DPoP key (`jkt`, RFC 9449 §6) or the SHA-256 thumbprint of a client
/// certificate (`x5t#S256`, RFC 8705 §3). A token that names either is accepted only with its
/// proof.
public struct TokenConfirmation: Sendable, Hashable {
    public var jkt: String?
    public var x5tS256: String?

    public init(jkt: String? = nil, x5tS256: String? = nil) {
        self.jkt = jkt
        self.x5tS256 = x5tS256
    }

    /// Reads `cnf`; nil when absent. A `cnf` that is not an object, has a member of the wrong
    /// type, or binds the token to nothing the gateway can check (`jwk`, `kid`, `jku`) is
    /// refused: a binding the gateway cannot verify is not ignored.
    public static func read(_ value: JSONValue?) throws(TokenError) -> TokenConfirmation? {
        guard let value, value != .null else { return nil }
        guard case .object(let members) = value else { throw TokenError(.malformed, "cnf is not an object") }
        var confirmation = TokenConfirmation()
        for (name, member) in members {
            switch name {
            case "jkt":
                guard let text = member.stringValue, !text.isEmpty else { throw TokenError(.malformed, "cnf.jkt is not a thumbprint") }
                confirmation.jkt = text
            case "x5t#S256":
                guard let text = member.stringValue, !text.isEmpty else { throw TokenError(.malformed, "cnf.x5t#S256 is not a thumbprint") }
                confirmation.x5tS256 = text
            default:
                throw TokenError(.malformed, "cnf.\(name) binds the token to a key the gateway cannot check")
            }
        }
        guard confirmation.jkt != nil || confirmation.x5tS256 != nil else { throw TokenError(.malformed, "cnf names no key") }
        return confirmation
    }
}

/// What the gateway knows about a verified caller.
public struct AccessTokenClaims: Sendable, Hashable {
    public var issuer: String
    public var subject: String?
    public var clientID: String?
    public var audiences: [String]
    /// Seconds since the epoch.
    public var expiresAt: Int64
    public var notBefore: Int64?
    public var issuedAt: Int64?
    public var tokenID: String?
    public var scopes: Set<String>
    /// `cnf` (RFC 7800): the key the token is bound to, when it is sender-constrained.
    public var confirmation: TokenConfirmation?

    public init(issuer: String, subject: String?, clientID: String?, audiences: [String], expiresAt: Int64, notBefore: Int64?,
                issuedAt: Int64?, tokenID: String?, scopes: Set<String>, confirmation: TokenConfirmation? = nil) {
        self.issuer = issuer
        self.subject = subject
        self.clientID = clientID
        self.audiences = audiences
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.issuedAt = issuedAt
        self.tokenID = tokenID
        self.scopes = scopes
        self.confirmation = confirmation
    }

    /// Whom the token speaks for, for what is bound to a user (sessions, rate limits): `sub:`
    /// and its subject, or for a token without one (some client-credentials tokens) `client:`
    /// and its client id (the prefixes keep a subject from passing for a client); nil when it
    /// names neither (then only the token itself identifies its holder).
    public var user: String? {
        if let subject = self.subject { return "sub:\(subject)" }
        return self.clientID.map { "client:\($0)" }
    }
}

/// The parts of a compact JWS, split and decoded, signature not yet checked.
public struct CompactJWS: Sendable {
    public var algorithmName: String
    public var keyID: String?
    public var type: String?
    public var header: JSONValue
    public var payload: JSONValue
    public var signingInput: [UInt8]
    public var signature: [UInt8]

    /// Cheap test for "looks like a JWS", so opaque tokens can be told apart.
    public static func looksLikeJWS(_ token: String) -> Bool {
        var token = token
        return token.withUTF8 { bytes in
            var dots = 0
            for byte in bytes where byte == UInt8(ascii: ".") {
                dots += 1
            }
            return dots == 2
        }
    }

    public init(_ token: String) throws(TokenError) {
        let bytes = Array(token.utf8)
        guard bytes.count <= 16 * 1024 else { throw TokenError(.malformed, "token longer than 16 KiB") }
        let dots = bytes.indices.filter { bytes[$0] == UInt8(ascii: ".") }
        guard dots.count == 2 else {
            throw TokenError(.malformed, dots.count == 4 ? "an encrypted JWT (JWE) cannot be verified" : "not a compact JWS (expected three dot-separated parts)")
        }
        let headerPart = bytes[..<dots[0]]
        let payloadPart = bytes[(dots[0] + 1)..<dots[1]]
        let signaturePart = bytes[(dots[1] + 1)...]
        guard let headerBytes = Base64URL.decode(headerPart),
              let payloadBytes = Base64URL.decode(payloadPart),
              let signature = Base64URL.decode(signaturePart)
        else { throw TokenError(.malformed, "a part is not base64url") }
        let parser = JSONParser(maxDepth: 16)
        do {
            self.header = try parser.parse(headerBytes)
            self.payload = try parser.parse(payloadBytes)
        } catch {
            throw TokenError(.malformed, "header or payload is not JSON: \(error)")
        }
        guard self.header.objectValue != nil, self.payload.objectValue != nil else {
            throw TokenError(.malformed, "header and payload must be JSON objects")
        }
        guard let alg = self.header["alg"]?.stringValue else { throw TokenError(.malformed, "no alg in header") }
        if self.header["crit"] != nil { throw TokenError(.malformed, "critical header parameters are not supported") }
        self.algorithmName = alg
        self.keyID = self.header["kid"]?.stringValue
        self.type = self.header["typ"]?.stringValue
        self.signingInput = Array(bytes[..<dots[1]])
        self.signature = signature
    }
}

/// What a token must satisfy for one resource.
public struct TokenRequirements: Sendable {
    public var issuer: String
    public var audience: CanonicalURI
    /// `aud` values accepted besides ``audience``, compared byte for byte.
    public var acceptedAudiences: [String]
    public var algorithms: Set<JWSAlgorithm>
    public var leewaySeconds: Int64
    public var requireAccessTokenType: Bool
    public var scopeClaims: [ScopeClaim]
    public var subjectClaim: String
    public var requiredClaims: [RequiredClaim]

    public init(issuer: String, audience: CanonicalURI, acceptedAudiences: [String] = [], algorithms: Set<JWSAlgorithm>, leewaySeconds: Int64,
                requireAccessTokenType: Bool, scopeClaims: [ScopeClaim], subjectClaim: String = "sub", requiredClaims: [RequiredClaim] = []) {
        self.issuer = issuer
        self.audience = audience
        self.acceptedAudiences = acceptedAudiences
        self.algorithms = algorithms
        self.leewaySeconds = leewaySeconds
        self.requireAccessTokenType = requireAccessTokenType
        self.scopeClaims = scopeClaims
        self.subjectClaim = subjectClaim
        self.requiredClaims = requiredClaims
    }

    /// Whether one `aud` value names this resource.
    public func accepts(audience value: String) -> Bool {
        self.audience.isNamed(by: value) || self.acceptedAudiences.contains(value)
    }

    /// `aud` as a list (RFC 7519 allows a string or an array); `nil` when absent or malformed.
    public static func audiences(in claims: JSONValue) -> [String]? {
        switch claims["aud"] {
        case .string(let value): return [value]
        case .array(let values): return values.compactMap(\.stringValue)
        default: return nil
        }
    }

    /// Granted scopes from the configured claims, each a space-separated string or an array of
    /// strings.
    public func scopes(in claims: JSONValue) -> Set<String> {
        var scopes: Set<String> = []
        for claim in self.scopeClaims {
            switch claims[claim.rawValue] {
            case .string(let value): scopes.formUnion(value.split(separator: " ").map(String.init))
            case .array(let values): scopes.formUnion(values.compactMap(\.stringValue))
            default: break
            }
        }
        return scopes
    }

    public init(server: AuthorizationServerPolicy, resource: ResourcePolicy) {
        self.init(
            issuer: server.issuer, audience: resource.uri, acceptedAudiences: resource.acceptedAudiences, algorithms: server.algorithms,
            leewaySeconds: server.leewaySeconds, requireAccessTokenType: server.requireAccessTokenType, scopeClaims: server.scopeClaims,
            subjectClaim: server.subjectClaim, requiredClaims: server.requiredClaims
        )
    }
}

/// Verifies JWT access tokens (RFC 9068) against a key set. Pure: the key set and the
/// time are inputs, so every rule is tested without a network or a clock.
public enum AccessTokenVerifier {
    /// Checks signature, then claims.
    ///
    /// - Parameter now: seconds since the epoch.
    public static func verify(_ token: String, keys: JSONWebKeySet, requirements: TokenRequirements, now: Int64) throws(TokenError) -> AccessTokenClaims {
        let jws = try CompactJWS(token)
        try self.verifySignature(jws, keys: keys, requirements: requirements)
        return try self.validateClaims(jws, requirements: requirements, now: now)
    }

    public static func verifySignature(_ jws: CompactJWS, keys: JSONWebKeySet, requirements: TokenRequirements) throws(TokenError) {
        guard let algorithm = JWSAlgorithm(rawValue: jws.algorithmName), requirements.algorithms.contains(algorithm) else {
            throw TokenError(.unsupportedAlgorithm, "alg \(jws.algorithmName) is not on the allow-list")
        }
        let candidates = keys.candidates(keyID: jws.keyID, algorithm: algorithm)
        guard !candidates.isEmpty else {
            throw TokenError(.unknownKey, "no \(algorithm.rawValue) key with kid \(jws.keyID ?? "(none)")")
        }
        for key in candidates where key.verify(signature: jws.signature, signingInput: jws.signingInput, algorithm: algorithm) {
            return
        }
        throw TokenError(.badSignature, "signature does not verify with kid \(jws.keyID ?? "(none)")")
    }

    public static func validateClaims(_ jws: CompactJWS, requirements: TokenRequirements, now: Int64) throws(TokenError) -> AccessTokenClaims {
        if requirements.requireAccessTokenType {
            let type = jws.type?.lowercased()
            guard type == "at+jwt" || type == "application/at+jwt" else {
                throw TokenError(.wrongType, "typ is \(jws.type ?? "absent"), expected at+jwt")
            }
        }
        return try ClaimChecks.validate(jws.payload, source: .jwt, requirements: requirements, now: now)
    }
}
