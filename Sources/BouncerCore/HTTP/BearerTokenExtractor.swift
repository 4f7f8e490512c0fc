/// Reading the access token from where RFC 6750 and MCP allow it: the `Authorization` header
/// (`Bearer`, or `DPoP` for a token with a proof of possession), and nowhere else.
public enum BearerTokenExtractor {
    public enum Outcome: Sendable, Hashable {
        case none
        /// `Authorization: Bearer <token>`.
        case token(String)
        /// `Authorization: DPoP <token>` (RFC 9449 §7.1): the token with a proof of possession.
        case dpop(String)
        case invalid(String)
    }

    /// - Parameter values: every `Authorization` header of the request.
    public static func extract(authorization values: [String]) -> Outcome {
        Self.extract(first: values.first, count: values.count)
    }

    /// - Parameters:
    ///   - value: the request's first `Authorization` header.
    ///   - count: how many `Authorization` headers it has.
    ///   - previous: a token this extractor returned before on the same connection: when the
    ///     header carries the same bytes, that String is the token again (a keep-alive client
    ///     sends one token many times; it was checked then).
    public static func extract(first value: String?, count: Int, reusing previous: String? = nil) -> Outcome {
        guard let value else { return .none }
        guard count == 1 else { return .invalid("more than one Authorization header") }
        let isDPoP: Bool
        if value.utf8.count > 7, value.prefix(7).equalsIgnoringASCIICase("bearer ") {
            isDPoP = false
        } else if value.utf8.count > 5, value.prefix(5).equalsIgnoringASCIICase("dpop ") {
            isDPoP = true
        } else {
            // Another scheme (Basic, ...) carries no token for us.
            return .none
        }
        var trimmed = value.dropFirst(isDPoP ? 5 : 7).trimmingSpaces()
        guard !trimmed.isEmpty else { return .invalid("empty access token") }
        if var previous, previous.utf8.count == trimmed.utf8.count,
           previous.withUTF8({ previous in trimmed.withUTF8 { sameBytes(UnsafeRawBufferPointer(previous), UnsafeRawBufferPointer($0)) } }) {
            return isDPoP ? .dpop(previous) : .token(previous)
        }
        // RFC 6750 b64token (RFC 9449 §7.1 uses the same token68 syntax):
        // 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        let token = String(trimmed)
        guard Self.isB64Token(token) else {
            return .invalid("the access token has characters outside the b64token syntax")
        }
        return isDPoP ? .dpop(token) : .token(token)
    }

    /// RFC 6750 `b64token`: what a bearer token may contain, so it can travel in a header
    /// without escaping (no spaces, quotes, commas or line breaks).
    public static func isB64Token(_ token: String) -> Bool {
        var token = token
        return token.withUTF8 { bytes in
            var index = 0
            while index < bytes.count, Self.isB64TokenCharacter(bytes[index]) { index += 1 }
            while index < bytes.count, bytes[index] == UInt8(ascii: "=") { index += 1 }
            return index == bytes.count
        }
    }

    /// ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", as a 256-bit set: one shift and mask
    /// per byte of a token that is checked on every request.
    @inline(__always)
    private static func isB64TokenCharacter(_ byte: UInt8) -> Bool {
        let word: UInt64
        switch byte >> 6 {
        case 0: word = 0x03FF_E800_0000_0000  // "+" "-" "." "/" "0"..."9"
        case 1: word = 0x47FF_FFFE_87FF_FFFE  // "A"..."Z" "_" "a"..."z" "~"
        default: return false
        }
        return (word >> UInt64(byte & 63)) & 1 == 1
    }

    /// Whether a query string or form body carries `access_token` (RFC 6750 2.2/2.3,
    /// which MCP forbids).
    public static func carriesAccessToken(formEncoded: some StringProtocol) -> Bool {
        formEncoded.split(separator: "&").contains { pair in
            let name = pair.split(separator: "=", maxSplits: 1).first ?? ""
            return name == "access_token" || name.lowercased() == "access%5ftoken"
        }
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self
        while result.first == " " || result.first == "\t" { result = result.dropFirst() }
        while result.last == " " || result.last == "\t" { result = result.dropLast() }
        return result
    }
}
