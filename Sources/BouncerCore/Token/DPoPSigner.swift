
/// The gateway's own DPoP key, for the upstream leg (RFC 9449 §4): it proves possession on
/// the RFC 8693 token request (so the authorization server binds the exchanged token to it,
/// `cnf.jkt`) and on every request that presents that token upstream.
///
/// Pure: the caller supplies the time and the `jti`. The header (with the public `jwk`) is
/// serialised once; a proof costs one signature.
public struct DPoPSigner: Sendable {
    public let key: AssertionSigningKey
    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` of tokens bound to it.
    public let thumbprint: String
    /// base64url of the protected header: `typ`, `alg`, `jwk`.
    private let encodedHeader: String

    public init(key: AssertionSigningKey) {
        self.key = key
        let jwk = Self.publicJWK(key)
        // The members RFC 7638 hashes are exactly the ones written: the thumbprint is of them.
        self.thumbprint = JWKThumbprint.sha256(jwk) ?? ""
        var header = JSONWriter()
        header.add("typ", "dpop+jwt")
        header.add("alg", key.algorithm.rawValue)
        header.add("jwk", jwk)
        self.encodedHeader = Base64URL.encode(Array(header.string.utf8))
    }

    /// A proof for one request: `htm` `method`, `htu` `url` (no query, no fragment), `iat`
    /// `now`, and `ath` of `accessToken` when one is presented (not on a token request), the
    /// server's `nonce` when it gave one.
    public func proof(method: String, url: String, accessToken: String?, nonce: String?, now: Int64, jti: String) throws -> String {
        var claims = JSONWriter()
        claims.add("jti", jti)
        claims.add("htm", method)
        claims.add("htu", url)
        claims.add("iat", JSONValue.number(String(now)))
        if let accessToken { claims.add("ath", DPoPVerifier.tokenHash(accessToken)) }
        if let nonce { claims.add("nonce", nonce) }
        let input = self.encodedHeader + "." + Base64URL.encode(Array(claims.string.utf8))
        return input + "." + Base64URL.encode(try self.key.sign(Array(input.utf8)))
    }

    /// The public key's required members only (RFC 7638 §3.2): no `kid`, no private part.
    static func publicJWK(_ key: AssertionSigningKey) -> JSONValue {
        .object(Dictionary(uniqueKeysWithValues: key.publicKeyMembers.map { ($0.0, JSONValue.string($0.1)) }))
    }
}
