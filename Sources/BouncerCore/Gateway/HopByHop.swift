/// Header names a proxy must not pass on, matched case-insensitively without allocating
/// (header names are compared on every request, both directions).
public enum HopByHop {
    /// Never forwarded upstream: connection-scoped headers (RFC 9110 7.6.1), the client's
    /// credentials (no token passthrough), and headers the gateway sets itself.
    public static let requestHeaders: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate", "authorization", "host", "content-length",
        "x-forwarded-proto", "x-forwarded-host", "forwarded",
        // The gateway already answered 100-continue and holds the whole body.
        "expect",
    ]

    /// Never relayed to the client: connection-scoped response headers (RFC 9110 7.6.1).
    public static let responseHeaders: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate",
    ]

    public static func isRequestHeader(_ name: String) -> Bool {
        Self.contains(Self.requestHeaders, name)
    }

    public static func isResponseHeader(_ name: String) -> Bool {
        Self.contains(Self.responseHeaders, name)
    }

    private static func contains(_ names: [String], _ name: String) -> Bool {
        names.contains { name.equalsIgnoringASCIICase($0) }
    }

    /// Whether a `Connection` header value (a comma-separated list of field names, RFC 9110
    /// 7.6.1) names `field`, compared in place, without splitting into an array.
    public static func connectionValue(_ value: String, names field: String) -> Bool {
        var start = value.startIndex
        while start < value.endIndex {
            let end = value[start...].firstIndex(of: ",") ?? value.endIndex
            if value[start..<end].trimmingSpaces().equalsIgnoringASCIICase(field) { return true }
            start = end < value.endIndex ? value.index(after: end) : end
        }
        return false
    }
}

extension StringProtocol {
    /// ASCII case-insensitive prefix test, for media types and similar tokens.
    public func hasPrefixIgnoringASCIICase(_ prefix: some StringProtocol) -> Bool {
        guard self.utf8.count >= prefix.utf8.count else { return false }
        return self.utf8.prefix(prefix.utf8.count).elementsEqual(prefix.utf8) { mine, theirs in
            Self.asciiLowercase(mine) == Self.asciiLowercase(theirs)
        }
    }

    /// ASCII case-insensitive equality, as HTTP field names compare (RFC 9110 5.1). Bytes
    /// outside ASCII compare exactly.
    public func equalsIgnoringASCIICase(_ other: some StringProtocol) -> Bool {
        guard self.utf8.count == other.utf8.count else { return false }
        let fast = self.utf8.withContiguousStorageIfAvailable { mine in
            other.utf8.withContiguousStorageIfAvailable { theirs in
                Self.equalIgnoringASCIICase(mine, theirs)
            }
        }
        if let fast, let result = fast { return result }
        return Self.equalIgnoringASCIICase(self.utf8, other.utf8)
    }

    private static func equalIgnoringASCIICase(_ mine: some Sequence<UInt8>, _ theirs: some Sequence<UInt8>) -> Bool {
        for (a, b) in zip(mine, theirs) where a != b {
            guard Self.asciiLowercase(a) == Self.asciiLowercase(b) else { return false }
        }
        return true
    }

    @inline(__always)
    private static func asciiLowercase(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }
}
