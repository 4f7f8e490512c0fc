/// The methods the gateway takes: the registered ones a proxy of MCP servers can meet. CONNECT
/// is not among them (a gateway to MCP servers tunnels nothing), nor any extension method
/// (``HTTP1Strictness``).
public enum HTTP1Method: UInt8, Sendable, Hashable, CaseIterable {
    case GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH

    public var name: String {
        switch self {
        case .GET: "GET"
        case .HEAD: "HEAD"
        case .POST: "POST"
        case .PUT: "PUT"
        case .DELETE: "DELETE"
        case .OPTIONS: "OPTIONS"
        case .TRACE: "TRACE"
        case .PATCH: "PATCH"
        }
    }

    /// The method `range` spells, case-sensitively (RFC 9110 9.1).
    static func parse(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> HTTP1Method? {
        func spells(_ text: StaticString) -> Bool {
            guard range.count == text.utf8CodeUnitCount else { return false }
            for offset in 0..<range.count where bytes[range.lowerBound + offset] != text.utf8Start[offset] { return false }
            return true
        }
        switch range.count {
        case 3: return spells("GET") ? .GET : spells("PUT") ? .PUT : nil
        case 4: return spells("POST") ? .POST : spells("HEAD") ? .HEAD : nil
        case 5: return spells("PATCH") ? .PATCH : spells("TRACE") ? .TRACE : nil
        case 6: return spells("DELETE") ? .DELETE : nil
        case 7: return spells("OPTIONS") ? .OPTIONS : nil
        default: return nil
        }
    }
}

/// A strict HTTP/1.1 request-head parser over bytes (RFC 9112 2-6), for the gateway's client
/// side (issue 28). It reads each byte of the head once, line by line as they arrive, and
/// hands out the head as ranges into those bytes: the method, the target, the version, each
/// field's name and value, and the facts of ``HTTP1HeadFacts`` gathered in the same pass.
///
/// Reused from one request to the next on a connection (``reset()``), its field list keeps
/// its storage: a parse allocates nothing once the list has grown to the connection's
/// largest head.
///
/// Feed it the bytes from the head's first byte, each time with what came since:
/// ``parse(_:)`` resumes where it stopped. Offsets in the results count from that first byte.
public struct HTTP1RequestParser: Sendable {
    public var maxHeadBytes: Int { self.section.maxHeadBytes }
    public var maxFields: Int { self.section.maxFields }

    public private(set) var method: HTTP1Method = .GET
    public private(set) var target: Range<Int> = 0..<0
    public private(set) var version: HTTP1Version = .http11
    public var fields: [HTTP1Field] { self.section.fields }
    public var facts: HTTP1HeadFacts { self.section.facts }
    public private(set) var framing: HTTP1Framing = .none

    private var section: HTTP1FieldSection

    public init(maxHeadBytes: Int = 16 * 1024, maxFields: Int = 100) {
        self.section = HTTP1FieldSection(maxHeadBytes: maxHeadBytes, maxFields: maxFields, skipsLeadingEmptyLines: true)
    }

    /// Ready for the next request's head (the field list keeps its storage).
    public mutating func reset() {
        self.section.reset()
        self.framing = .none
    }

    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> HTTP1HeadProgress {
        while true {
            switch self.section.next(bytes) {
            case .startLine(let line):
                if let error = self.requestLine(bytes, line) { return .failed(error) }
            case .end(let length):
                if let error = self.finish() { return .failed(error) }
                return .complete(length: length)
            case .incomplete:
                return .incomplete
            case .failed(let error):
                return .failed(error)
            }
        }
    }

    /// The first rule of ``RequestHeadFacts/violation(method:isHTTP11OrLater:)`` the parsed
    /// head breaks that the parse itself does not refuse: Host (one, well-formed, present in
    /// HTTP/1.1), a body on GET, HEAD or DELETE, a content coding other than identity.
    public func violation(_ bytes: UnsafeRawBufferPointer) -> RequestHeadFacts.Violation? {
        Self.violation(facts: self.facts, method: self.method, version: self.version, bytes)
    }

    /// The same for a head's facts, method and version and its bytes.
    static func violation(facts: HTTP1HeadFacts, method: HTTP1Method, version: HTTP1Version, _ bytes: UnsafeRawBufferPointer) -> RequestHeadFacts.Violation? {
        if facts.hosts > 1 { return .multipleHosts }
        if let host = facts.host, !RequestHeadFacts.isValidHost(bytes: bytes[host]) { return .invalidHost }
        if facts.hosts == 0, version == .http11 { return .missingHost }
        let hasBody = facts.chunked || (facts.contentLength ?? 0) > 0
        if hasBody, method == .GET || method == .HEAD || method == .DELETE { return .unexpectedBody }
        if !facts.request.contentCodingIsIdentity { return .unsupportedContentCoding }
        return nil
    }

