import Crypto

/// What a DPoP proof must satisfy at this resource (`dpop:` in the policy).
public struct DPoPRequirements: Sendable, Equatable {
    /// Asymmetric algorithms only: there is no `none` or HMAC in ``JWSAlgorithm``.
    public var algorithms: Set<JWSAlgorithm> = [.es256, .es384, .rs256, .ps256, .edDSA]
    /// How far `iat` may be from now, either way (RFC 9449 §11.1).
    public var iatWindowSeconds: Int64 = 60
    /// The longest `jti` the replay cache keeps.
    public static let maxJTILength = 256

    public init(algorithms: Set<JWSAlgorithm> = [.es256, .es384, .rs256, .ps256, .edDSA], iatWindowSeconds: Int64 = 60) {
        self.algorithms = algorithms
        self.iatWindowSeconds = iatWindowSeconds
    }
}

/// A proof that passed every check of RFC 9449 §4.3 but the replay check (the cache's) and
/// the nonce (the caller's, when it asks for nonces).
public struct DPoPProof: Sendable, Hashable {
    /// The RFC 7638 thumbprint of the proof's key: what `cnf.jkt` must name.
    public var thumbprint: String
    public var jti: String
    public var issuedAt: Int64
    public var nonce: String?

    public init(thumbprint: String, jti: String, issuedAt: Int64, nonce: String?) {
        self.thumbprint = thumbprint
        self.jti = jti
        self.issuedAt = issuedAt
        self.nonce = nonce
    }
}

/// Why a DPoP proof (or a bound token's use) was refused: each a 401 with a `DPoP` challenge.
public enum DPoPRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    case missingProof
    case multipleProofs
    case malformed(String)
    case wrongType
    case algorithmNotAllowed(String)
    case badKey(String)
    case privateKey
    case badSignature
    case missingClaim(String)
    case wrongMethod
    case wrongURI
    case stale
    case wrongTokenHash
    case keyMismatch
    case replayed
    case replayCacheFull
    case nonceRequired
    case nonceInvalid

    /// The stable code of the refusal (audit `reason`: `dpop.<code>`, metrics).
    public var code: String {
        switch self {
        case .missingProof: "missing_proof"
        case .multipleProofs: "multiple_proofs"
        case .malformed: "malformed"
        case .wrongType: "wrong_typ"
        case .algorithmNotAllowed: "alg_not_allowed"
        case .badKey: "bad_jwk"
        case .privateKey: "private_key"
        case .badSignature: "bad_signature"
        case .missingClaim: "missing_claim"
        case .wrongMethod: "wrong_htm"
        case .wrongURI: "wrong_htu"
        case .stale: "stale_iat"
        case .wrongTokenHash: "wrong_ath"
        case .keyMismatch: "key_mismatch"
        case .replayed: "replayed"
        case .replayCacheFull: "replay_cache_full"
        case .nonceRequired: "nonce_required"
        case .nonceInvalid: "nonce_invalid"
        }
    }

    /// The `error` of the `DPoP` challenge (RFC 9449 §7.1, §9): a proof that is not right is
    /// `invalid_dpop_proof`, a token bound to another key `invalid_token`, a missing or stale
    /// nonce `use_dpop_nonce`.
    public var challengeError: String {
        switch self {
        case .keyMismatch: "invalid_token"
        case .nonceRequired, .nonceInvalid: "use_dpop_nonce"
        default: "invalid_dpop_proof"
        }
    }

    public var description: String {
        switch self {
        case .missingProof: "no DPoP proof"
        case .multipleProofs: "more than one DPoP header"
        case .malformed(let reason): "the DPoP proof is not a well-formed JWS: \(reason)"
        case .wrongType: "the DPoP proof's typ is not dpop+jwt"
        case .algorithmNotAllowed(let alg): "the DPoP proof's alg \(alg) is not accepted"
        case .badKey(let reason): "the DPoP proof's jwk is not a usable public key: \(reason)"
        case .privateKey: "the DPoP proof's jwk holds a private key"
        case .badSignature: "the DPoP proof's signature does not verify with its jwk"
        case .missingClaim(let claim): "the DPoP proof has no valid \(claim)"
        case .wrongMethod: "the DPoP proof's htm is not the request's method"
        case .wrongURI: "the DPoP proof's htu is not this resource's URL"
        case .stale: "the DPoP proof's iat is outside the accepted window"
        case .wrongTokenHash: "the DPoP proof's ath is not the hash of the access token"
        case .keyMismatch: "the access token is bound to another key than the DPoP proof's"
        case .replayed: "the DPoP proof was used before"
        case .replayCacheFull: "the DPoP replay cache is full; send a fresh proof"
        case .nonceRequired: "a DPoP nonce is required"
        case .nonceInvalid: "the DPoP nonce is not valid (or has expired)"
        }
    }
}

