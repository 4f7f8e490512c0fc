import NIOCore

/// How the body of a response the gateway inspects is read, as a value: each read goes in,
/// and what to relay or inspect comes out. The rules, tested without channels:
///
/// - a body nothing needs to read is relayed as it comes;
/// - an `application/json` body is held whole (up to `limit`) before its head goes out, with
///   the length of what the client gets; past the limit nothing of it goes out;
/// - an event stream goes out event by event: each complete event is handed out at once (the
///   bytes of one not complete yet wait for the next read), and an event over the limit ends
///   the stream after the events that ended before it;
/// - at the end, a held JSON body is handed out whole; an event the stream ended in the middle
///   of is not an event, and is dropped.
public struct InspectedBody: Sendable {
    enum State: Sendable {
        /// Relayed as it comes.
        case passThrough
        /// An `application/json` body being held, up to `limit` bytes.
        case json(ByteBuffer, limit: Int)
        /// An event stream; `held` has the bytes of the event not complete yet.
        case events(ServerSentEventSplitter, held: ByteBuffer)
        /// Ended, or given up on: nothing more is read.
        case done
    }

    private var state: State

    /// A body relayed as it comes.
    public init() {
        self.state = .passThrough
    }

    /// An `application/json` body, held whole up to `limit` bytes.
    public static func json(limit: Int) -> InspectedBody {
        var body = InspectedBody()
        body.state = .json(ByteBuffer(), limit: limit)
        return body
    }

    /// A `text/event-stream` body, read event by event; no event over `maxEventBytes`.
    public static func events(maxEventBytes: Int) -> InspectedBody {
        var body = InspectedBody()
        body.state = .events(ServerSentEventSplitter(maxEventBytes: maxEventBytes), held: ByteBuffer())
        return body
    }

    /// Whether the body is relayed as it comes.
    public var isPassThrough: Bool {
        if case .passThrough = self.state { return true }
        return false
    }

    /// Whether the body is held whole until its end.
    public var isHeld: Bool {
        if case .json = self.state { return true }
        return false
    }

    /// A piece of the body to pass on, in order.
    public enum Piece: Sendable {
        /// Bytes to relay as they came (no whole event in them to look at).
        case bytes(ByteBuffer)
        /// One whole event, blank line included: inspect it, then relay it (or not).
        case event(ByteBuffer)
    }

    /// What a read came to.
    public enum Received: Sendable, Equatable {
        /// Its pieces were handed out (none, when it only continued an event).
        case relayed
        /// A JSON body grew; nothing goes out before its end.
        case held
        /// The message (the JSON body, or the stream's next event) is over `limit`; the
        /// events that ended before it were handed out.
        case tooLarge(limit: Int)
        /// `each` asked to stop: the rest of the read was not handed out.
        case stopped
    }

    /// Takes one read of the body; `each` gets the pieces to pass on and returns false to stop.
    public mutating func receive(_ buffer: ByteBuffer, _ each: (Piece) -> Bool) -> Received {
        switch self.state {
        case .passThrough:
            return each(.bytes(buffer)) ? .relayed : .stopped
        case .done:
            return .stopped
        case .json(var body, let limit):
            self.state = .done  // the buffer stays uniquely referenced while it grows
            guard body.readableBytes + buffer.readableBytes <= limit else { return .tooLarge(limit: limit) }
            if body.readableBytes == 0 {
                // Most bodies come in one read: kept as it is, not copied.
                body = buffer
            } else {
                var buffer = buffer
                body.writeBuffer(&buffer)
            }
            self.state = .json(body, limit: limit)
            return .held
        case .events(var splitter, var held):
            self.state = .done
            let received = Self.split(buffer, splitter: &splitter, held: &held, each)
            if case .relayed = received { self.state = .events(splitter, held: held) }
            return received
        }
    }

    /// The body ended: a held JSON body, whole; nil for anything else.
    public mutating func end() -> ByteBuffer? {
        defer { self.state = .done }
        if case .json(let body, _) = self.state { return body }
        return nil
    }

    private static func split(_ buffer: ByteBuffer, splitter: inout ServerSentEventSplitter, held: inout ByteBuffer, _ each: (Piece) -> Bool) -> Received {
        var ends: [(piece: ServerSentEventSplitter.Piece, end: Int)] = []
        var tooLarge = false
        do {
            try buffer.withUnsafeReadableBytes { bytes in
                try splitter.scan(bytes) { piece, end in ends.append((piece, end)) }
            }
        } catch {
            // The events that ended before it still go out.
            tooLarge = true
        }
        var start = buffer.readerIndex
        for (piece, end) in ends {
            var slice = buffer.getSlice(at: start, length: buffer.readerIndex + end - start)!
            start = buffer.readerIndex + end
            guard piece == .eventEnd else {
                guard each(.bytes(slice)) else { return .stopped }
                continue
            }
            if held.readableBytes > 0 {
                held.writeBuffer(&slice)
                slice = held
                held = ByteBuffer()
            }
            guard each(.event(slice)) else { return .stopped }
        }
        if tooLarge { return .tooLarge(limit: splitter.maxEventBytes) }
        if var rest = buffer.getSlice(at: start, length: buffer.writerIndex - start), rest.readableBytes > 0 {
            held.writeBuffer(&rest)
        }
        return .relayed
    }
}
