/// Header names a proxy must not pass on, matched case-insensitively without allocating
/// (header names are compared on every request, both directions).
public enum HopByHop {
    /// Never forwarded upstream: connection-scoped headers (RFC 9110 7.6.1), the client's
    /// credentials and its proof of possession (no token passthrough), and headers the gateway
    /// sets itself.
    public static let requestHeaders: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate", "authorization", "dpop", "host", "content-length",
        // RFC 9440: the certificate a trusted proxy verified is the gateway's to read.
        "client-cert", "client-cert-chain",
        "x-forwarded-proto", "x-forwarded-host", "forwarded",
        // The gateway already answered 100-continue and holds the whole body.
        "expect",
    ]

    /// Never relayed to the client: connection-scoped response headers (RFC 9110 7.6.1), and an
    /// upstream's `DPoP-Nonce` (for its own client, the gateway; the client gets the gateway's).
    public static let responseHeaders: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate", "dpop-nonce",
    ]

    /// Whether `name` is not forwarded upstream: in the fixed set, or named in the request's
    /// `Connection` headers (RFC 9110 7.6.1).
    public static func isRequestHeader(_ name: String, connection: ConnectionOptions = ConnectionOptions()) -> Bool {
        Self.matches(name, Self.foldedRequestHeaders, connection)
    }

    /// The same over a name's bytes (a range of a head the gateway's codec parsed).
    public static func isRequestHeader(bytes name: UnsafeRawBufferPointer, connection: ConnectionOptions) -> Bool {
        guard let folded = FoldedName(name) else { return connection.namesUnfolded(String(decoding: name, as: UTF8.self)) }
        return Self.foldedRequestHeaders.contains(folded) || connection.names(folded)
    }

    /// Whether `name` is not relayed to the client: in the fixed set, or named in the
    /// response's `Connection` headers.
    public static func isResponseHeader(_ name: String, connection: ConnectionOptions = ConnectionOptions()) -> Bool {
        Self.matches(name, Self.foldedResponseHeaders, connection)
    }

    /// The same over a name's bytes (a range of a head the gateway's codec parsed).
    public static func isResponseHeader(bytes name: UnsafeRawBufferPointer, connection: ConnectionOptions) -> Bool {
        guard let folded = FoldedName(name) else { return connection.namesUnfolded(String(decoding: name, as: UTF8.self)) }
        return Self.foldedResponseHeaders.contains(folded) || connection.names(folded)
    }

    // Every request and response header is looked up here, so the sets hold names folded into
    // integers: a lookup compares a few words, with no string comparisons or reference counting.
    private static let foldedRequestHeaders = Self.requestHeaders.map { FoldedName($0.utf8)! }
    private static let foldedResponseHeaders = Self.responseHeaders.map { FoldedName($0.utf8)! }

    private static func matches(_ name: String, _ set: [FoldedName], _ connection: ConnectionOptions) -> Bool {
        guard let folded = FoldedName(name.utf8) else { return connection.namesUnfolded(name) }
        return set.contains(folded) || connection.names(folded)
    }
}

/// The field names a message's `Connection` headers list (RFC 9110 7.6.1: comma-separated,
/// optional whitespace), folded once per message. The usual single option (`keep-alive`,
/// `close`) is held without allocating.
public struct ConnectionOptions: Sendable {
    private var first: FoldedName?
    private var more: [FoldedName] = []
    /// Listed names too long to fold, compared as strings (none in practice).
    private var long: [String] = []

    public init() {}

    /// Adds the names one `Connection` header value lists; empty list elements are skipped.
    public mutating func add(_ value: String) {
        var rest = value.utf8[...]
        while !rest.isEmpty {
            let end = rest.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
            var element = rest[..<end]
            rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[end...]
            while let byte = element.first, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { element.removeFirst() }
            while let byte = element.last, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { element.removeLast() }
            guard !element.isEmpty else { continue }
            if let folded = FoldedName(element) {
                if self.first == nil { self.first = folded } else { self.more.append(folded) }
            } else {
                self.long.append(String(Substring(element)))
            }
        }
    }

    /// Whether the `Connection` headers list `field`.
    public func names(_ field: String) -> Bool {
        guard let folded = FoldedName(field.utf8) else { return self.namesUnfolded(field) }
        return self.names(folded)
    }

    fileprivate func names(_ field: FoldedName) -> Bool {
        self.first == field || (!self.more.isEmpty && self.more.contains(field))
    }

    fileprivate func namesUnfolded(_ field: String) -> Bool {
        !self.long.isEmpty && self.long.contains { $0.equalsIgnoringASCIICase(field) }
    }
}

/// A header name of at most 24 bytes, ASCII-lowercased and packed into three words with its
/// length. Longer names are not folded (no hop-by-hop name is longer than 19 bytes).
struct FoldedName: Equatable, Sendable {
    private var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
    private let length: Int

    init?<Bytes: Collection<UInt8>>(_ name: Bytes) {
        // Header names are contiguous UTF-8: folded from a buffer, not through the
        // collection's own (slower) iterator.
        guard let folded = name.withContiguousStorageIfAvailable({ Self(buffer: $0) }) else {
            self.init(buffer: Array(name))
            return
        }
        guard let folded else { return nil }
        self = folded
    }

    private init?(buffer name: some Collection<UInt8>) {
        self.length = name.count
        guard self.length <= 24 else { return nil }
        var offset = 0
        for byte in name {
            let folded = UInt64(asciiLowercase(byte)) << UInt64((offset & 7) * 8)
            switch offset >> 3 {
            case 0: self.words.0 |= folded
            case 1: self.words.1 |= folded
            default: self.words.2 |= folded
            }
            offset += 1
        }
    }

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.length == rhs.length && lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
    }
}

// Concrete rather than generic over `StringProtocol`: these run several times per request from
// other modules, where an unspecialised generic pays for runtime metadata lookups on every call.
