/// The form in which `resources/read` URIs are matched against the policy: RFC 3986 6.2.2
/// syntax-based normalisation, so that a rule such as `file:///docs/*` cannot be stepped
/// around by another spelling of a URI outside it (`file:///docs/../secret.txt`,
/// `file:///docs/%2e%2e/secret.txt`, `FILE:///docs/...`).
///
/// What cannot be normalised safely is refused rather than guessed at: an upstream that
/// decodes again, splits on `\` or stops at NUL would read such a URI differently from the
/// gateway.
public enum ResourceURI {
    /// `uri` normalised: scheme and host lowercased, percent-encodings of unreserved
    /// characters decoded and the others' hex digits uppercased (6.2.2.1-2), dot segments
    /// removed from the path (6.2.2.3, 5.2.4). The query and fragment keep their text (only the
    /// percent-encodings are normalised), and `*` stays as it is, so policy globs normalise
    /// with the same function.
    ///
    /// Refused: no scheme; a control character, space or `\`, raw or encoded; an encoded `/`
    /// (it would turn into a segment separator for an upstream that decodes); an encoded `%`
    /// before two hex digits (double encoding); a malformed percent-encoding; dot segments
    /// that climb above the root.
    public static func normalise(_ uri: String) throws(URIError) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(uri.utf8.count)
        var utf8 = Array(uri.utf8)
        // 1. Percent-encodings and forbidden characters, over the whole URI.
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            if byte < 0x21 || byte == 0x7F || byte == UInt8(ascii: "\\") {
                throw URIError(.characters, "the URI contains a space, a control character or a backslash")
            }
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                index += 1
                continue
            }
            guard index + 2 < utf8.count, let high = self.hexValue(utf8[index + 1]), let low = self.hexValue(utf8[index + 2]) else {
                throw URIError(.malformedEncoding, "the URI has a malformed percent-encoding")
            }
            let decoded = high << 4 | low
            switch decoded {
            case _ where decoded < 0x21 || decoded == 0x7F || decoded == UInt8(ascii: "\\"):
                throw URIError(.characters, "the URI encodes a space, a control character or a backslash")
            case UInt8(ascii: "/"):
                throw URIError(.encodedSeparator, "the URI encodes '/' (%2F)")
            case _ where RequestHeadFacts.isUnreserved(decoded):
                bytes.append(decoded)
            default:
                bytes.append(UInt8(ascii: "%"))
                bytes.append(self.hexDigit(high))
                bytes.append(self.hexDigit(low))
            }
            index += 3
        }
        // An encoded '%' before two hex digits is double encoding. Looked for in the decoded
        // text: the digits may have been encoded themselves (%25%42%35 reads %25B5).
        for start in bytes.indices.dropLast(4) where bytes[start] == UInt8(ascii: "%") && bytes[start + 1] == UInt8(ascii: "2") && bytes[start + 2] == UInt8(ascii: "5") {
            if self.hexValue(bytes[start + 3]) != nil, self.hexValue(bytes[start + 4]) != nil {
                throw URIError(.doubleEncoding, "the URI is percent-encoded twice")
            }
        }
        utf8 = bytes

        // 2. Scheme (RFC 3986 3.1), lowercased.
        guard let colon = utf8.firstIndex(of: UInt8(ascii: ":")), colon > 0, self.isAlpha(utf8[0]),
              utf8[1..<colon].allSatisfy({ self.isAlpha($0) || self.isDigit($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") })
        else { throw URIError(.notAbsolute, "the URI has no scheme") }
        var out = utf8[..<colon].map(self.lowercased)
        out.append(UInt8(ascii: ":"))
        var rest = utf8[(colon + 1)...]

        // 3. Authority: host lowercased (userinfo and port keep their text).
        let hasAuthority = rest.starts(with: [UInt8(ascii: "/"), UInt8(ascii: "/")])
        if hasAuthority {
            rest = rest.dropFirst(2)
            let end = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? rest.endIndex
            let authority = rest[..<end]
            let hostStart = (authority.lastIndex(of: UInt8(ascii: "@")).map { authority.index(after: $0) }) ?? authority.startIndex
            out.append(contentsOf: [UInt8(ascii: "/"), UInt8(ascii: "/")])
            out.append(contentsOf: authority[..<hostStart])
            out.append(contentsOf: authority[hostStart...].map(self.lowercased))
            rest = rest[end...]
        }

        // 4. Path: dot segments removed (RFC 3986 5.2.4), refusing any that climb above the root.
        let pathEnd = rest.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? rest.endIndex
        try self.appendRemovingDotSegments(rest[..<pathEnd], hasAuthority: hasAuthority, to: &out)
        out.append(contentsOf: rest[pathEnd...])
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 3986 5.2.4 over segments: `.` dropped, `..` drops the segment before it, and a `..`
    /// with nothing left to drop is refused (the standard algorithm would silently stop at the
    /// root, which is exactly the spelling an attacker uses).
    ///
    /// A result that would read as another component is refused too: without an authority, a
    /// path may not come out starting with `//` (it would become one), and a relative path
    /// may not come out starting with `/` (`a:.//x`).
    private static func appendRemovingDotSegments(_ path: ArraySlice<UInt8>, hasAuthority: Bool, to out: inout [UInt8]) throws(URIError) {
        guard !path.isEmpty else { return }
        let absolute = path.first == UInt8(ascii: "/")
        var segments: [ArraySlice<UInt8>] = []
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for (position, segment) in parts.enumerated() {
            if absolute, position == 0 { continue }
            let isLast = position == parts.count - 1
            switch segment {
            case [UInt8(ascii: ".")]:
                // A trailing `.` still names a directory: keep the slash before it.
                if isLast { segments.append([]) }
            case [UInt8(ascii: "."), UInt8(ascii: ".")]:
                guard segments.popLast() != nil else { throw URIError(.dotSegments, "the URI's path climbs above its root") }
                if isLast { segments.append([]) }
            default:
                segments.append(segment)
            }
        }
        if segments.count > 1, segments[0].isEmpty, !absolute || !hasAuthority {
            throw URIError(.dotSegments, "the URI's path would change form once its dot segments are removed")
        }
        if absolute { out.append(UInt8(ascii: "/")) }
        for (position, segment) in segments.enumerated() {
            if position > 0 { out.append(UInt8(ascii: "/")) }
            out.append(contentsOf: segment)
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10
    }

    private static func isAlpha(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }
}
