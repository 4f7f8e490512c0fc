/// A message body's framing as a state machine over bytes (RFC 9112 6, 7): it hands out the
/// body as ranges of the bytes it is given (no copy), through Content-Length, chunked coding
/// (chunk sizes in hex, extensions bounded and checked, each chunk's CRLF, the trailer section)
/// or the connection's end.
///
/// The caller gives it bytes and an offset and acts on the event: body bytes, the end of the
/// body, or a request for more. Bytes after the end belong to the next message.
public struct HTTP1BodyReader: Sendable {
    public enum Event: Sendable, Hashable {
        /// Body bytes: this range of the bytes given.
        case data(Range<Int>)
        /// The body is whole (for chunked: after the trailer section's empty line).
        case end
        /// Every byte given was taken; more are needed.
        case needMore
    }

    enum State: Sendable, Hashable {
        case length(remaining: Int)
        case untilClose
        /// Reading a chunk's size: its value so far and its digit count.
        case size(value: Int, digits: Int)
        /// Reading a chunk extension, `count` bytes so far, at `phase` of its grammar.
        case chunkExtension(value: Int, count: Int, phase: ExtensionPhase)
        /// After the size line's CR.
        case sizeLineFeed(value: Int)
        case chunkData(remaining: Int)
        case chunkDataCarriageReturn
        case chunkDataLineFeed
        case trailers
        case done
    }

    /// RFC 9112 7.1.1, without the optional whitespace (``HTTP1Strictness``):
    /// `*( ";" token [ "=" ( token / quoted-string ) ] )`.
    enum ExtensionPhase: UInt8, Sendable, Hashable {
        case nameStart, name, valueStart, tokenValue, quoted, quotedEscape, afterQuoted
    }

    private var state: State
    public let maxChunkExtensionBytes: Int
    public let maxTrailerBytes: Int
    /// The trailer section's bytes as they came (rare and small: copied, bounded), and its
    /// fields as ranges into them.
    public private(set) var trailerBytes: [UInt8] = []
    public private(set) var trailers: [HTTP1Field] = []
    private var trailerLineStart = 0

    /// Hex digits a chunk size may have: 15 keep it below `Int.max`.
    static let maxSizeDigits = 15

    public init(_ framing: HTTP1Framing, maxChunkExtensionBytes: Int = 4096, maxTrailerBytes: Int = 16 * 1024) {
        switch framing {
        case .none: self.state = .done
        case .length(let length): self.state = length == 0 ? .done : .length(remaining: length)
        case .chunked: self.state = .size(value: 0, digits: 0)
        case .untilClose: self.state = .untilClose
        }
        self.maxChunkExtensionBytes = maxChunkExtensionBytes
        self.maxTrailerBytes = maxTrailerBytes
    }

    public var isDone: Bool { self.state == .done }

    /// The connection ended: fine for a body framed by the end, else a truncated message.
    public func connectionClosed() -> HTTP1ParseError? {
        switch self.state {
        case .untilClose, .done: nil
        default: .truncatedBody
        }
    }

