import Crypto

/// RFC 8705 section 3.1: the `x5t#S256` thumbprint of a client certificate, which a
/// certificate-bound access token carries in `cnf`. Computed once per TLS connection.
public enum CertificateThumbprint {
    /// base64url(SHA-256(DER)), no padding.
    public static func sha256(der: [UInt8]) -> String {
        Base64URL.encode(SHA256.hash(data: der))
    }
}

/// Digests of bearer tokens, for cache keys: the cache then holds no usable credential.
public enum TokenDigest {
    public static func sha256(_ token: String) -> String {
        Base64URL.encode(SHA256.hash(data: Array(token.utf8)))
    }
}
