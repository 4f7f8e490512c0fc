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

    /// Everything the enforcement stages read of the facts, as text.
    static func describe(_ facts: RequestHeadFacts, method: String, isHTTP11: Bool) -> String {
        let strings = [facts.host, facts.origin, facts.authorization, facts.clientCert, facts.dpop, facts.protocolVersion, facts.mcpMethod, facts.mcpName,
                       facts.contentType, facts.traceparent, facts.sessionID].map { $0 ?? "-" }
        let counts = [facts.authorizationCount, facts.clientCertCount, facts.dpopCount, facts.traceparentCount, facts.sessionIDCount, facts.headerBytes, facts.contentLength ?? -1]
        let connection = ["keep-alive", "close", "x-forwarded-for", "te", "upgrade", "x-a"].map { facts.connection.names($0) }
        return "\(strings) \(counts) \(facts.forwardedFor) \(facts.forwarded) \(connection) \(facts.expectsContinue) \(facts.hasBody) "
            + "\(facts.violation(method: method, isHTTP11OrLater: isHTTP11).map { "\($0)" } ?? "-")"
    }

    /// The facts made from the codec's ranges (Strings only of the fields they are made of) are
    /// the facts made from every field as Strings, on generated heads.
    @Test func factsFromTheRangesAreTheFactsFromStrings() throws {
        let pool = [
            "Host: mcp.example.com", "Host: other", "Host: bad host", "host: [::1]:8443", "Host:", "Origin: https://app.example", "Origin: null",
            "Authorization: Bearer abc", "authorization: DPoP xyz", "DPoP: eyJ.a.b", "Dpop: second", "Client-Cert: :AAEC:",
            "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call", "MCP-NAME: list_issues", "Content-Type: application/json",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Traceparent: 00-x", "Mcp-Session-Id: s1", "mcp-session-id: s2",
            "X-Forwarded-For: 10.0.0.1", "x-forwarded-for: 10.0.0.2, 10.0.0.3", "Forwarded: for=1.2.3.4", "Content-Encoding: identity",
            "Content-Encoding: gzip", "Content-Encoding: , identity ,", "Content-Length: 0", "Content-Length: 12", "Expect: 100-continue",
            "expect: 100-Continue ", "Connection: close", "Connection: keep-alive, X-Forwarded-For, TE", "Connection: upgrade", "Transfer-Encoding: chunked",
            "X-Other: value", "User-Agent: python-httpx/0.28.1", "Accept: application/json, text/event-stream",
        ]
        var random = SplitMix64(seed: 2028)
        var compared = 0
        // Each head's facts are also made reusing the previous head's, as a connection does.
        var previous: RequestHeadFacts?
        for _ in 0..<5000 {
            let method = ["GET", "POST", "DELETE", "HEAD"][Int(random.next() % 4)]
            let isHTTP11 = random.next() % 5 != 0
            let lines = (0..<Int(random.next() % 10)).map { _ in pool[Int(random.next() % UInt64(pool.count))] }
            let target = ["/mcp", "/jira/mcp?x=1", "https://a.example/mcp"][Int(random.next() % 3)]
            var reader = HTTP1RequestReader(maxHeadBytes: 4096, maxFields: 50)
            reader.append(ByteBuffer(string: "\(method) \(target) HTTP/1.\(isHTTP11 ? 1 : 0)\r\n\(lines.map { $0 + "\r\n" }.joined())\r\n"))
            guard case .head(let head)? = try? reader.next() else { continue }
            compared += 1
            var strings = RequestHeadFacts(target: head.string(head.target))
            for field in head.fields { strings.observe(name: head.string(field.name), value: head.string(field.value)) }
            let ranges = RequestHeadFacts(head)
            #expect(Self.describe(ranges, method: method, isHTTP11: isHTTP11) == Self.describe(strings, method: method, isHTTP11: isHTTP11), "\(lines)")
            let reusing = RequestHeadFacts(head, reusing: previous)
            #expect(Self.describe(reusing, method: method, isHTTP11: isHTTP11) == Self.describe(strings, method: method, isHTTP11: isHTTP11), "\(lines)")
            previous = reusing
        }
        #expect(compared > 2000, "most generated heads parse: \(compared)")
    }

    /// A keep-alive client sends the same token, session id and content type on every request:
    /// the next request's facts hold the previous request's Strings (no new storage), and a
    /// value that changed, even by one byte in its last eight, is a new String.
    @Test func factsOfTheNextRequestReuseThePreviousStrings() throws {
        func head(_ token: String) throws -> HTTP1RequestReader.Head {
            var reader = HTTP1RequestReader(maxHeadBytes: 4096, maxFields: 50)
            reader.append(ByteBuffer(string: "POST /mcp HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\n"
                + "Mcp-Session-Id: 0123456789abcdef0123\r\nContent-Length: 0\r\n\r\n"))
            guard case .head(let head)? = try reader.next() else { throw HTTP1ParseError.bareLineEnding }
            return head
        }
        func storage(_ text: String?) -> UnsafeRawPointer? {
            var text = text ?? ""
            return text.withUTF8 { UnsafeRawPointer($0.baseAddress) }
        }
        let token = String(repeating: "eyJhbGciOiJFUzI1NiJ9", count: 30)
        let first = RequestHeadFacts(try head(token))
        let second = RequestHeadFacts(try head(token), reusing: first)
        #expect(second.authorization == first.authorization)
        #expect(storage(second.authorization) == storage(first.authorization))
        #expect(storage(second.contentType) == storage(first.contentType))
        #expect(storage(second.sessionID) == storage(first.sessionID))
        let changed = RequestHeadFacts(try head(String(token.dropLast()) + "X"), reusing: second)
        #expect(changed.authorization == "Bearer " + String(token.dropLast()) + "X")
        #expect(storage(changed.authorization) != storage(first.authorization))
        #expect(storage(changed.contentType) == storage(first.contentType))
    }
}

