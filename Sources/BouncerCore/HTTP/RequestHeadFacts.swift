import NIOCore

/// What the gateway needs to know about a request head, gathered in one pass over its fields:
/// what RFC 9112 requires a server to refuse beyond the message's syntax (Host, a body where
/// none belongs, codings: ``violation(method:isHTTP11OrLater:)``; the codec's parser judges the
/// same, ``HTTP1RequestParser/violation(_:)``), and the fields the enforcement stages read
/// (``Enforcement``): Origin, Authorization, the MCP headers, Content-Type, Connection.
///
/// Gathered from the gateway's codec (``init(_:)``, a String made only of the fields below), or
/// from every field of a head as Strings (``observe(name:value:)``): one length switch per
/// field, then one case-insensitive comparison for the few lengths that matter.
public struct RequestHeadFacts: Sendable {
    /// A request head the gateway refuses before routing; the connection is closed after the answer.
    public enum Violation: Equatable, Sendable, CustomStringConvertible {
        /// RFC 9112 3.2: an HTTP/1.1 request without Host.
        case missingHost
        /// RFC 9112 3.2: more than one Host field line.
        case multipleHosts
        /// RFC 9112 3.2: a Host value that is not `uri-host [ ":" port ]` (RFC 9110 7.2).
        case invalidHost
        /// RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
        case transferEncodingInHTTP10
        /// RFC 9112 6.1: a transfer coding other than chunked (SHOULD be 501).
        case unsupportedTransferCoding
        /// A GET, HEAD or DELETE with a body (Content-Length > 0 or chunked): the body has no
        /// meaning there (RFC 9110 9.3.1, 9.3.2, 9.3.5) and would reach the upstream uninspected.
        case unexpectedBody
        /// A `Content-Encoding` other than `identity`: the gateway cannot decide on a body it
        /// cannot read (RFC 9110 15.5.16: 415).
        case unsupportedContentCoding
        /// A request target in neither origin- nor absolute-form (nor `OPTIONS *`).
        case invalidTarget

        /// 501 for a transfer coding the gateway does not implement, 415 for a content coding,
        /// otherwise 400.
        public var status: Int {
            switch self {
            case .unsupportedTransferCoding: return 501
            case .unsupportedContentCoding: return 415
            case .missingHost, .multipleHosts, .invalidHost, .transferEncodingInHTTP10, .unexpectedBody, .invalidTarget: return 400
            }
        }

        public var description: String {
            switch self {
            case .missingHost: return "an HTTP/1.1 request without Host"
            case .multipleHosts: return "more than one Host header"
            case .invalidHost: return "a Host header that is not host[:port]"
            case .transferEncodingInHTTP10: return "Transfer-Encoding in an HTTP/1.0 request"
            case .unsupportedTransferCoding: return "a transfer coding other than chunked"
            case .unexpectedBody: return "a body in a GET, HEAD or DELETE request"
            case .unsupportedContentCoding: return "a content coding other than identity"
            case .invalidTarget: return "a request target that is not a path or an absolute URI"
            }
        }
    }

    private var hosts = 0
    /// The first `Host` value.
    public private(set) var host: String?
    /// The request target's length plus every field's name and value (and 4 bytes of framing
    /// each): what `limits.max_header_bytes` bounds.
    public private(set) var headerBytes: Int
    /// The first `Origin` value.
    public private(set) var origin: String?
    /// The first `Authorization` value, and how many there were (RFC 6750: one).
    public private(set) var authorization: String?
    public private(set) var authorizationCount = 0
    /// RFC 9440 `Client-Cert` (trusted only from trusted proxies), and how many came.
    public private(set) var clientCert: String?
    public private(set) var clientCertCount = 0
    /// The first `DPoP` proof (RFC 9449), and how many `DPoP` headers came.
    public private(set) var dpop: String?
    public private(set) var dpopCount = 0
    /// `MCP-Protocol-Version`.
    public private(set) var protocolVersion: String?
    /// 2026-07-28 `Mcp-Method` and `Mcp-Name`, which must agree with the body.
    public private(set) var mcpMethod: String?
    public private(set) var mcpName: String?
    public private(set) var contentType: String?
    /// The W3C `traceparent` field, when there is exactly one (``RequestTrace``).
    public private(set) var traceparent: String?
    public private(set) var traceparentCount = 0
    /// `Mcp-Session-Id`, for the audit record (digested there).
    public private(set) var sessionID: String?
    /// How many `Mcp-Session-Id` fields there were: more than one is refused.
    public private(set) var sessionIDCount = 0
    /// Every `X-Forwarded-For` and `Forwarded` value, in order (read only from trusted proxies).
    public private(set) var forwardedFor: [String] = []
    public private(set) var forwarded: [String] = []
    /// The field names the `Connection` headers list (hop-by-hop, RFC 9110 7.6.1).
    public private(set) var connection = ConnectionOptions()
    private var transferCodingIsOnlyChunked = true
    private var hasTransferEncoding = false
    private var contentCodingIsIdentity = true
    /// `Content-Length`, as the codec has already checked it (one value, digits only).
    public private(set) var contentLength: Int?
    /// `Expect: 100-continue` (RFC 9110 10.1.1).
    public private(set) var expectsContinue = false

