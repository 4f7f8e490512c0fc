/// A strict HTTP/1.1 response-head parser over bytes (RFC 9112 4, 5, 6.3), for the gateway's
/// upstream side (issue 28): what ``HTTP1RequestParser`` is to clients, for an upstream that may
/// lie. The status line is `HTTP-version SP 3DIGIT [SP reason]` with a version of 1.0 or 1.1 (no
/// HTTP/0.9 answer without a status line) and a status of 100 to 599; the fields follow the same
/// rules as a request's.
public struct HTTP1ResponseParser: Sendable {
    public var maxHeadBytes: Int { self.section.maxHeadBytes }
    public var maxFields: Int { self.section.maxFields }

    public private(set) var version: HTTP1Version = .http11
    public private(set) var status = 0
    public private(set) var reason: Range<Int> = 0..<0
    public var fields: [HTTP1Field] { self.section.fields }
    public var facts: HTTP1HeadFacts { self.section.facts }
    public private(set) var framing: HTTP1Framing = .none

    private var section: HTTP1FieldSection

    public init(maxHeadBytes: Int = 64 * 1024, maxFields: Int = 200) {
        self.section = HTTP1FieldSection(maxHeadBytes: maxHeadBytes, maxFields: maxFields, skipsLeadingEmptyLines: false)
    }

    public mutating func reset() {
        self.section.reset()
        self.framing = .none
        self.status = 0
    }

    /// Parses the head of the response to a request with `method` (a response to HEAD has no
    /// body, whatever its fields say).
    public mutating func parse(_ bytes: UnsafeRawBufferPointer, requestMethod: HTTP1Method) -> HTTP1HeadProgress {
        while true {
            switch self.section.next(bytes) {
            case .startLine(let line):
                if let error = self.statusLine(bytes, line) { return .failed(error) }
            case .end(let length):
                if let error = self.finish(requestMethod: requestMethod) { return .failed(error) }
                return .complete(length: length)
            case .incomplete:
                return .incomplete
            case .failed(let error):
                return .failed(error)
            }
        }
    }

    private mutating func statusLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> HTTP1ParseError? {
        guard line.count >= 12 else { return .invalidStatusLine }
        let base = line.lowerBound
        guard let version = HTTP1RequestParser.version(bytes, base..<(base + 8)), bytes[base + 8] == 0x20 else { return .invalidStatusLine }
        var status = 0
        for index in (base + 9)..<(base + 12) {
            let byte = bytes[index]
            guard byte >= 0x30, byte <= 0x39 else { return .invalidStatusLine }
            status = status * 10 + Int(byte - 0x30)
        }
        guard (100...599).contains(status) else { return .invalidStatusLine }
        var reason = line.upperBound..<line.upperBound
        if line.count > 12 {
            guard bytes[base + 12] == 0x20 else { return .invalidStatusLine }
            for index in (base + 13)..<line.upperBound {
                let byte = bytes[index]
                guard byte == 0x09 || byte == 0x20 || (byte >= 0x21 && byte != 0x7F) else { return .invalidStatusLine }
            }
            reason = (base + 13)..<line.upperBound
        }
        self.version = version
        self.status = status
        self.reason = reason
        return nil
    }

    /// RFC 9112 6.3, in its order: no body for HEAD, 1xx, 204 and 304; then chunked, then
    /// Content-Length, then the connection's end.
    private mutating func finish(requestMethod: HTTP1Method) -> HTTP1ParseError? {
        if self.facts.chunked, self.facts.contentLength != nil { return .contentLengthAndTransferEncoding }
        if self.facts.chunked, self.version == .http10 { return .transferEncodingInHTTP10 }
        if self.status < 200, self.version == .http10 { return .interimInHTTP10 }
        if requestMethod == .HEAD || self.status < 200 || self.status == 204 || self.status == 304 {
            self.framing = .none
        } else if self.facts.chunked {
            self.framing = .chunked
        } else if let length = self.facts.contentLength {
            self.framing = .length(length)
        } else {
            self.framing = .untilClose
        }
        return nil
    }
}