/// An upstream's byte stream read as responses (``HTTP1ResponseReader``).
@Suite("HTTP/1.1 response reader")
struct HTTP1ResponseReaderTests {
    static func events(_ stream: String, method: HTTP1Method = .POST, closed: Bool = false) -> [String] {
        var reader = HTTP1ResponseReader()
        reader.requestMethod = method
        reader.append(ByteBuffer(string: stream))
        var events: [String] = []
        do {
            while let event = try reader.next() {
                switch event {
                case .head(let head): events.append("head \(head.status)\(head.isInterim ? " interim" : "")")
                case .body(let body): events.append("body " + String(buffer: body))
                case .end: events.append("end")
                }
            }
            if closed, try reader.connectionClosed() { events.append("end at close") }
        } catch {
            events.append("refused \(error)")
        }
        return events
    }

    @Test func interimHeadsComeBeforeTheFinalOne() {
        #expect(Self.events("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            == ["head 100 interim", "head 103 interim", "head 200", "body ok", "end"])
    }

    /// The differential fuzzer's find: llhttp stops at a 101 (what follows is another
    /// protocol), and so does the reader, refusing what follows rather than reading it as
    /// another response.
    @Test func nothingAfterA101IsReadAsHTTP() {
        #expect(Self.events("HTTP/1.1 101 E H\r\n\r\nHTTP/1.0 200 ;\r\n\r\nn")
            == ["head 101 interim", "refused bytes after a 101 Switching Protocols response"])
        #expect(Self.events("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") == ["head 101 interim"])
    }

    /// The differential fuzzer's find: an HTTP/1.0 server sends no 1xx (RFC 9110 15.2), and
    /// llhttp refuses one; so does the reader, rather than reading the response after it.
    @Test func anInterimResponseInHTTP10IsRefused() {
        #expect(Self.events("HTTP/1.0 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
            == ["refused an interim (1xx) response in HTTP/1.0"])
    }

    @Test func framingByMethodStatusAndTheConnectionsEnd() {
        #expect(Self.events("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method: .HEAD) == ["head 200", "end"])
        #expect(Self.events("HTTP/1.1 204 No Content\r\n\r\n") == ["head 204", "end"])
        #expect(Self.events("HTTP/1.1 200 OK\r\n\r\nuntil close", closed: true) == ["head 200", "body until close", "end at close"])
        #expect(Self.events("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", closed: true) == ["head 200", "body abc", "refused the connection ended inside the body"])
    }
}