    /// Whether a body follows the head (RFC 9112 6.3): chunked, or a non-zero length.
    public var hasBody: Bool { self.hasTransferEncoding || (self.contentLength ?? 0) > 0 }

    /// - Parameter target: the request target, counted towards ``headerBytes``.
    public init(target: String = "") {
        self.headerBytes = target.utf8.count
    }

    /// The fields the facts are made of, by name.
    enum Field: Sendable {
        case host, dpop, origin, mcpName, mcpMethod, clientCert, traceparent, sessionID, forwardedFor, forwarded, connection
        case contentType, authorization, protocolVersion, transferEncoding, contentLength, contentEncoding, expect

        /// Which one `name` is (ASCII case-insensitively), if any: one length switch, then one
        /// comparison for the few lengths that matter.
        static func named(_ name: UnsafeRawBufferPointer) -> Field? {
            func named(_ lowercase: StaticString) -> Bool { HTTP1Lines.equals(name, 0..<name.count, lowercase: lowercase) }
            switch name.count {
            case 4: return named("host") ? .host : named("dpop") ? .dpop : nil
            case 6: return named("origin") ? .origin : named("expect") ? .expect : nil
            case 8: return named("mcp-name") ? .mcpName : nil
            case 9: return named("forwarded") ? .forwarded : nil
            case 10: return named("mcp-method") ? .mcpMethod : named("connection") ? .connection : nil
            case 11: return named("client-cert") ? .clientCert : named("traceparent") ? .traceparent : nil
            case 12: return named("content-type") ? .contentType : nil
            case 13: return named("authorization") ? .authorization : nil
            case 14: return named("mcp-session-id") ? .sessionID : named("content-length") ? .contentLength : nil
            case 15: return named("x-forwarded-for") ? .forwardedFor : nil
            case 16: return named("content-encoding") ? .contentEncoding : nil
            case 17: return named("transfer-encoding") ? .transferEncoding : nil
            case 20: return named("mcp-protocol-version") ? .protocolVersion : nil
            default: return nil
            }
        }
    }

    /// Takes note of one header field of the request head.
    public mutating func observe(name: String, value: String) {
        self.headerBytes += name.utf8.count + value.utf8.count + 4
        var name = name
        guard let field = name.withUTF8({ Field.named(UnsafeRawBufferPointer($0)) }) else { return }
        self.observe(field, value: value)
    }

    /// The facts of a head the gateway's codec parsed: a String is made only of the fields the
    /// facts are made of (the same as ``observe(name:value:)`` over every field as Strings).
    ///
    /// `previous` is the facts of the request before on the same connection: a value equal to
    /// the one it had there (the token, the session id, the content type: a keep-alive client
    /// sends the same ones again and again) is that String again, not a new one.
    public init(_ head: HTTP1RequestReader.Head, reusing previous: RequestHeadFacts? = nil) {
        self.headerBytes = head.target.count
        head.bytes.withUnsafeReadableBytes { bytes in
            for field in head.fields {
                self.headerBytes += field.name.count + field.value.count + 4
                guard let kind = Field.named(UnsafeRawBufferPointer(rebasing: bytes[field.name])) else { continue }
                let value = UnsafeRawBufferPointer(rebasing: bytes[field.value])
                self.observe(kind, value: previous?.value(of: kind, equalTo: value) ?? String(decoding: value, as: UTF8.self))
            }
        }
    }

    /// This head's String for a single-valued field, if its bytes are `bytes`.
    private func value(of field: Field, equalTo bytes: UnsafeRawBufferPointer) -> String? {
        let known: String?
        switch field {
        case .host: known = self.host
        case .dpop: known = self.dpop
        case .origin: known = self.origin
        case .mcpName: known = self.mcpName
        case .mcpMethod: known = self.mcpMethod
        case .clientCert: known = self.clientCert
        case .traceparent: known = self.traceparent
        case .sessionID: known = self.sessionID
        case .contentType: known = self.contentType
        case .authorization: known = self.authorization
        case .protocolVersion: known = self.protocolVersion
        case .forwardedFor, .forwarded, .connection, .transferEncoding, .contentLength, .contentEncoding, .expect: return nil
        }
        guard var known, known.utf8.count == bytes.count else { return nil }
        return known.withUTF8 { sameBytes(UnsafeRawBufferPointer($0), bytes) } ? known : nil
    }