    /// RFC 9112 3: `method SP request-target SP HTTP-version`, one space each.
    private mutating func requestLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> HTTP1ParseError? {
        var index = line.lowerBound
        while index < line.upperBound, bytes[index] != 0x20 { index += 1 }
        guard index < line.upperBound else { return .invalidRequestLine }
        let methodRange = line.lowerBound..<index
        guard methodRange.allSatisfy({ HTTPToken.isTokenCharacter(bytes[$0]) }), !methodRange.isEmpty else { return .invalidRequestLine }
        guard let method = HTTP1Method.parse(bytes, methodRange) else { return .unsupportedMethod }
        index += 1
        let targetStart = index
        while index < line.upperBound, bytes[index] != 0x20 {
            // Visible ASCII only: no controls, no raw bytes above 0x7E (HTTP1Strictness).
            guard bytes[index] > 0x20, bytes[index] < 0x7F else { return .invalidTarget }
            index += 1
        }
        guard index < line.upperBound, index > targetStart else { return .invalidRequestLine }
        let target = targetStart..<index
        guard Self.isTargetForm(bytes, target, method: method) else { return .invalidTarget }
        index += 1
        let versionRange = index..<line.upperBound
        guard let version = Self.version(bytes, versionRange) else {
            // Well-formed (`HTTP/` DIGIT "." DIGIT) but not 1.x: 505; anything else: 400.
            return Self.isVersionSyntax(bytes, versionRange) ? .unsupportedVersion : .invalidRequestLine
        }
        self.method = method
        self.target = target
        self.version = version
        return nil
    }

    /// RFC 9112 3.2: origin-form (`/...`), absolute-form (`scheme://authority[/...|?...]`, the
    /// scheme letters only and the authority host characters only), or asterisk-form (`*`
    /// alone, for OPTIONS). Its characters are visible ASCII already.
    static func isTargetForm(_ bytes: UnsafeRawBufferPointer, _ target: Range<Int>, method: HTTP1Method) -> Bool {
        let first = bytes[target.lowerBound]
        if first == UInt8(ascii: "/") { return true }
        if first == UInt8(ascii: "*") { return target.count == 1 && method == .OPTIONS }
        var index = target.lowerBound
        func isLetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") }
        while index < target.upperBound, isLetter(bytes[index]) { index += 1 }
        guard index > target.lowerBound, target.upperBound - index > 3, bytes[index] == UInt8(ascii: ":"),
              bytes[index + 1] == UInt8(ascii: "/"), bytes[index + 2] == UInt8(ascii: "/")
        else { return false }
        index += 3
        let authorityStart = index
        while index < target.upperBound {
            let byte = bytes[index]
            if byte == UInt8(ascii: "/") || byte == UInt8(ascii: "?") { break }
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
                index += 1
            default:
                return false
            }
        }
        return index > authorityStart
    }

    /// `HTTP/1.1` or `HTTP/1.0`, exactly (RFC 9112 2.3: case-sensitive).
    static func version(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> HTTP1Version? {
        guard Self.isVersionSyntax(bytes, range), bytes[range.lowerBound + 5] == UInt8(ascii: "1") else { return nil }
        switch bytes[range.lowerBound + 7] {
        case UInt8(ascii: "1"): return .http11
        case UInt8(ascii: "0"): return .http10
        default: return nil
        }
    }

    /// RFC 9112 2.3: `HTTP-version = "HTTP/" DIGIT "." DIGIT`.
    static func isVersionSyntax(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        guard range.count == 8 else { return false }
        let base = range.lowerBound
        func digit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
        return bytes[base] == UInt8(ascii: "H") && bytes[base + 1] == UInt8(ascii: "T") && bytes[base + 2] == UInt8(ascii: "T")
            && bytes[base + 3] == UInt8(ascii: "P") && bytes[base + 4] == UInt8(ascii: "/") && digit(bytes[base + 5])
            && bytes[base + 6] == UInt8(ascii: ".") && digit(bytes[base + 7])
    }

    /// The framing the fields say (RFC 9112 6.3), once the head is whole.
    private mutating func finish() -> HTTP1ParseError? {
        if self.facts.chunked {
            if self.facts.contentLength != nil { return .contentLengthAndTransferEncoding }
            if self.version == .http10 { return .transferEncodingInHTTP10 }
            self.framing = .chunked
        } else if let length = self.facts.contentLength {
            self.framing = .length(length)
        } else {
            self.framing = .none
        }
        return nil
    }
}
