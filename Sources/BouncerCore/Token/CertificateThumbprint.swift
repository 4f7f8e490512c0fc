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
    /// base64url(SHA-256(token)), no padding.
    public static func sha256(_ token: String) -> String {
        Base64URL.encode(Self.digest(token))
    }

    /// SHA-256 of a token as a value: a cache key part that allocates nothing.
    public struct Value: Hashable, Sendable {
        private let word0, word1, word2, word3: UInt64
    }

    public static func value(_ token: String) -> Value {
        Value(Self.digest(token))
    }

    private static func digest(_ token: String) -> SHA256.Digest {
        var token = token
        return token.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
    }
}

extension TokenDigest.Value {
    fileprivate init(_ digest: SHA256.Digest) {
        (self.word0, self.word1, self.word2, self.word3) = digest.withUnsafeBytes { bytes in
            (bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
             bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        }
    }
}
