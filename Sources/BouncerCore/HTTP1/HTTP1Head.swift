/// The values the gateway's HTTP/1.1 codec hands out (issue 28): a head is byte ranges into the
/// buffer it was read from (offsets from the first byte the parser was given), never Strings;
/// a String is made only where a decision needs one.

/// A field line as two ranges: the name, and the value without its surrounding whitespace.
public struct HTTP1Field: Sendable, Hashable {
    public var name: Range<Int>
    public var value: Range<Int>

    public init(name: Range<Int>, value: Range<Int>) {
        self.name = name
        self.value = value
    }
}

public enum HTTP1Version: Sendable, Hashable {
    case http10
    case http11

    public var isHTTP11: Bool { self == .http11 }
}

/// How a message's body is delimited (RFC 9112 6.3).
public enum HTTP1Framing: Sendable, Hashable {
    /// No body: a request with neither Content-Length nor Transfer-Encoding, a response to
    /// HEAD, a 1xx, 204 or 304.
    case none
    case length(Int)
    case chunked
    /// A response without either field: the body ends when the connection does.
    case untilClose
}

/// What the codec gathers while it reads a head's fields, in the same pass: the framing fields
/// and the connection's fate. Field values the gateway reads later are found by name in the
/// field list.
public struct HTTP1HeadFacts: Sendable, Hashable {
    public var contentLength: Int?
    public var chunked = false
    public var transferEncodings = 0
    /// Host field lines, and the first one's value.
    public var hosts = 0
    public var host: Range<Int>?
    /// `Connection` tokens seen.
    public var connectionClose = false
    public var connectionKeepAlive = false
    public var connectionUpgrade = false
    /// `Expect: 100-continue`.
    public var expectContinue = false
    public var upgrade = false
    /// What the enforcement stages read of a request's fields (``RequestHeadFacts`` gathers the
    /// same from Strings today): first values as ranges, and how many of each came.
    public var request = HTTP1RequestFields()

    public init() {}
}

/// A request's fields the gateway decides on, gathered while the head is parsed: the first
/// value of each as a range (none copied), and the counts the rules need (one Authorization,
/// one DPoP proof, one session id, exactly one traceparent to use it).
public struct HTTP1RequestFields: Sendable, Hashable {
    public var origin: Range<Int>?
    public var authorization: Range<Int>?
    public var authorizationCount = 0
    public var clientCert: Range<Int>?
    public var clientCertCount = 0
    public var dpop: Range<Int>?
    public var dpopCount = 0
    public var protocolVersion: Range<Int>?
    public var mcpMethod: Range<Int>?
    public var mcpName: Range<Int>?
    public var contentType: Range<Int>?
    /// The `traceparent` value when there is exactly one.
    public var traceparent: Range<Int>?
    public var traceparentCount = 0
    public var sessionID: Range<Int>?
    public var sessionIDCount = 0
    /// `X-Forwarded-For` and `Forwarded` lines (read, from trusted proxies only, from the
    /// field list).
    public var forwardedForCount = 0
    public var forwardedCount = 0
    /// Every `Content-Encoding` lists only `identity` (or nothing).
    public var contentCodingIsIdentity = true

    public init() {}
}

