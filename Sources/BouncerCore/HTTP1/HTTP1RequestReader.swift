import NIOCore

/// A client connection's byte stream read as requests with the gateway's own codec (issue 28):
/// heads by ``HTTP1RequestParser``, bodies by ``HTTP1BodyReader``, one message after the
/// other (pipelined ones included). It is a value the connection's handler owns: no channel
/// handler of its own, nothing crosses the pipeline between reading and deciding.
///
/// Give it each read's bytes (``append(_:)``) and take events (``next()``) until it needs more.
/// A head's bytes are kept until its empty line arrives (the parser resumes where it stopped);
/// body bytes are handed out as slices of the bytes read (no copy). The first refusal is final:
/// every later call throws it again, and nothing after it is read.
public struct HTTP1RequestReader: Sendable {
    /// A request head, as ranges into its own bytes (``bytes``, from its first byte).
    public struct Head: Sendable {
        /// The head exactly, its request line through the empty line.
        public var bytes: ByteBuffer
        public var method: HTTP1Method
        public var target: Range<Int>
        public var version: HTTP1Version
        public var fields: [HTTP1Field]
        public var facts: HTTP1HeadFacts
        public var framing: HTTP1Framing

        /// The bytes of `range`, as text (a String is made only where something needs one).
        public func string(_ range: Range<Int>) -> String {
            self.bytes.withUnsafeReadableBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[range]), as: UTF8.self) }
        }

        /// The first rule of ``RequestHeadFacts/Violation`` the head breaks that its parse did
        /// not refuse (Host, a body where none belongs, a content coding). Judged on demand:
        /// the gateway judges the same rules once, on ``RequestHeadFacts``.
        public var violation: RequestHeadFacts.Violation? {
            self.bytes.withUnsafeReadableBytes { HTTP1RequestParser.violation(facts: self.facts, method: self.method, version: self.version, $0) }
        }

        /// Whether the connection outlives the message (RFC 9112 9.3): HTTP/1.1 unless
        /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
        public var isKeepAlive: Bool {
            !self.facts.connectionClose && (self.version == .http11 || self.facts.connectionKeepAlive)
        }

        /// The elements of every field named `lowercase` (a comma-separated list, RFC 9110
        /// 5.6.1: trimmed, empty ones skipped), in order.
        public func listElements(named lowercase: StaticString) -> [String] {
            self.bytes.withUnsafeReadableBytes { HTTP1Lines.elements(named: lowercase, of: self.fields, in: $0) }
        }
    }

    public typealias Event = HTTP1MessageEvent<Head>

    private var stream: HTTP1MessageStream
    private var parser: HTTP1RequestParser
    /// The parser holds the last head: reset it before the next.
    private var parsed = false

    /// - Parameters:
    ///   - maxHeadBytes: the most bytes a head (request line, fields, empty line) may have.
    ///   - maxFields: the most field lines a head may have.
    public init(maxHeadBytes: Int, maxFields: Int, maxChunkExtensionBytes: Int = 4096, maxTrailerBytes: Int = 16 * 1024) {
        self.parser = HTTP1RequestParser(maxHeadBytes: maxHeadBytes, maxFields: maxFields)
        self.stream = HTTP1MessageStream(maxChunkExtensionBytes: maxChunkExtensionBytes, maxTrailerBytes: maxTrailerBytes)
    }

    /// Bytes held: a head still arriving, or read past the last event.
    public var bufferedBytes: Int { self.stream.pending.readableBytes }

    /// Whether a message is under way (its head started arriving, or its body is being read).
    public var isInsideMessage: Bool { self.stream.isInsideMessage }

    /// The last message's trailer section, when it had one: its bytes and fields as ranges
    /// into them (the gateway drops trailers; they are kept for whoever reads them).
    public var trailers: (bytes: [UInt8], fields: [HTTP1Field])? { self.stream.trailers }

    /// Takes a read's bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        self.stream.append(bytes)
    }

    /// The next event the bytes read so far make, or nil when more are needed.
    public mutating func next() throws(HTTP1ParseError) -> Event? {
        switch try self.stream.ahead() as HTTP1MessageStream.Ahead<Head> {
        case .event(let event): return event
        case .needMore: return nil
        case .head: break
        }
        if self.parsed {
            // Reset now rather than when the last head was handed out: by now that head's
            // field list is usually gone, and the parser's is reused without a copy.
            self.parser.reset()
            self.parsed = false
        }
        switch Self.parse(&self.parser, self.stream.pending) {
        case .incomplete:
            return nil
        case .failed(let error):
            throw self.stream.refuse(error)
        case .complete(let length):
            let bytes = self.stream.headParsed(length: length, framing: self.parser.framing)
            self.parsed = true
            return .head(Head(
                bytes: bytes, method: self.parser.method, target: self.parser.target, version: self.parser.version,
                fields: self.parser.fields, facts: self.parser.facts, framing: self.parser.framing
            ))
        }
    }

    /// The connection ended: a message cut short inside its body is an error (one cut inside
    /// its head is not: the client just left).
    public func connectionClosed() -> HTTP1ParseError? {
        var stream = self.stream
        do {
            _ = try stream.connectionClosed()
            return nil
        } catch {
            return error
        }
    }

    private static func parse(_ parser: inout HTTP1RequestParser, _ bytes: ByteBuffer) -> HTTP1HeadProgress {
        bytes.withUnsafeReadableBytes { parser.parse($0) }
    }
}