    private mutating func observe(_ field: Field, value: String) {
        switch field {
        case .host:
            self.hosts += 1
            if self.hosts == 1 { self.host = value }
        case .dpop:
            self.dpopCount += 1
            self.dpop = self.dpop ?? value
        case .origin:
            self.origin = self.origin ?? value
        case .mcpName:
            self.mcpName = self.mcpName ?? value
        case .mcpMethod:
            self.mcpMethod = self.mcpMethod ?? value
        case .clientCert:
            self.clientCertCount += 1
            self.clientCert = self.clientCert ?? value
        case .traceparent:
            self.traceparentCount += 1
            self.traceparent = self.traceparentCount == 1 ? value : nil
        case .sessionID:
            self.sessionIDCount += 1
            self.sessionID = self.sessionID ?? value
        case .forwardedFor:
            self.forwardedFor.append(value)
        case .forwarded:
            self.forwarded.append(value)
        case .connection:
            self.connection.add(value)
        case .contentType:
            self.contentType = self.contentType ?? value
        case .authorization:
            self.authorizationCount += 1
            self.authorization = self.authorization ?? value
        case .protocolVersion:
            self.protocolVersion = self.protocolVersion ?? value
        case .transferEncoding:
            // The gateway decodes no coding but chunked: anything but a lone "chunked" is refused.
            let onlyChunked = value.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
                .elementsEqual(["chunked"]) { $0.equalsIgnoringASCIICase($1) }
            self.transferCodingIsOnlyChunked = self.transferCodingIsOnlyChunked && !self.hasTransferEncoding && onlyChunked
            self.hasTransferEncoding = true
        case .contentLength:
            self.contentLength = Int(value[...].trimmingSpaces())
        case .contentEncoding:
            // RFC 9110 8.4: a list of codings; only an empty list or identity leaves the body
            // as the gateway reads it.
            let identity = value.split(separator: ",").allSatisfy {
                let coding = $0.trimmingSpaces()
                return coding.isEmpty || coding.equalsIgnoringASCIICase("identity")
            }
            self.contentCodingIsIdentity = self.contentCodingIsIdentity && identity
        case .expect:
            self.expectsContinue = self.expectsContinue || value[...].trimmingSpaces().equalsIgnoringASCIICase("100-continue")
        }
    }

    /// The first rule the observed head of a `method` request breaks, if any.
    public func violation(method: String, isHTTP11OrLater: Bool) -> Violation? {
        if self.hosts > 1 { return .multipleHosts }
        if let host = self.host, !Self.isValidHost(host) { return .invalidHost }
        if self.hosts == 0, isHTTP11OrLater { return .missingHost }
        if self.hasTransferEncoding {
            if !isHTTP11OrLater { return .transferEncodingInHTTP10 }
            if !self.transferCodingIsOnlyChunked { return .unsupportedTransferCoding }
        }
        if self.hasBody, method == "GET" || method == "HEAD" || method == "DELETE" { return .unexpectedBody }
        if !self.contentCodingIsIdentity { return .unsupportedContentCoding }
        return nil
    }

    /// RFC 9110 7.2: `uri-host [ ":" port ]`, where uri-host is an IP literal in brackets or a
    /// reg-name (unreserved, percent-encoded and sub-delims characters; IPv4 addresses are
    /// reg-names lexically). An empty value is allowed (a target without authority).
    public static func isValidHost(_ value: String) -> Bool {
        Self.isValidHost(bytes: Substring(value).utf8[...])
    }

    /// The same over bytes (a range of the head the gateway's codec parsed).
    public static func isValidHost<Bytes: Collection<UInt8>>(bytes value: Bytes) -> Bool where Bytes.SubSequence == Bytes {
        var bytes = value
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let literal = bytes[bytes.index(after: bytes.startIndex)..<close]
            guard !literal.isEmpty, literal.allSatisfy({ isUnreserved($0) || isSubDelimiter($0) || $0 == UInt8(ascii: ":") }) else { return false }
            bytes = bytes[bytes.index(after: close)...]
        } else {
            let end = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.endIndex
            var name = bytes[..<end]
            while let byte = name.first {
                if byte == UInt8(ascii: "%") {
                    let digits = name.dropFirst().prefix(2)
                    guard digits.count == 2, digits.allSatisfy(isHexDigit) else { return false }
                    name = name.dropFirst(3)
                } else {
                    guard isUnreserved(byte) || isSubDelimiter(byte) else { return false }
                    name = name.dropFirst()
                }
            }
            bytes = bytes[end...]
        }
        guard let colon = bytes.first else { return true }
        // port = *DIGIT
        return colon == UInt8(ascii: ":") && bytes.dropFirst().allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// The origin-form (path and query) of a request target: an absolute-form target
    /// (`http://host/path?query`, RFC 9112 3.2.2, which a server must accept) loses its scheme
    /// and authority; an origin-form one is returned as it is. Nil for anything else.
    public static func originForm(of target: String) -> Substring? {
        if target.utf8.first == UInt8(ascii: "/") { return target[...] }
        let schemeEnd: String.Index
        if target.hasPrefixIgnoringASCIICase("http://") {
            schemeEnd = target.utf8.index(target.startIndex, offsetBy: 7)
        } else if target.hasPrefixIgnoringASCIICase("https://") {
            schemeEnd = target.utf8.index(target.startIndex, offsetBy: 8)
        } else {
            return nil
        }
        let rest = target[schemeEnd...]
        guard let pathStart = rest.utf8.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) else { return "/" }
        guard rest[pathStart] == "/" else { return "/" + rest[pathStart...] }
        return rest[pathStart...]
    }

    /// RFC 3986 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~" (also what ``ResourceURI`` decodes).
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func isSubDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"): return true
        default: return false
        }
    }
}