    /// Reads from `start`: the next event, and where reading goes on.
    public mutating func read(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Result<(event: Event, next: Int), HTTP1ParseError> {
        var index = start
        while true {
            switch self.state {
            case .done:
                return .success((.end, index))
            case .untilClose:
                guard index < bytes.count else { return .success((.needMore, index)) }
                return .success((.data(index..<bytes.count), bytes.count))
            case .length(let remaining):
                guard index < bytes.count else { return .success((.needMore, index)) }
                let count = min(remaining, bytes.count - index)
                self.state = remaining == count ? .done : .length(remaining: remaining - count)
                return .success((.data(index..<(index + count)), index + count))
            case .chunkData(let remaining):
                guard index < bytes.count else { return .success((.needMore, index)) }
                let count = min(remaining, bytes.count - index)
                self.state = remaining == count ? .chunkDataCarriageReturn : .chunkData(remaining: remaining - count)
                return .success((.data(index..<(index + count)), index + count))
            case .trailers:
                return self.readTrailers(bytes, from: index)
            default:
                guard index < bytes.count else { return .success((.needMore, index)) }
                if let error = self.step(bytes[index]) { return .failure(error) }
                index += 1
            }
        }
    }

    /// One byte of a chunk's framing (its size line, the CRLF after its data).
    private mutating func step(_ byte: UInt8) -> HTTP1ParseError? {
        switch self.state {
        case .size(let value, let digits):
            if let digit = Self.hexValue(byte) {
                guard digits < Self.maxSizeDigits else { return .invalidChunkSize }
                self.state = .size(value: value << 4 | digit, digits: digits + 1)
                return nil
            }
            guard digits > 0 else { return .invalidChunkSize }
            switch byte {
            case UInt8(ascii: ";"): self.state = .chunkExtension(value: value, count: 1, phase: .nameStart)
            case 0x0D: self.state = .sizeLineFeed(value: value)
            default: return .invalidChunkSize
            }
        case .chunkExtension(let value, let count, let phase):
            guard let next = Self.extensionStep(phase, byte) else { return .invalidChunkExtension }
            guard let next else {
                self.state = .sizeLineFeed(value: value)
                return nil
            }
            guard count < self.maxChunkExtensionBytes else { return .chunkExtensionTooLong(limit: self.maxChunkExtensionBytes) }
            self.state = .chunkExtension(value: value, count: count + 1, phase: next)
        case .sizeLineFeed(let value):
            guard byte == 0x0A else { return .bareLineEnding }
            self.state = value == 0 ? .trailers : .chunkData(remaining: value)
        case .chunkDataCarriageReturn:
            guard byte == 0x0D else { return .invalidChunkTerminator }
            self.state = .chunkDataLineFeed
        case .chunkDataLineFeed:
            guard byte == 0x0A else { return .invalidChunkTerminator }
            self.state = .size(value: 0, digits: 0)
        case .length, .untilClose, .chunkData, .trailers, .done:
            break
        }
        return nil
    }

    /// The extension grammar's next phase after `byte`: `.some(nil)` when the CR ends the size
    /// line, nil when the byte is not allowed there.
    static func extensionStep(_ phase: ExtensionPhase, _ byte: UInt8) -> ExtensionPhase?? {
        let token = HTTPToken.isTokenCharacter(byte)
        switch phase {
        case .nameStart:
            return token ? .name : nil
        case .name:
            if token { return .name }
            switch byte {
            case UInt8(ascii: "="): return .valueStart
            case UInt8(ascii: ";"): return .nameStart
            case 0x0D: return .some(nil)
            default: return nil
            }
        case .valueStart:
            if token { return .tokenValue }
            return byte == UInt8(ascii: "\"") ? .quoted : nil
        case .tokenValue:
            if token { return .tokenValue }
            switch byte {
            case UInt8(ascii: ";"): return .nameStart
            case 0x0D: return .some(nil)
            default: return nil
            }
        case .quoted:
            switch byte {
            case UInt8(ascii: "\""): return .afterQuoted
            case UInt8(ascii: "\\"): return .quotedEscape
            case 0x09, 0x20...0x7E: return .quoted
            default: return nil
            }
        case .quotedEscape:
            return byte == 0x09 || (0x20...0x7E).contains(byte) ? .quoted : nil
        case .afterQuoted:
            switch byte {
            case UInt8(ascii: ";"): return .nameStart
            case 0x0D: return .some(nil)
            default: return nil
            }
        }
    }

    /// The trailer section (RFC 9112 7.1.2): field lines, then an empty line. Copied as it
    /// comes (bounded), each line checked as a field line.
    private mutating func readTrailers(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Result<(event: Event, next: Int), HTTP1ParseError> {
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            guard self.trailerBytes.count < self.maxTrailerBytes else { return .failure(.trailersTooLarge(limit: self.maxTrailerBytes)) }
            self.trailerBytes.append(byte)
            guard byte == 0x0A else { continue }
            let result: Result<Event?, HTTP1ParseError> = self.trailerBytes.withUnsafeBytes { trailer in
                guard let found = HTTP1Lines.line(in: trailer, from: self.trailerLineStart, searched: trailer.count - 1) else { return .success(nil) }
                switch found {
                case .failure(let error):
                    return .failure(error)
                case .success(let (line, next)):
                    self.trailerLineStart = next
                    if line.isEmpty { return .success(.end) }
                    return HTTP1Lines.field(in: trailer, line: line).flatMap { field in
                        if Self.isForbiddenTrailer(trailer, field.name) { return .failure(.forbiddenTrailerField) }
                        self.trailers.append(field)
                        return .success(nil)
                    }
                }
            }
            switch result {
            case .failure(let error):
                return .failure(error)
            case .success(.some(let event)):
                self.state = .done
                return .success((event, index))
            case .success(.none):
                continue
            }
        }
        return .success((.needMore, index))
    }

    /// RFC 9110 6.5.1: fields that frame, route or authenticate a message mean nothing after it.
    static func isForbiddenTrailer(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        HTTP1Lines.equals(bytes, name, lowercase: "content-length") || HTTP1Lines.equals(bytes, name, lowercase: "transfer-encoding")
            || HTTP1Lines.equals(bytes, name, lowercase: "host") || HTTP1Lines.equals(bytes, name, lowercase: "connection")
            || HTTP1Lines.equals(bytes, name, lowercase: "upgrade") || HTTP1Lines.equals(bytes, name, lowercase: "authorization")
    }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: Int(byte - 0x30)
        case 0x41...0x46: Int(byte - 0x41 + 10)
        case 0x61...0x66: Int(byte - 0x61 + 10)
        default: nil
        }
    }
}
