/// The line rules the request head, the response head and the trailer section share
/// (RFC 9112 2.2 and 5): lines end in CRLF, a field line is `token ":" OWS value OWS`, with no
/// whitespace before the colon, no folding and no control character in the value.
///
/// Everything works on a raw buffer and ranges into it; nothing allocates.
public enum HTTP1Lines {
    /// The next line at or after `start`: its content (without CRLF) and where the following
    /// line starts; nil when no LF has come yet. A line ending that is not CRLF fails. The
    /// search for LF begins at `searched` (bytes before it were searched already: a head that
    /// arrives a byte at a time is still read once).
    static func line(in bytes: UnsafeRawBufferPointer, from start: Int, searched: Int) -> Result<(content: Range<Int>, next: Int), HTTP1ParseError>? {
        guard let index = Self.lineFeed(in: bytes, from: max(start, searched)) else { return nil }
        guard index > start, bytes[index - 1] == 0x0D else { return .failure(.bareLineEnding) }
        return .success((start..<(index - 1), index + 1))
    }

    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// The first LF at or after `start`, eight bytes at a time (a zero byte of `word ^ LF...`
    /// marks it; the lowest marked byte is exact).
    static func lineFeed(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var index = start
        while index + 8 <= bytes.count {
            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) ^ (Self.ones &* 0x0A)
            let found = (word &- Self.ones) & ~word & Self.highs
            if found != 0 { return index + found.trailingZeroBitCount / 8 }
            index += 8
        }
        while index < bytes.count {
            if bytes[index] == 0x0A { return index }
            index += 1
        }
        return nil
    }

    /// Whether every byte of `range` may be in a field value: HTAB, SP, VCHAR, obs-text (no
    /// other control, no DEL). Eight bytes at a time; a word with a byte below SP (a tab,
    /// usually) or a DEL is looked at byte by byte.
    static func isFieldValue(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        var index = range.lowerBound
        while index + 8 <= range.upperBound {
            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            let belowSpace = (word &- Self.ones &* 0x20) & ~word & Self.highs
            let del = word ^ (Self.ones &* 0x7F)
            let isDel = (del &- Self.ones) & ~del & Self.highs
            if belowSpace | isDel != 0 {
                for offset in index..<(index + 8) where !Self.isFieldValueByte(bytes[offset]) { return false }
            }
            index += 8
        }
        while index < range.upperBound {
            if !Self.isFieldValueByte(bytes[index]) { return false }
            index += 1
        }
        return true
    }

    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 ? byte != 0x7F : byte == 0x09
    }

    /// RFC 9112 5: one field line (its content, without CRLF).
    static func field(in bytes: UnsafeRawBufferPointer, line: Range<Int>) -> Result<HTTP1Field, HTTP1ParseError> {
        var index = line.lowerBound
        let first = bytes[index]
        if first == 0x20 || first == 0x09 { return .failure(.obsoleteLineFolding) }
        while index < line.upperBound, HTTPToken.isTokenCharacter(bytes[index]) { index += 1 }
        guard index < line.upperBound, index > line.lowerBound else { return .failure(.invalidFieldName) }
        switch bytes[index] {
        case UInt8(ascii: ":"):
            break
        case 0x20, 0x09:
            // `name :` (RFC 9112 5.1) or whitespace inside a name.
            var after = index
            while after < line.upperBound, bytes[after] == 0x20 || bytes[after] == 0x09 { after += 1 }
            return .failure(after < line.upperBound && bytes[after] == UInt8(ascii: ":") ? .whitespaceBeforeColon : .invalidFieldName)
        default:
            return .failure(.invalidFieldName)
        }
        let name = line.lowerBound..<index
        index += 1
        guard Self.isFieldValue(bytes, index..<line.upperBound) else { return .failure(.invalidFieldValue) }
        var valueEnd = line.upperBound
        while index < valueEnd, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
        while valueEnd > index, bytes[valueEnd - 1] == 0x20 || bytes[valueEnd - 1] == 0x09 { valueEnd -= 1 }
        return .success(HTTP1Field(name: name, value: index..<valueEnd))
    }

    /// Whether a name's bytes spell `name`, ASCII case-insensitively (a name known only at run
    /// time: a policy's, one the gateway replaces).
    public static func equals(_ bytes: UnsafeRawBufferPointer, ignoringCase name: String) -> Bool {
        var name = name
        return name.withUTF8 { $0.count == bytes.count && zip($0, bytes).allSatisfy { asciiLowercase($0) == asciiLowercase($1) } }
    }

    /// ASCII case-insensitive comparison of a whole name with `lowercase` (given in lowercase).
    public static func equals(_ name: UnsafeRawBufferPointer, lowercase: StaticString) -> Bool {
        Self.equals(name, 0..<name.count, lowercase: lowercase)
    }

    /// The elements of every field in `fields` named `lowercase` (comma-separated lists, RFC
    /// 9110 5.6.1: trimmed, empty ones skipped), in order, as Strings.
    public static func elements(named lowercase: StaticString, of fields: [HTTP1Field], in bytes: UnsafeRawBufferPointer) -> [String] {
        var elements: [String] = []
        for field in fields where Self.equals(bytes, field.name, lowercase: lowercase) {
            Self.forEachElement(bytes, field.value) { elements.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0]), as: UTF8.self)) }
        }
        return elements
    }

    /// The value of the first field in `fields` named `lowercase`, as a String.
    public static func firstValue(named lowercase: StaticString, of fields: [HTTP1Field], in bytes: UnsafeRawBufferPointer) -> String? {
        guard let field = fields.first(where: { Self.equals(bytes, $0.name, lowercase: lowercase) }) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self)
    }

    /// ASCII case-insensitive comparison of `range` with `lowercase` (given in lowercase).
    static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, lowercase: StaticString) -> Bool {
        guard range.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for offset in 0..<range.count {
            let byte = bytes[range.lowerBound + offset]
            let folded = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            guard folded == expected[offset] else { return false }
        }
        return true
    }

    /// Calls `body` with each comma-separated element of a list value, whitespace trimmed,
    /// empty elements skipped (RFC 9110 5.6.1).
    static func forEachElement(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        var start = range.lowerBound
        while start <= range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != UInt8(ascii: ",") { end += 1 }
            var low = start
            var high = end
            while low < high, bytes[low] == 0x20 || bytes[low] == 0x09 { low += 1 }
            while high > low, bytes[high - 1] == 0x20 || bytes[high - 1] == 0x09 { high -= 1 }
            if low < high { body(low..<high) }
            start = end + 1
        }
    }

    /// Whether the whitespace after a value (before its line's CR) holds a tab.
    static func tabFollows(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) -> Bool {
        var index = value.upperBound
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 {
            if bytes[index] == 0x09 { return true }
            index += 1
        }
        return false
    }

    /// RFC 9110 8.6: `1*DIGIT`, nothing else, and no larger than `Int`'s 18 safe digits.
    static func contentLength(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Result<Int, HTTP1ParseError> {
        guard !range.isEmpty else { return .failure(.invalidContentLength) }
        guard range.count <= 18 else { return .failure(bytes[range.lowerBound] == UInt8(ascii: ",") ? .multipleContentLengths : .invalidContentLength) }
        var value = 0
        for index in range {
            let byte = bytes[index]
            if byte == UInt8(ascii: ",") { return .failure(.multipleContentLengths) }
            guard byte >= 0x30, byte <= 0x39 else { return .failure(.invalidContentLength) }
            value = value * 10 + Int(byte - 0x30)
        }
        return .success(value)
    }

    /// Gathers what `field` says about framing and the connection into `facts`.
    static func observe(_ field: HTTP1Field, in bytes: UnsafeRawBufferPointer, into facts: inout HTTP1HeadFacts) -> HTTP1ParseError? {
        let name = field.name
        let value = field.value
        switch name.count {
        case 4 where Self.equals(bytes, name, lowercase: "host"):
            facts.hosts += 1
            if facts.host == nil { facts.host = value }
        case 4 where Self.equals(bytes, name, lowercase: "dpop"):
            facts.request.dpopCount += 1
            if facts.request.dpop == nil { facts.request.dpop = value }
        case 6 where Self.equals(bytes, name, lowercase: "expect"):
            if Self.equals(bytes, value, lowercase: "100-continue") { facts.expectContinue = true }
        case 6 where Self.equals(bytes, name, lowercase: "origin"):
            if facts.request.origin == nil { facts.request.origin = value }
        case 7 where Self.equals(bytes, name, lowercase: "upgrade"):
            facts.upgrade = true
        case 8 where Self.equals(bytes, name, lowercase: "mcp-name"):
            if facts.request.mcpName == nil { facts.request.mcpName = value }
        case 9 where Self.equals(bytes, name, lowercase: "forwarded"):
            facts.request.forwardedCount += 1
        case 10 where Self.equals(bytes, name, lowercase: "mcp-method"):
            if facts.request.mcpMethod == nil { facts.request.mcpMethod = value }
        case 11 where Self.equals(bytes, name, lowercase: "client-cert"):
            facts.request.clientCertCount += 1
            if facts.request.clientCert == nil { facts.request.clientCert = value }
        case 11 where Self.equals(bytes, name, lowercase: "traceparent"):
            facts.request.traceparentCount += 1
            facts.request.traceparent = facts.request.traceparentCount == 1 ? value : nil
        case 12 where Self.equals(bytes, name, lowercase: "content-type"):
            if facts.request.contentType == nil { facts.request.contentType = value }
        case 13 where Self.equals(bytes, name, lowercase: "authorization"):
            facts.request.authorizationCount += 1
            if facts.request.authorization == nil { facts.request.authorization = value }
        case 14 where Self.equals(bytes, name, lowercase: "mcp-session-id"):
            facts.request.sessionIDCount += 1
            if facts.request.sessionID == nil { facts.request.sessionID = value }
        case 15 where Self.equals(bytes, name, lowercase: "x-forwarded-for"):
            facts.request.forwardedForCount += 1
        case 16 where Self.equals(bytes, name, lowercase: "content-encoding"):
            // RFC 9110 8.4: only an empty list or identity leaves the body as the gateway reads it.
            Self.forEachElement(bytes, value) { coding in
                if !Self.equals(bytes, coding, lowercase: "identity") { facts.request.contentCodingIsIdentity = false }
            }
        case 20 where Self.equals(bytes, name, lowercase: "mcp-protocol-version"):
            if facts.request.protocolVersion == nil { facts.request.protocolVersion = value }
        case 10 where Self.equals(bytes, name, lowercase: "connection"):
            Self.forEachElement(bytes, value) { token in
                if Self.equals(bytes, token, lowercase: "close") {
                    facts.connectionClose = true
                } else if Self.equals(bytes, token, lowercase: "keep-alive") {
                    facts.connectionKeepAlive = true
                } else if Self.equals(bytes, token, lowercase: "upgrade") {
                    facts.connectionUpgrade = true
                }
            }
        case 14 where Self.equals(bytes, name, lowercase: "content-length"):
            guard facts.contentLength == nil else { return .multipleContentLengths }
            // llhttp takes only spaces after a framing field's value, never a tab: nor do we.
            if Self.tabFollows(bytes, value) { return .invalidContentLength }
            switch Self.contentLength(bytes, value) {
            case .success(let length): facts.contentLength = length
            case .failure(let error): return error
            }
        case 17 where Self.equals(bytes, name, lowercase: "transfer-encoding"):
            facts.transferEncodings += 1
            if Self.tabFollows(bytes, value) { return .unsupportedTransferCoding }
            // Exactly one coding, `chunked`, on one field line (HTTP1Strictness).
            guard facts.transferEncodings == 1, Self.equals(bytes, value, lowercase: "chunked") else { return .unsupportedTransferCoding }
            facts.chunked = true
        default:
            break
        }
        return nil
    }
}