/// Why a head or body was refused. Every rule is RFC 9112's unless the case says it is the
/// gateway's own stricter one (``HTTP1Strictness`` lists those with their reasons).
public enum HTTP1ParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The head did not end within the limit.
    case headTooLarge(limit: Int)
    case tooManyFields(limit: Int)
    /// A line that ends in LF without CR, or a CR not followed by LF.
    case bareLineEnding
    /// A method the gateway does not take (not one of the registered methods a proxy of MCP
    /// servers needs): 501.
    case unsupportedMethod
    case invalidRequestLine
    case invalidTarget
    /// An HTTP version other than 1.0 and 1.1 (HTTP/0.9, 2, garbage): 505.
    case unsupportedVersion
    case invalidFieldName
    /// Whitespace between a field name and its colon (RFC 9112 5.1: MUST be rejected).
    case whitespaceBeforeColon
    /// A field line that starts with whitespace (RFC 9112 5.2: obs-fold, rejected).
    case obsoleteLineFolding
    /// A control character (NUL, CR, LF, DEL...) in a field value.
    case invalidFieldValue
    case invalidContentLength
    /// Two Content-Length field lines, or a list as its value.
    case multipleContentLengths
    /// Both Content-Length and Transfer-Encoding (RFC 9112 6.3: a smuggling vector).
    case contentLengthAndTransferEncoding
    /// Transfer-Encoding in an HTTP/1.0 message (RFC 9112 6.1).
    case transferEncodingInHTTP10
    /// A transfer coding other than exactly `chunked`: 501.
    case unsupportedTransferCoding
    case invalidStatusLine
    case invalidChunkSize
    case chunkExtensionTooLong(limit: Int)
    case invalidChunkExtension
    /// Chunk data not followed by CRLF.
    case invalidChunkTerminator
    /// The connection ended inside a body framed by length or chunks.
    case truncatedBody
    case trailersTooLarge(limit: Int)
    /// A trailer field that frames, routes or authenticates the message (RFC 9110 6.5.1: those
    /// cannot be processed after the content): Content-Length, Transfer-Encoding, Host,
    /// Connection, Upgrade, Authorization.
    case forbiddenTrailerField
    /// Bytes after a 101 (Switching Protocols) response: they are not HTTP/1.1 any more, and
    /// the gateway asks for no upgrade (RFC 9110 15.2.2, 7.8).
    case bytesAfterProtocolSwitch
    /// An interim (1xx) response in HTTP/1.0: none is sent to the gateway, which speaks
    /// HTTP/1.1 upstream, by a server that speaks 1.0 (RFC 9110 15.2).
    case interimInHTTP10

    /// The status a client is answered with.
    public var status: Int {
        switch self {
        case .headTooLarge, .tooManyFields: 431
        case .unsupportedMethod, .unsupportedTransferCoding: 501
        case .unsupportedVersion: 505
        default: 400
        }
    }

    public var description: String {
        switch self {
        case .headTooLarge(let limit): "a head larger than \(limit) bytes"
        case .tooManyFields(let limit): "more than \(limit) header fields"
        case .bareLineEnding: "a line not ended by CRLF"
        case .unsupportedMethod: "an unsupported method"
        case .invalidRequestLine: "a malformed request line"
        case .invalidTarget: "a malformed request target"
        case .unsupportedVersion: "an HTTP version other than 1.0 and 1.1"
        case .invalidFieldName: "a malformed header field name"
        case .whitespaceBeforeColon: "whitespace between a header field name and its colon"
        case .obsoleteLineFolding: "a folded header line (obs-fold)"
        case .invalidFieldValue: "a control character in a header field value"
        case .invalidContentLength: "a Content-Length that is not a number"
        case .multipleContentLengths: "more than one Content-Length"
        case .contentLengthAndTransferEncoding: "both Content-Length and Transfer-Encoding"
        case .transferEncodingInHTTP10: "Transfer-Encoding in an HTTP/1.0 message"
        case .unsupportedTransferCoding: "a transfer coding other than chunked"
        case .invalidStatusLine: "a malformed status line"
        case .invalidChunkSize: "a malformed chunk size"
        case .chunkExtensionTooLong(let limit): "a chunk extension longer than \(limit) bytes"
        case .invalidChunkExtension: "a malformed chunk extension"
        case .invalidChunkTerminator: "chunk data not followed by CRLF"
        case .truncatedBody: "the connection ended inside the body"
        case .trailersTooLarge(let limit): "trailers larger than \(limit) bytes"
        case .forbiddenTrailerField: "a framing, routing or credential field in the trailers"
        case .bytesAfterProtocolSwitch: "bytes after a 101 Switching Protocols response"
        case .interimInHTTP10: "an interim (1xx) response in HTTP/1.0"
        }
    }
}

/// Where a parse of a head stands after the bytes it was given.
public enum HTTP1HeadProgress: Sendable, Hashable {
    /// More bytes are needed; give the same bytes and what follows them again.
    case incomplete
    /// The head is the first `length` bytes.
    case complete(length: Int)
    case failed(HTTP1ParseError)
}
