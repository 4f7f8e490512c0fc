/// An absolute `http`/`https` URI in the canonical form MCP and RFC 8707 use to name a
/// resource: lowercase scheme and host, no default port, no trailing slash, no query or
/// fragment.
///
/// Two spellings of the same resource (`HTTPS://MCP.Example.com:443/mcp/`) compare equal
/// after canonicalisation, which is what audience checks need.
public struct CanonicalURI: Hashable, Sendable, CustomStringConvertible {
    public let scheme: String
    /// Lowercased; IPv6 literals keep their brackets.
    public let host: String
    /// `nil` when it is the scheme's default port.
    public let port: Int?
    /// Empty or starting with `/`, never ending with `/`.
    public let path: String

    public init(_ text: String) throws(URIError) {
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw URIError(.notAbsolute, "'\(text)' is not an absolute URL (scheme://host/path)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw URIError(.scheme, "'\(text)' must use http or https")
        }
        var rest = text[schemeEnd.upperBound...]
        if rest.contains("#") { throw URIError(.fragment, "'\(text)' must not have a fragment") }
        if rest.contains("?") { throw URIError(.query, "'\(text)' must not have a query") }
        if rest.contains(where: { $0 == " " || $0.asciiValue.map { $0 < 0x21 } ?? false }) {
            throw URIError(.characters, "'\(text)' contains whitespace or control characters")
        }
        let authority: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            rest = rest[slash...]
        } else {
            authority = rest
            rest = ""
        }
        if authority.contains("@") { throw URIError(.authority, "'\(text)' must not carry user information") }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw URIError(.authority, "'\(text)' has an unclosed IPv6 literal") }
            host = authority[...close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw URIError(.authority, "'\(text)' has an invalid authority") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw URIError(.host, "'\(text)' has no host") }
        // RFC 3986 3.2.2: an IP literal in brackets or a reg-name (ASCII; IDNs as punycode).
        // Found by fuzzing: a host with ':' or ']' in it canonicalised to a URI that read back
        // with another host and port.
        guard host.hasPrefix("[") || !host.contains(":"), RequestHeadFacts.isValidHost(String(host)) else {
            throw URIError(.host, "'\(text)' has an invalid host")
        }
        var port: Int?
        if let portText {
            guard portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let value = Int(portText), (1...65535).contains(value) else {
                throw URIError(.port, "'\(text)' has an invalid port")
            }
            port = value
        }
        if port == Self.defaultPort(scheme) { port = nil }
        var path = String(rest)
        while path.hasSuffix("/") { path.removeLast() }
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
        self.path = path
    }

    static func defaultPort(_ scheme: String) -> Int { scheme == "https" ? 443 : 80 }

    /// Whether the host is loopback (`localhost`, `127.0.0.0/8`, `[::1]`): plain http there
    /// does not cross a network.
    public var hasLoopbackHost: Bool {
        self.host == "localhost" || self.host.hasPrefix("127.") || self.host == "[::1]"
    }

    /// `scheme://host[:port]`.
    public var origin: String {
        var out = "\(self.scheme)://\(self.host)"
        if let port { out += ":\(port)" }
        return out
    }

    public var effectivePort: Int { self.port ?? Self.defaultPort(self.scheme) }

    public var description: String { self.origin + self.path }

    /// This URI with `suffix` (a path starting with `/`) appended to its path.
    public func appendingPath(_ suffix: String) -> CanonicalURI {
        var copy = self
        copy.setPath(self.path + suffix)
        return copy
    }

    /// RFC 9728 section 3.1: the well-known segment goes between the host and the path.
    public var protectedResourceMetadataURL: String {
        self.origin + "/.well-known/oauth-protected-resource" + self.path
    }

    private mutating func setPath(_ path: String) {
        var path = path
        while path.hasSuffix("/") { path.removeLast() }
        self = CanonicalURI(scheme: self.scheme, host: self.host, port: self.port, path: path)
    }

    private init(scheme: String, host: String, port: Int?, path: String) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
    }

    /// Whether an `aud` value names this URI. URL-shaped values are canonicalised first;
    /// anything else must match the canonical string exactly.
    public func isNamed(by audience: String) -> Bool {
        if audience == self.description { return true }
        guard let other = try? CanonicalURI(audience) else { return false }
        return other == self
    }
}
