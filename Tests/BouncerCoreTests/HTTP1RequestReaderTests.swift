import BouncerCore
import NIOCore
import Testing

/// A connection's byte stream read as requests (``HTTP1RequestReader``): the events must not
/// depend on how the bytes were cut into reads, pipelined requests come out in order, a body
/// is handed out without its framing, and the first refusal is final.
@Suite("HTTP/1.1 request reader")
struct HTTP1RequestReaderTests {
    /// Events as text: `head METHOD target [fields]`, `body <bytes>` (consecutive body events
    /// joined, since how a body is cut follows the reads), `end`, `refused <error>`.
    static func events(_ stream: String, cuts: [Int] = [], maxHeadBytes: Int = 4096, maxFields: Int = 50) -> [String] {
        let bytes = Array(stream.utf8)
        var reader = HTTP1RequestReader(maxHeadBytes: maxHeadBytes, maxFields: maxFields)
        var events: [String] = []
        var start = 0
        for end in cuts + [bytes.count] where end >= start {
            reader.append(ByteBuffer(bytes: bytes[start..<end]))
            start = end
            do {
                while let event = try reader.next() {
                    switch event {
                    case .head(let head):
                        let fields = head.fields.map { "\(head.string($0.name))=\(head.string($0.value))" }
                        events.append("head \(head.method.name) \(head.string(head.target)) \(fields)\(head.violation.map { " violation \($0)" } ?? "")")
                    case .body(let body):
                        let text = String(buffer: body)
                        if let last = events.last, last.hasPrefix("body ") { events[events.count - 1] = last + text } else { events.append("body " + text) }
                    case .end:
                        events.append("end")
                    }
                }
            } catch {
                events.append("refused \(error)")
                // Final: later bytes change nothing.
                reader.append(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
                #expect(throws: error) { _ = try reader.next() }
                return events
            }
        }
        return events
    }

    /// The events for `stream` whole, and cut into reads at every offset and a byte at a time:
    /// all must be the same.
    func check(_ stream: String, _ expected: [String], maxHeadBytes: Int = 4096, maxFields: Int = 50, sourceLocation: SourceLocation = #_sourceLocation) {
        let whole = Self.events(stream, maxHeadBytes: maxHeadBytes, maxFields: maxFields)
        #expect(whole == expected, sourceLocation: sourceLocation)
        let count = stream.utf8.count
        for cut in 0...count {
            #expect(Self.events(stream, cuts: [cut], maxHeadBytes: maxHeadBytes, maxFields: maxFields) == whole, "cut at \(cut)", sourceLocation: sourceLocation)
        }
        #expect(Self.events(stream, cuts: Array(0...count), maxHeadBytes: maxHeadBytes, maxFields: maxFields) == whole, "a byte at a time", sourceLocation: sourceLocation)
    }

    @Test func pipelinedRequestsComeOutInOrderWithTheirBodies() {
        self.check(
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                + "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
                + "\r\nDELETE /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            [
                "head GET /a [\"Host=x\"]", "end",
                "head POST /b [\"Host=x\", \"Content-Length=5\"]", "body hello", "end",
                "head POST /c [\"Host=x\", \"Transfer-Encoding=chunked\"]", "body abcde", "end",
                "head DELETE /d [\"Host=x\", \"Content-Length=0\"]", "end",
            ]
        )
    }

    @Test func aHeadStillArrivingGivesNothingYet() {
        #expect(Self.events("POST /b HTTP/1.1\r\nHost: x\r\nContent-Le") == [])
        #expect(Self.events("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc") == ["head POST /b [\"Host=x\", \"Content-Length=9\"]", "body abc"])
    }

    @Test func theRulesRequestHeadFactsJudgeComeWithTheHead() {
        self.check("GET / HTTP/1.1\r\n\r\n", ["head GET / [] violation an HTTP/1.1 request without Host", "end"])
        self.check("GET / HTTP/1.0\r\n\r\n", ["head GET / []", "end"])
        self.check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ["head GET / [\"Host=a\", \"Host=b\"] violation more than one Host header", "end"])
        self.check(
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab",
            ["head GET / [\"Host=a\", \"Content-Length=2\"] violation a body in a GET, HEAD or DELETE request", "body ab", "end"]
        )
    }

    @Test func refusalsAreFinal() {
        self.check("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\nHost: a\r\n\r\n", ["head GET / [\"Host=a\"]", "end", "refused a line not ended by CRLF"])
        self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ["refused both Content-Length and Transfer-Encoding"])
        self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", ["head POST / [\"Host=a\", \"Transfer-Encoding=chunked\"]", "refused a malformed chunk size"])
        self.check("GET / HTTP/2.0\r\nHost: a\r\n\r\n", ["refused an HTTP version other than 1.0 and 1.1"])
        self.check("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", ["refused an unsupported method"])
        self.check("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 200) + "\r\n\r\n", ["refused a head larger than 128 bytes"], maxHeadBytes: 128)
        self.check("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", ["refused more than 2 header fields"], maxFields: 2)
    }

    @Test func theConnectionEndingInsideABodyIsTruncation() throws {
        var reader = HTTP1RequestReader(maxHeadBytes: 4096, maxFields: 50)
        #expect(reader.connectionClosed() == nil)
        reader.append(ByteBuffer(string: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab"))
        while try reader.next() != nil {}
        #expect(reader.isInsideMessage)
        #expect(reader.connectionClosed() == .truncatedBody)
        reader.append(ByteBuffer(string: "cd"))
        while try reader.next() != nil {}
        #expect(!reader.isInsideMessage)
        #expect(reader.connectionClosed() == nil)
        #expect(reader.bufferedBytes == 0)
    }

    /// A body slice is the bytes read, not a copy: the reader hands out views.
    @Test func bodyBytesAreSlicesOfTheRead() throws {
        var reader = HTTP1RequestReader(maxHeadBytes: 4096, maxFields: 50)
        let read = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        reader.append(read)
        guard case .head = try reader.next(), case .body(let body) = try reader.next() else {
            Issue.record("no head and body")
            return
        }
        let same = read.withUnsafeReadableBytes { whole in body.withUnsafeReadableBytes { $0.baseAddress == whole.baseAddress! + whole.count - 5 } }
        #expect(same)
    }
}
