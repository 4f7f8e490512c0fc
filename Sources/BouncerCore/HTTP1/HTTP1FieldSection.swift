/// The part of a head both parsers share: lines read as they arrive (each byte searched once),
/// the start line handed back to the parser that knows its grammar, field lines checked and
/// kept as ranges with their facts, bounded in bytes and count. Reused across messages with
/// ``reset()``: the field list keeps its storage.
struct HTTP1FieldSection: Sendable {
    let maxHeadBytes: Int
    let maxFields: Int
    /// RFC 9112 2.2: a server ignores empty lines before a request line (a client does not
    /// before a status line).
    let skipsLeadingEmptyLines: Bool

    private(set) var fields: [HTTP1Field] = []
    private(set) var facts = HTTP1HeadFacts()
    /// Where the next unparsed line starts, and how far the search for its LF got.
    private var position = 0
    private var searched = 0
    private var sawStartLine = false

    /// What the next lines gave.
    enum Step {
        /// The start line, for the caller to parse.
        case startLine(Range<Int>)
        /// The empty line: the head is the first `length` bytes.
        case end(length: Int)
        case incomplete
        case failed(HTTP1ParseError)
    }

    init(maxHeadBytes: Int, maxFields: Int, skipsLeadingEmptyLines: Bool) {
        self.maxHeadBytes = maxHeadBytes
        self.maxFields = maxFields
        self.skipsLeadingEmptyLines = skipsLeadingEmptyLines
        self.fields.reserveCapacity(16)
    }

    mutating func reset() {
        self.fields.removeAll(keepingCapacity: true)
        self.facts = HTTP1HeadFacts()
        self.position = 0
        self.searched = 0
        self.sawStartLine = false
    }

    /// Reads lines until the start line, the end of the head, a refusal or the end of `bytes`.
    mutating func next(_ bytes: UnsafeRawBufferPointer) -> Step {
        while true {
            guard let found = HTTP1Lines.line(in: bytes, from: self.position, searched: self.searched) else {
                self.searched = bytes.count
                return bytes.count > self.maxHeadBytes ? .failed(.headTooLarge(limit: self.maxHeadBytes)) : .incomplete
            }
            let line: Range<Int>
            switch found {
            case .failure(let error): return .failed(error)
            case .success(let (content, next)):
                line = content
                self.position = next
                self.searched = next
            }
            guard self.position <= self.maxHeadBytes else { return .failed(.headTooLarge(limit: self.maxHeadBytes)) }
            if !self.sawStartLine {
                if line.isEmpty, self.skipsLeadingEmptyLines { continue }
                self.sawStartLine = true
                return .startLine(line)
            }
            if line.isEmpty { return .end(length: self.position) }
            guard self.fields.count < self.maxFields else { return .failed(.tooManyFields(limit: self.maxFields)) }
            switch HTTP1Lines.field(in: bytes, line: line) {
            case .failure(let error):
                return .failed(error)
            case .success(let field):
                if let error = HTTP1Lines.observe(field, in: bytes, into: &self.facts) { return .failed(error) }
                self.fields.append(field)
            }
        }
    }
}
