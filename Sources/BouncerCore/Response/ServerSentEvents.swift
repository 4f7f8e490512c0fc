import NIOCore

/// Finds where events end in a `text/event-stream` body as it arrives, without copying it: the
/// gateway holds an event only until its blank line has been read, then passes its bytes on
/// unchanged (or replaces them). Lines end with CRLF, LF or CR (WHATWG HTML, "Parsing an event
/// stream"); an event ends at an empty line.
///
/// The splitter sees every byte once. A CR at the end of what has arrived so far ends the line
/// at once (a stream of CR-terminated events is not held back waiting for the next read); an LF
/// right after it is then the second half of CRLF, and belongs to no event.
public struct ServerSentEventSplitter: Sendable {
    /// The most bytes one event may take, blank line included (`limits.max_event_bytes`).
    public let maxEventBytes: Int
    /// Bytes of the event being read (so far) from earlier runs.
    public private(set) var pendingBytes = 0
    /// Whether the current line has bytes (a line that ends empty ends the event).
    private var lineHasBytes = false
    /// The last run ended with a CR: an LF first in the next run completes that line end.
    private var afterCR = false
    /// ... and that CR ended an event, so the LF belongs to no event.
    private var eventEndedOnCR = false

    public init(maxEventBytes: Int) {
        self.maxEventBytes = maxEventBytes
    }

    /// What a run of bytes holds, in order.
    public enum Piece: Equatable, Sendable {
        /// An event ends here (with what came before it in this run and `pendingBytes` from
        /// earlier runs).
        case eventEnd
        /// An LF that completes the CRLF of an event ended by the previous run.
        case strayLineFeed
    }

    public struct EventTooLarge: Error, Equatable, Sendable {
        public let limit: Int

        public init(limit: Int) {
            self.limit = limit
        }
    }

    /// Scans the next run of bytes; `onPiece` receives each event end (and each stray LF)
    /// with the offset in `bytes` where it ends. The bytes after the last piece start (or
    /// continue) an event not complete yet. Throws when an event grows over the limit.
    public mutating func scan(_ bytes: UnsafeRawBufferPointer, onPiece: (Piece, _ end: Int) throws -> Void) throws {
        let lf = UInt8(ascii: "\n")
        let cr = UInt8(ascii: "\r")
        var eventStart = 0
        var index = 0
        if self.afterCR, !bytes.isEmpty {
            self.afterCR = false
            if bytes[0] == lf {
                index = 1
                if self.eventEndedOnCR {
                    try onPiece(.strayLineFeed, 1)
                    eventStart = 1
                }
            }
            self.eventEndedOnCR = false
        }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            guard byte == lf || byte == cr else {
                self.lineHasBytes = true
                continue
            }
            if byte == cr {
                if index < bytes.count {
                    if bytes[index] == lf { index += 1 }
                } else {
                    self.afterCR = true
                }
            }
            guard !self.lineHasBytes else {
                self.lineHasBytes = false
                continue
            }
            // An empty line: the event ends with it.
            guard self.pendingBytes + index - eventStart <= self.maxEventBytes else { throw EventTooLarge(limit: self.maxEventBytes) }
            try onPiece(.eventEnd, index)
            self.pendingBytes = 0
            eventStart = index
            self.eventEndedOnCR = self.afterCR
        }
        self.pendingBytes += bytes.count - eventStart
        guard self.pendingBytes <= self.maxEventBytes else { throw EventTooLarge(limit: self.maxEventBytes) }
    }
}

/// One event's fields, as an event stream parser reads them: `data` lines joined with LF,
/// the last `event`, `id` and `retry`; comments and unknown fields ignored.
public struct ServerSentEvent: Equatable, Sendable {
    /// `event:`; nil means "message".
    public var type: String?
    /// The data lines joined with LF; nil when the event has no `data` line (browsers then
    /// dispatch nothing, but its `id` still counts).
    public var data: String?
    public var id: String?
    public var retry: String?

    public init(type: String? = nil, data: String? = nil, id: String? = nil, retry: String? = nil) {
        self.type = type
        self.data = data
        self.id = id
        self.retry = retry
    }

    /// Reads one event's bytes (as the splitter delimits them). A UTF-8 byte order mark at the
    /// start of the stream is the caller's to drop.
    public init(parsing bytes: some Collection<UInt8>) {
        let bytes = Array(bytes)
        var dataLines: [Substring] = []
        var lineStart = 0
        var index = 0
        func line(_ range: Range<Int>) {
            guard !range.isEmpty else { return }
            let text = String(decoding: bytes[range], as: UTF8.self)
            guard !text.hasPrefix(":") else { return }
            let name: Substring
            var value: Substring
            if let colon = text.firstIndex(of: ":") {
                name = text[..<colon]
                value = text[text.index(after: colon)...]
                if value.first == " " { value = value.dropFirst() }
            } else {
                name = text[...]
                value = ""
            }
            switch name {
            case "data": dataLines.append(value)
            case "event": self.type = String(value)
            case "id" where !value.contains("\0"): self.id = String(value)
            case "retry" where !value.isEmpty && value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }): self.retry = String(value)
            default: break
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                line(lineStart..<index)
                if byte == UInt8(ascii: "\r"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\n") { index += 1 }
                lineStart = index + 1
            }
            index += 1
        }
        line(lineStart..<bytes.count)
        if !dataLines.isEmpty { self.data = dataLines.joined(separator: "\n") }
    }

    /// The event written out with LF line ends, ending with its blank line. Data that holds
    /// line breaks becomes one `data:` line per line.
    public var serialized: String {
        var out = ""
        if let type { out += "event: \(type)\n" }
        if let id { out += "id: \(id)\n" }
        if let retry { out += "retry: \(retry)\n" }
        if let data {
            var line = ""
            var previousCR = false
            for scalar in data.unicodeScalars {
                if scalar == "\n" && previousCR {
                    previousCR = false
                    continue
                }
                previousCR = scalar == "\r"
                if scalar == "\n" || scalar == "\r" {
                    out += "data: \(line)\n"
                    line = ""
                } else {
                    line.unicodeScalars.append(scalar)
                }
            }
            out += "data: \(line)\n"
        }
        return out + "\n"
    }
}
