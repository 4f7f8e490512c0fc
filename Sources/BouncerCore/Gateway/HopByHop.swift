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
        FoldedName(name).map(Self.foldedRequestHeaders.contains) ?? false
    }

    public static func isResponseHeader(_ name: String) -> Bool {
        FoldedName(name).map(Self.foldedResponseHeaders.contains) ?? false
    }

    // Every request and response header is looked up here, so the sets hold names folded into
    // integers: a lookup compares a few words, with no string comparisons or reference counting.
    private static let foldedRequestHeaders = Self.requestHeaders.map { FoldedName($0)! }
    private static let foldedResponseHeaders = Self.responseHeaders.map { FoldedName($0)! }

    /// Whether a `Connection` header value (a comma-separated list of field names, RFC 9110
    /// 7.6.1) names `field`, compared in place, without splitting into an array.
    public static func connectionValue(_ value: String, names field: String) -> Bool {
        var start = value.startIndex
        while start < value.endIndex {
            let end = value[start...].firstIndex(of: ",") ?? value.endIndex
            if value[start..<end].trimmingSpaces().equalsIgnoringASCIICase(field[...]) { return true }
            start = end < value.endIndex ? value.index(after: end) : end
        }
        return false
    }
}

/// A header name of at most 24 bytes, ASCII-lowercased and packed into three words with its
/// length. Longer names are not folded (no hop-by-hop name is longer than 19 bytes).
struct FoldedName: Equatable {
    private var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
    private let length: Int

    init?(_ name: String) {
        self.length = name.utf8.count
        guard self.length <= 24 else { return nil }
        for (offset, byte) in name.utf8.enumerated() {
            let folded = UInt64(asciiLowercase(byte)) << ((offset % 8) * 8)
            switch offset / 8 {
            case 0: self.words.0 |= folded
            case 1: self.words.1 |= folded
            default: self.words.2 |= folded
            }
        }
    }

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.length == rhs.length && lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
    }
}

// Concrete rather than generic over `StringProtocol`: these run several times per request from
// other modules, where an unspecialised generic pays for runtime metadata lookups on every call.
extension String {
    /// ASCII case-insensitive prefix test, for media types and similar tokens.
    public func hasPrefixIgnoringASCIICase(_ prefix: String) -> Bool {
        self.utf8.count >= prefix.utf8.count && equalIgnoringASCIICase(self.utf8.prefix(prefix.utf8.count), prefix.utf8[...])
    }

    /// ASCII case-insensitive equality, as HTTP field names compare (RFC 9110 5.1). Bytes
    /// outside ASCII compare exactly.
    public func equalsIgnoringASCIICase(_ other: String) -> Bool {
        equalIgnoringASCIICase(self.utf8, other.utf8)
    }
}

extension Substring {
    /// ASCII case-insensitive prefix test, for media types and similar tokens.
    public func hasPrefixIgnoringASCIICase(_ prefix: Substring) -> Bool {
        self.utf8.count >= prefix.utf8.count && equalIgnoringASCIICase(self.utf8.prefix(prefix.utf8.count), prefix.utf8)
    }

    /// ASCII case-insensitive equality, as HTTP field names compare (RFC 9110 5.1). Bytes
    /// outside ASCII compare exactly.
    public func equalsIgnoringASCIICase(_ other: Substring) -> Bool {
        equalIgnoringASCIICase(self.utf8, other.utf8)
    }
}

/// Specialised for each view type at its call sites in this file.
private func equalIgnoringASCIICase<View: Collection<UInt8>>(_ mine: View, _ theirs: View) -> Bool {
    guard mine.count == theirs.count else { return false }
    let contiguous = mine.withContiguousStorageIfAvailable { mine in
        theirs.withContiguousStorageIfAvailable { theirs in
            for index in mine.indices where mine[index] != theirs[index] {
                guard asciiLowercase(mine[index]) == asciiLowercase(theirs[index]) else { return false }
            }
            return true
        }
    }
    if let contiguous, let result = contiguous { return result }
    return mine.elementsEqual(theirs) { asciiLowercase($0) == asciiLowercase($1) }
}

@inline(__always)
private func asciiLowercase(_ byte: UInt8) -> UInt8 {
    (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
}