/// RFC 9449 §4.3, every step, as a pure function: the one `DPoP` header, a well-formed JWS,
/// `typ` `dpop+jwt`, an allowed asymmetric `alg`, a public `jwk` that verifies the signature,
/// `jti`/`htm`/`htu`/`iat` present, `htm` the request's method, `htu` the resource's public URL
/// (RFC 3986 normalised, without query and fragment; never built from `Host`), `iat` within
/// the window, `ath` the hash of the access token, and the key the one `cnf.jkt` names.
public enum DPoPVerifier {
    /// - Parameters:
    ///   - proof: the request's first `DPoP` header value; `proofCount`: how many it has.
    ///   - publicURL: the resource's URL as clients reach it (`public_url` + path).
    ///   - boundThumbprint: the token's `cnf.jkt`, when it has one.
    public static func verify(
        proof text: String?, proofCount: Int, method: String, publicURL: CanonicalURI, accessToken: String, boundThumbprint: String?,
        requirements: DPoPRequirements, now: Int64
    ) -> Result<DPoPProof, DPoPRefusal> {
        guard let text else { return .failure(.missingProof) }
        guard proofCount == 1 else { return .failure(.multipleProofs) }
        let jws: CompactJWS
        do {
            jws = try CompactJWS(text)
        } catch {
            return .failure(.malformed(error.reason))
        }
        guard jws.type == "dpop+jwt" else { return .failure(.wrongType) }
        guard let algorithm = JWSAlgorithm(rawValue: jws.algorithmName), requirements.algorithms.contains(algorithm) else {
            return .failure(.algorithmNotAllowed(jws.algorithmName))
        }
        guard case .object(let jwk)? = jws.header["jwk"] else { return .failure(.badKey("no jwk header")) }
        if Self.privateMembers.contains(where: { jwk[$0] != nil }) { return .failure(.privateKey) }
        let key: VerificationKey
        do {
            guard let parsed = try JSONWebKeySet.key(from: .object(jwk)) else { return .failure(.badKey("not an asymmetric public key")) }
            key = parsed
        } catch {
            return .failure(.badKey(error.reason))
        }
        guard key.accepts(algorithm) else { return .failure(.badKey("the key cannot make \(algorithm.rawValue) signatures")) }
        guard key.verify(signature: jws.signature, signingInput: jws.signingInput, algorithm: algorithm) else { return .failure(.badSignature) }
        guard let thumbprint = JWKThumbprint.sha256(.object(jwk)) else { return .failure(.badKey("no thumbprint")) }
        let claims = jws.payload
        guard let jti = claims["jti"]?.stringValue, !jti.isEmpty, jti.utf8.count <= DPoPRequirements.maxJTILength else { return .failure(.missingClaim("jti")) }
        guard let htm = claims["htm"]?.stringValue else { return .failure(.missingClaim("htm")) }
        guard let htu = claims["htu"]?.stringValue else { return .failure(.missingClaim("htu")) }
        guard let iat = claims["iat"]?.int64Value else { return .failure(.missingClaim("iat")) }
        guard htm == method else { return .failure(.wrongMethod) }
        guard Self.sameResource(htu, publicURL) else { return .failure(.wrongURI) }
        guard abs(now - iat) <= requirements.iatWindowSeconds else { return .failure(.stale) }
        guard let ath = claims["ath"]?.stringValue else { return .failure(.missingClaim("ath")) }
        guard ath == Self.tokenHash(accessToken) else { return .failure(.wrongTokenHash) }
        if let boundThumbprint, boundThumbprint != thumbprint { return .failure(.keyMismatch) }
        var nonce: String?
        if let value = claims["nonce"] {
            guard let text = value.stringValue else { return .failure(.missingClaim("nonce")) }
            nonce = text
        }
        return .success(DPoPProof(thumbprint: thumbprint, jti: jti, issuedAt: iat, nonce: nonce))
    }

    /// JWK members only a private (or symmetric) key has.
    static let privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]

    /// `ath`: base64url of the SHA-256 of the access token's ASCII bytes (RFC 9449 §4.2).
    public static func tokenHash(_ token: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Array(token.utf8))))
    }

    /// Whether a proof's `htu` names `publicURL`: both normalised as URIs (scheme and host
    /// case, default port, dot segments), the `htu`'s query and fragment ignored (§4.3 item 9).
    static func sameResource(_ htu: String, _ publicURL: CanonicalURI) -> Bool {
        let bare = htu.prefix { $0 != "?" && $0 != "#" }
        guard let uri = try? CanonicalURI(String(bare)) else { return false }
        return uri == publicURL
    }
}
