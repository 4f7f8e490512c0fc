import NIOCore

/// What a reader hands out: a head, body bytes in order (the chunked coding's framing taken
/// off), the end of the message (a trailer section read, checked and dropped).
public enum HTTP1MessageEvent<Head: Sendable>: Sendable {
    case head(Head)
    case body(ByteBuffer)
    case end
}

/// What the request and response readers share (``HTTP1RequestReader``,
/// ``HTTP1ResponseReader``): the bytes read and not yet handed out, the body being read, the
/// last trailer section, and the first refusal, which is final.
struct HTTP1MessageStream: Sendable {
    /// Where reading stands before a head is parsed.
    enum Ahead<Head: Sendable> {
        case event(HTTP1MessageEvent<Head>)
        case needMore
        /// Bytes of a head are pending: the reader parses them.
        case head
    }

    /// The body's next event, a need for more bytes, or a head to parse; the refusal again
    /// once there was one.
    mutating func ahead<Head: Sendable>() throws(HTTP1ParseError) -> Ahead<Head> {
        if let refusal = self.refusal { throw refusal }
        if self.isReadingBody {
            switch try self.nextOfBody() {
            case .body(let bytes): return .event(.body(bytes))
            case .end: return .event(.end)
            case nil: return .needMore
            }
        }
        return self.pending.readableBytes > 0 ? .head : .needMore
    }

    enum BodyEvent: Sendable {
        case body(ByteBuffer)
        case end
    }

    /// Bytes read and not yet handed out: a head still arriving, or what follows the last event.
    private(set) var pending = ByteBuffer()
    /// The body being read, between a head and its end.
    private var body: HTTP1BodyReader?
    /// The end of a body with no bytes (``HTTP1Framing/none``, a zero length) is still to be told.
    private var endPending = false
    private(set) var refusal: HTTP1ParseError?
    /// The last message's trailer section, when it had one.
    private(set) var trailers: (bytes: [UInt8], fields: [HTTP1Field])?
    let maxChunkExtensionBytes: Int
    let maxTrailerBytes: Int

    init(maxChunkExtensionBytes: Int, maxTrailerBytes: Int) {
        self.maxChunkExtensionBytes = maxChunkExtensionBytes
        self.maxTrailerBytes = maxTrailerBytes
    }

    /// A body (or the end of an empty one) is still to be read or told.
    var isReadingBody: Bool { self.body != nil || self.endPending }

    var isInsideMessage: Bool { self.isReadingBody || self.pending.readableBytes > 0 }

    mutating func append(_ bytes: ByteBuffer) {
        guard self.refusal == nil else { return }
        if self.pending.readableBytes == 0 {
            self.pending = bytes
        } else {
            var bytes = bytes
            self.pending.writeBuffer(&bytes)
        }
    }

    /// A head of `length` bytes was parsed: its bytes, and its body to be read next.
    mutating func headParsed(length: Int, framing: HTTP1Framing) -> ByteBuffer {
        self.trailers = nil
        let bytes = self.pending.readSlice(length: length)!
        self.releaseIfEmpty()
        let body = HTTP1BodyReader(framing, maxChunkExtensionBytes: self.maxChunkExtensionBytes, maxTrailerBytes: self.maxTrailerBytes)
        if body.isDone { self.endPending = true } else { self.body = body }
        return bytes
    }

    /// An interim (1xx) head of `length` bytes was parsed: its bytes; no body follows it.
    mutating func interimParsed(length: Int) -> ByteBuffer {
        defer { self.releaseIfEmpty() }
        return self.pending.readSlice(length: length)!
    }

    /// Every byte read was handed out: the read's buffer is let go (an idle stream, a
    /// keep-alive connection between requests, holds none).
    private mutating func releaseIfEmpty() {
        if self.pending.readableBytes == 0 { self.pending = ByteBuffer() }
    }

    /// The next event of the body being read (``isReadingBody``), or nil when more bytes are needed.
    mutating func nextOfBody() throws(HTTP1ParseError) -> BodyEvent? {
        if self.endPending {
            self.endPending = false
            return .end
        }
        if self.body!.isDone {
            self.body = nil
            return .end
        }
        guard self.pending.readableBytes > 0 else { return nil }
        switch Self.read(&self.body!, self.pending) {
        case .failure(let error):
            throw self.refuse(error)
        case .success(let (event, next)):
            switch event {
            case .data(let range):
                let slice = self.pending.getSlice(at: self.pending.readerIndex + range.lowerBound, length: range.count)!
                self.pending.moveReaderIndex(forwardBy: next)
                self.releaseIfEmpty()
                return .body(slice)
            case .end:
                self.pending.moveReaderIndex(forwardBy: next)
                self.releaseIfEmpty()
                if !self.body!.trailers.isEmpty { self.trailers = (self.body!.trailerBytes, self.body!.trailers) }
                self.body = nil
                return .end
            case .needMore:
                self.pending.moveReaderIndex(forwardBy: next)
                self.releaseIfEmpty()
                return nil
            }
        }
    }

    /// The connection ended: whether that ends a body framed by it (a response without a
    /// length), or the error of a message cut short inside its body.
    mutating func connectionClosed() throws(HTTP1ParseError) -> Bool {
        guard self.refusal == nil, let body = self.body else { return false }
        if let error = body.connectionClosed() { throw self.refuse(error) }
        self.body = nil
        return true
    }

    mutating func refuse(_ error: HTTP1ParseError) -> HTTP1ParseError {
        self.refusal = error
        self.pending = ByteBuffer()
        self.body = nil
        self.endPending = false
        return error
    }

    private static func read(_ body: inout HTTP1BodyReader, _ bytes: ByteBuffer) -> Result<(event: HTTP1BodyReader.Event, next: Int), HTTP1ParseError> {
        bytes.withUnsafeReadableBytes { body.read($0, from: 0) }
    }
}
