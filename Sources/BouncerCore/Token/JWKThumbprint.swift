import Crypto

/// RFC 7638 JWK thumbprints: SHA-256 over the key's required members only, in lexicographic
/// order, without whitespace (RSA: `e`, `kty`, `n`; EC: `crv`, `kty`, `x`, `y`; OKP: `crv`,
/// `kty`, `x`), base64url without padding. What a DPoP-bound token's `cnf.jkt` names
/// (RFC 9449 §6.1).
public enum JWKThumbprint {
    /// The thumbprint of `jwk`; nil when it is not a public key of a type the gateway knows,
    /// or a required member is missing or not a string.
    public static func sha256(_ jwk: JSONValue) -> String? {
        let required: [String]
        switch jwk["kty"]?.stringValue {
        case "RSA": required = ["e", "kty", "n"]
        case "EC": required = ["crv", "kty", "x", "y"]
        case "OKP": required = ["crv", "kty", "x"]
        default: return nil
        }
        var members: [String: JSONValue] = [:]
        for name in required {
            guard let value = jwk[name]?.stringValue, !value.isEmpty else { return nil }
            members[name] = .string(value)
        }
        return Base64URL.encode(Array(SHA256.hash(data: CanonicalJSON.bytes(.object(members)))))
    }
}
