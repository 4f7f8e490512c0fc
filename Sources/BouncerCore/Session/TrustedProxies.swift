/// An IPv4 or IPv6 address as 16 bytes (IPv4 as IPv4-mapped IPv6, `::ffff:a.b.c.d`).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let isIPv4: Bool

    /// Parses `a.b.c.d` or an IPv6 address (RFC 4291 2.2, `::` and a trailing IPv4 part
    /// allowed; a zone `%eth0` is ignored), without brackets.
    public init?(_ text: Substring) {
        if let v4 = Self.parseIPv4(text) {
            self.bytes = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + v4
            self.isIPv4 = true
            return
        }
        guard let v6 = Self.parseIPv6(text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false).first ?? text) else { return nil }
        // An IPv4-mapped IPv6 address is the IPv4 address (a dual-stack socket's peer).
        self.isIPv4 = v6.prefix(12).elementsEqual([UInt8](repeating: 0, count: 10) + [0xFF, 0xFF])
        self.bytes = v6
    }

    public init?(_ text: String) { self.init(text[...]) }

    public var description: String {
        if self.isIPv4 { return self.bytes[12...].map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(self.bytes[$0]) << 8 | UInt16(self.bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }

    private static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            // Decimal only, no leading zeros (which some parsers read as octal).
            guard !part.isEmpty, part.count <= 3, part.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  part == "0" || part.first != "0", let value = UInt8(part)
            else { return nil }
            out.append(value)
        }
        return out
    }

    private static func parseIPv6(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count >= 2, text.utf8.count <= 45 else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring, allowIPv4: Bool) -> [UInt8]? {
            if part.isEmpty { return [] }
            var out: [UInt8] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if allowIPv4, index == pieces.count - 1, piece.contains("."), let v4 = parseIPv4(piece) {
                    out += v4
                    continue
                }
                guard (1...4).contains(piece.utf8.count), let value = UInt16(piece, radix: 16) else { return nil }
                out += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return out
        }
        if halves.count == 1 {
            guard let all = groups(halves[0], allowIPv4: true), all.count == 16 else { return nil }
            return all
        }
        guard let head = groups(halves[0], allowIPv4: false), let tail = groups(halves[1], allowIPv4: true), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

extension Substring {
    /// Splits at every occurrence of `separator` (no Foundation here).
    fileprivate func components(separatedBy separator: String) -> [Substring] {
        var parts: [Substring] = []
        var rest = self
        while let range = rest.range(of: separator) {
            parts.append(rest[..<range.lowerBound])
            rest = rest[range.upperBound...]
        }
        parts.append(rest)
        return parts
    }

    fileprivate func range(of needle: String) -> Range<Index>? {
        var index = self.startIndex
        while index < self.endIndex {
            if self[index...].hasPrefix(needle) { return index..<self.index(index, offsetBy: needle.count) }
            index = self.index(after: index)
        }
        return nil
    }
}

/// A network in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`, or one address.
public struct CIDRBlock: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    /// Prefix length over the 16-byte form (an IPv4 /8 is /104 here).
    let prefixLength: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let width = address.isIPv4 ? 32 : 128
        var length = width
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let value = Int(parts[1]), value <= width else { return nil }
            length = value
        }
        self.prefixLength = length + (128 - width)
        // The network's own address: host bits cleared.
        var bytes = address.bytes
        for index in 0..<16 {
            let bits = min(8, max(0, self.prefixLength - index * 8))
            bytes[index] &= bits == 0 ? 0 : ~UInt8(0) << (8 - bits)
        }
        self.network = IPAddress(bytes: bytes, isIPv4: address.isIPv4)
        self.description = "\(self.network)/\(length)"
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.isIPv4 == self.network.isIPv4 else { return false }
        for index in 0..<16 {
            let bits = min(8, max(0, self.prefixLength - index * 8))
            if bits == 0 { return true }
            let mask: UInt8 = ~UInt8(0) << (8 - bits)
            if address.bytes[index] & mask != self.network.bytes[index] { return false }
        }
        return true
    }
}

extension IPAddress {
    fileprivate init(bytes: [UInt8], isIPv4: Bool) {
        self.bytes = bytes
        self.isIPv4 = isIPv4
    }
}

/// `trusted_proxies:`: the load balancers whose `X-Forwarded-For` (else `Forwarded`, RFC 7239)
/// the gateway believes. The client is the rightmost address of that chain that is not itself
/// a trusted proxy (entries further left were written by whoever sent them, which may be the
/// client). From any other peer the headers are ignored, and replaced on the way upstream.
public struct TrustedProxies: Sendable {
    public let blocks: [CIDRBlock]

    public init(_ blocks: [CIDRBlock] = []) {
        self.blocks = blocks
    }

    public var isEmpty: Bool { self.blocks.isEmpty }

    public func trusts(_ address: IPAddress) -> Bool {
        self.blocks.contains { $0.contains(address) }
    }

    /// Whether `peer` (the TCP peer's address text) is a trusted proxy.
    public func trusts(peer: String) -> Bool {
        guard !self.blocks.isEmpty, let address = IPAddress(peer) else { return false }
        return self.trusts(address)
    }

    /// The client's address for a request that came from `peer`: `peer` itself unless it is
    /// trusted and the forwarding headers name someone. `forwardedFor` is every
    /// `X-Forwarded-For` value in order, `forwarded` every `Forwarded` value.
    public func clientAddress(peer: String, forwardedFor: [String], forwarded: [String]) -> String {
        guard self.trusts(peer: peer) else { return peer }
        let chain: [Substring]
        if !forwardedFor.isEmpty {
            chain = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces() }
        } else {
            chain = forwarded.flatMap { Self.forElements($0) }
        }
        // Right to left: the nearest hop first; a malformed entry ends the walk (nothing left
        // of it can be trusted to mean anything), and the last trusted hop is the answer.
        var client = peer
        for entry in chain.reversed() {
            guard let address = IPAddress(Self.stripPort(entry)) else { break }
            client = address.description
            if !self.trusts(address) { break }
        }
        return client
    }

    /// The `for=` values of a `Forwarded` field (RFC 7239 4), unquoted.
    static func forElements(_ value: String) -> [Substring] {
        var out: [Substring] = []
        for element in value.split(separator: ",") {
            for pair in element.split(separator: ";") {
                let trimmed = pair.trimmingSpaces()
                guard trimmed.count > 4, trimmed.prefix(4).lowercased() == "for=" else { continue }
                var node = trimmed.dropFirst(4)
                if node.first == "\"", node.last == "\"", node.count >= 2 { node = node.dropFirst().dropLast() }
                out.append(node)
            }
        }
        return out
    }

    /// `1.2.3.4:80` -> `1.2.3.4`; `[::1]:80` and `[::1]` -> `::1`; an IPv6 address unchanged.
    static func stripPort(_ entry: Substring) -> Substring {
        if entry.first == "[", let close = entry.firstIndex(of: "]") {
            return entry[entry.index(after: entry.startIndex)..<close]
        }
        if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
            return entry[..<colon]
        }
        return entry
    }
}
