import NIOCore

/// An upstream connection's byte stream read as responses with the gateway's own codec (issue
/// 28): heads by ``HTTP1ResponseParser``, bodies by ``HTTP1BodyReader``, what
/// ``HTTP1RequestReader`` is to clients. Interim (1xx) heads come before the final one and
/// have no body and no end. A body framed by the connection's end ends when it does
/// (``connectionClosed()``). After a 101 (Switching Protocols) the bytes are no longer HTTP/1.1:
/// any that follow are refused.
///
/// Before each request is written, ``requestMethod`` is set to its method: the response to a
/// HEAD has no body, whatever its fields say.
public struct HTTP1ResponseReader: Sendable {
    /// A response head, as ranges into its own bytes (``bytes``, from its first byte).
    public struct Head: Sendable {
        /// The head exactly, its status line through the empty line.
        public var bytes: ByteBuffer
        public var version: HTTP1Version
        public var status: Int
        public var reason: Range<Int>
        public var fields: [HTTP1Field]
        public var facts: HTTP1HeadFacts
        public var framing: HTTP1Framing

        /// An interim response (1xx): another head follows.
        public var isInterim: Bool { self.status < 200 }

        /// Whether the connection outlives the response (RFC 9112 9.3): HTTP/1.1 unless
        /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
        public var isKeepAlive: Bool {
            !self.facts.connectionClose && (self.version == .http11 || self.facts.connectionKeepAlive)
        }

        /// The bytes of `range`, as text.
        public func string(_ range: Range<Int>) -> String {
            self.bytes.withUnsafeReadableBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[range]), as: UTF8.self) }
        }
    }

    public typealias Event = HTTP1MessageEvent<Head>

    /// The method of the request whose response is read next.
    public var requestMethod: HTTP1Method = .GET
    private var stream: HTTP1MessageStream
    private var parser: HTTP1ResponseParser
    private var parsed = false
    /// A 101 was read: nothing after it is HTTP/1.1.
    private var switched = false

    public init(maxHeadBytes: Int = 64 * 1024, maxFields: Int = 256, maxChunkExtensionBytes: Int = 4096, maxTrailerBytes: Int = 16 * 1024) {
        self.parser = HTTP1ResponseParser(maxHeadBytes: maxHeadBytes, maxFields: maxFields)
        self.stream = HTTP1MessageStream(maxChunkExtensionBytes: maxChunkExtensionBytes, maxTrailerBytes: maxTrailerBytes)
    }

    /// Whether a response is under way (its head started arriving, or its body is being read).
    public var isInsideMessage: Bool { self.stream.isInsideMessage }

    /// The last response's trailer section, when it had one.
    public var trailers: (bytes: [UInt8], fields: [HTTP1Field])? { self.stream.trailers }

    public mutating func append(_ bytes: ByteBuffer) {
        self.stream.append(bytes)
    }

    /// The next event the bytes read so far make, or nil when more are needed. The first
    /// refusal is final.
    public mutating func next() throws(HTTP1ParseError) -> Event? {
        switch try self.stream.ahead() as HTTP1MessageStream.Ahead<Head> {
        case .event(let event): return event
        case .needMore: return nil
        case .head: break
        }
        if self.switched { throw self.stream.refuse(.bytesAfterProtocolSwitch) }
        if self.parsed {
            self.parser.reset()
            self.parsed = false
        }
        switch Self.parse(&self.parser, self.stream.pending, self.requestMethod) {
        case .incomplete:
            return nil
        case .failed(let error):
            throw self.stream.refuse(error)
        case .complete(let length):
            let interim = self.parser.status < 200
            self.switched = self.parser.status == 101
            let bytes = interim ? self.stream.interimParsed(length: length) : self.stream.headParsed(length: length, framing: self.parser.framing)
            self.parsed = true
            return .head(Head(
                bytes: bytes, version: self.parser.version, status: self.parser.status, reason: self.parser.reason,
                fields: self.parser.fields, facts: self.parser.facts, framing: self.parser.framing
            ))
        }
    }

    /// The connection ended: true when that ended a body framed by it (tell its end), false
    /// when no body was being read; throws for a response cut short inside its body.
    public mutating func connectionClosed() throws(HTTP1ParseError) -> Bool {
        try self.stream.connectionClosed()
    }

    private static func parse(_ parser: inout HTTP1ResponseParser, _ bytes: ByteBuffer, _ method: HTTP1Method) -> HTTP1HeadProgress {
        bytes.withUnsafeReadableBytes { parser.parse($0, requestMethod: method) }
    }
}
