import BouncerCore
import Testing

/// The gateway's own HTTP/1.1 codec (issue 28): request and response heads as byte ranges, the
/// facts gathered in the same pass, body framing; the RFC 9112 examples and every refusal, whole
/// and a byte at a time.
@Suite("HTTP/1.1 codec")
struct HTTP1CodecTests {
    /// A parsed request head as strings, for comparing.
    struct Request: Equatable {
        var method: HTTP1Method
        var target: String
        var version: HTTP1Version
        var fields: [String]
        var framing: HTTP1Framing
        var length: Int
    }

    static func text(_ bytes: [UInt8], _ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    /// Parses `head` whole, and again fed a byte at a time: both must agree.
    func request(_ head: String, maxHeadBytes: Int = 16 * 1024, maxFields: Int = 100) -> Result<Request, HTTP1ParseError> {
        let bytes = Array(head.utf8)
        func run(_ steps: [Int]) -> Result<Request, HTTP1ParseError>? {
            var parser = HTTP1RequestParser(maxHeadBytes: maxHeadBytes, maxFields: maxFields)
            for end in steps {
                let progress = bytes.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[..<end])) }
                switch progress {
                case .incomplete: continue
                case .failed(let error): return .failure(error)
                case .complete(let length):
                    return .success(Request(
                        method: parser.method, target: Self.text(bytes, parser.target), version: parser.version,
                        fields: parser.fields.map { "\(Self.text(bytes, $0.name))=\(Self.text(bytes, $0.value))" }, framing: parser.framing, length: length
                    ))
                }
            }
            return nil
        }
        let whole = run([bytes.count])
        let trickled = run(Array(1...max(1, bytes.count)))
        #expect(whole == trickled, "whole and byte by byte differ for \(head.debugDescription)")
        return whole ?? .failure(.headTooLarge(limit: -1))
    }

    func refusal(_ head: String) -> HTTP1ParseError? {
        if case .failure(let error) = self.request(head) { return error }
        return nil
    }

    @Test("RFC 9112 examples: a GET, a POST with Content-Length, a chunked POST; the head ends at the empty line")
    func wellFormedRequests() throws {
        let get = try self.request("GET /hello.txt HTTP/1.1\r\nUser-Agent: curl/7.64.1\r\nHost: www.example.com\r\nAccept-Language: en, mi\r\n\r\n").get()
        #expect(get == Request(method: .GET, target: "/hello.txt", version: .http11,
                               fields: ["User-Agent=curl/7.64.1", "Host=www.example.com", "Accept-Language=en, mi"], framing: .none, length: 100))
        let post = try self.request("POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\nContent-Type: application/json\r\n\r\n{\"jsonrpc\":\"2.0\"}").get()
        #expect(post.framing == .length(17) && post.method == .POST && post.fields.count == 3)
        let chunked = try self.request("POST /mcp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD  \r\n\r\n").get()
        #expect(chunked.framing == .chunked)
        // Spaces (not tabs) after a framing value are whitespace, as llhttp reads them; a tab before is too.
        #expect(try self.request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t3  \r\n\r\n").get().framing == .length(3))
        // Whitespace around a value is not part of it; inside it is; obs-text is allowed.
        let spaced = try self.request("GET / HTTP/1.0\r\nX-A:\t  two  words \t\r\nX-B:\r\nX-C: caf\u{e9}\r\n\r\n").get()
        #expect(spaced.fields == ["X-A=two  words", "X-B=", "X-C=caf\u{e9}"] && spaced.version == .http10)
        // RFC 9112 2.2: empty lines before the request line are ignored.
        #expect(try self.request("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").get().target == "/")
        #expect(try self.request("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").get().target == "*")
        #expect(try self.request("GET http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\n\r\n").get().target == "http://a.example/x?y=1")
        #expect(try self.request("GET https://[::1]:8443?q HTTP/1.1\r\nHost: a\r\n\r\n").get().target == "https://[::1]:8443?q")
        var parser = HTTP1RequestParser()
        let partial = Array("GET / HTTP/1.1\r\nHost: a\r\n".utf8)
        #expect(partial.withUnsafeBytes { parser.parse($0) } == .incomplete, "incomplete, not refused")
    }

    @Test func factsAreGatheredInTheSamePass() throws {
        let head = "POST / HTTP/1.1\r\nHost: one\r\nHost: two\r\nConnection: Keep-Alive, Upgrade\r\nUpgrade: x\r\nExpect: 100-Continue\r\nContent-Length: 0\r\n\r\n"
        let bytes = Array(head.utf8)
        var parser = HTTP1RequestParser()
        guard case .complete = bytes.withUnsafeBytes({ parser.parse($0) }) else { Issue.record("refused"); return }
        #expect(parser.facts.hosts == 2 && parser.facts.host.map { Self.text(bytes, $0) } == "one")
        #expect(parser.facts.connectionKeepAlive && parser.facts.connectionUpgrade && !parser.facts.connectionClose)
        #expect(parser.facts.upgrade && parser.facts.expectContinue && parser.facts.contentLength == 0 && parser.framing == .length(0))
        // reset() forgets the head and keeps the storage.
        parser.reset()
        let next = Array("GET / HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)
        guard case .complete = next.withUnsafeBytes({ parser.parse($0) }) else { Issue.record("refused"); return }
        #expect(parser.facts.connectionClose && parser.facts.hosts == 0 && parser.fields.count == 1 && parser.framing == .none)
        // RFC 9110 5.6.1: a list element's whitespace is spaces and tabs; `close` between tabs
        // still closes (llhttp reads it only between spaces and would keep the connection:
        // the differential fuzzer's find; closing is the safe side).
        parser.reset()
        let tabbed = Array("GET / HTTP/1.1\r\nConnection: k,,,z,s,\t\t\tclose\t\t,x\r\n\r\n".utf8)
        guard case .complete = tabbed.withUnsafeBytes({ parser.parse($0) }) else { Issue.record("refused"); return }
        #expect(parser.facts.connectionClose)
    }

    @Test("the enforcement fields gathered in the parse agree with RequestHeadFacts on 5,000 generated heads")
    func enforcementFieldsAgreeWithRequestHeadFacts() {
        let pool = [
            "Host: mcp.example.com", "Host: other", "Host: bad host", "Host: [::1]:8443", "Host:", "Origin: https://app.example",
            "Origin: null", "Authorization: Bearer abc", "authorization: DPoP xyz", "DPoP: eyJ.a.b", "Dpop: second", "Client-Cert: :AAEC:",
            "MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/call", "Mcp-Name: list_issues", "Content-Type: application/json",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Traceparent: 00-x", "Mcp-Session-Id: s1",
            "mcp-session-id: s2", "X-Forwarded-For: 10.0.0.1", "Forwarded: for=1.2.3.4", "Content-Encoding: identity",
            "Content-Encoding: gzip", "Content-Encoding: , identity ,", "Content-Length: 0", "Content-Length: 12",
            "Expect: 100-continue", "Connection: close", "Transfer-Encoding: chunked", "X-Other: value",
        ]
        var random = SplitMix64(seed: 28)
        var compared = 0
        for _ in 0..<5000 {
            let method = ["GET", "POST", "DELETE", "HEAD"][Int(random.next() % 4)]
            let version = random.next() % 5 == 0 ? "HTTP/1.0" : "HTTP/1.1"
            let lines = (0..<Int(random.next() % 8)).map { _ in pool[Int(random.next() % UInt64(pool.count))] }
            let head = Array("\(method) /mcp \(version)\r\n\(lines.map { $0 + "\r\n" }.joined())\r\n".utf8)
            var parser = HTTP1RequestParser()
            guard case .complete = head.withUnsafeBytes({ parser.parse($0) }) else { continue }
            compared += 1
            var facts = RequestHeadFacts()
            for field in parser.fields { facts.observe(name: Self.text(head, field.name), value: Self.text(head, field.value)) }
            let fields = parser.facts.request
            func text(_ range: Range<Int>?) -> String? { range.map { Self.text(head, $0) } }
            let context = String(decoding: head, as: UTF8.self).debugDescription
            #expect(text(parser.facts.host) == facts.host && text(fields.origin) == facts.origin, "\(context)")
            #expect(text(fields.authorization) == facts.authorization && fields.authorizationCount == facts.authorizationCount, "\(context)")
            #expect(text(fields.dpop) == facts.dpop && fields.dpopCount == facts.dpopCount, "\(context)")
            #expect(text(fields.clientCert) == facts.clientCert && fields.clientCertCount == facts.clientCertCount, "\(context)")
            #expect(text(fields.protocolVersion) == facts.protocolVersion && text(fields.mcpMethod) == facts.mcpMethod && text(fields.mcpName) == facts.mcpName, "\(context)")
            #expect(text(fields.contentType) == facts.contentType, "\(context)")
            #expect(text(fields.traceparent) == facts.traceparent && fields.traceparentCount == facts.traceparentCount, "\(context)")
            #expect(text(fields.sessionID) == facts.sessionID && fields.sessionIDCount == facts.sessionIDCount, "\(context)")
            #expect(fields.forwardedForCount == facts.forwardedFor.count && fields.forwardedCount == facts.forwarded.count, "\(context)")
            #expect(parser.facts.contentLength == facts.contentLength && parser.facts.expectContinue == facts.expectsContinue, "\(context)")
            let violation = head.withUnsafeBytes { parser.violation($0) }
            #expect(violation == facts.violation(method: method, isHTTP11OrLater: version == "HTTP/1.1"), "\(context)")
        }
        #expect(compared > 2000, "most generated heads parse: \(compared)")
    }

    @Test("every refusal of the request line, with its status", arguments: [
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", HTTP1ParseError.bareLineEnding),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", .bareLineEnding),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", .bareLineEnding),
        ("FOO / HTTP/1.1\r\n\r\n", .unsupportedMethod),
        ("CONNECT a:443 HTTP/1.1\r\n\r\n", .unsupportedMethod),
        ("get / HTTP/1.1\r\n\r\n", .unsupportedMethod),
        ("G(T / HTTP/1.1\r\n\r\n", .invalidRequestLine),
        ("GET  / HTTP/1.1\r\n\r\n", .invalidRequestLine),
        ("GET /  HTTP/1.1\r\n\r\n", .invalidRequestLine),
        ("GET / HTTP/1.1 \r\n\r\n", .invalidRequestLine),
        ("GET /\r\n\r\n", .invalidRequestLine),
        ("GET / http/1.1\r\n\r\n", .invalidRequestLine),
        ("GET / HTTP/1.10\r\n\r\n", .invalidRequestLine),
        (" GET / HTTP/1.1\r\n\r\n", .invalidRequestLine),
        ("GET / HTTP/2.0\r\n\r\n", .unsupportedVersion),
        ("GET / HTTP/0.9\r\n\r\n", .unsupportedVersion),
        ("GET /a\u{1}b HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET /a\u{7f} HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET /caf\u{e9} HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET /a\rb HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET /\tx HTTP/1.1\r\n\r\n", .invalidTarget),
        ("POST ?mcp HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET mcp HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET * HTTP/1.1\r\n\r\n", .invalidTarget),
        ("OPTIONS *x HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET http:/a HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET http:// HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET http://a@b/ HTTP/1.1\r\n\r\n", .invalidTarget),
        ("GET h1tp://a/ HTTP/1.1\r\n\r\n", .invalidTarget),
    ])
    func requestLineRefusals(head: String, expected: HTTP1ParseError) {
        #expect(self.refusal(head) == expected, "\(head.debugDescription)")
    }

    @Test("every refusal of a field line and of the framing fields", arguments: [
        ("X-A : b", HTTP1ParseError.whitespaceBeforeColon),
        ("X-A\t: b", .whitespaceBeforeColon),
        (": b", .invalidFieldName),
        ("X A: b", .invalidFieldName),
        ("X-A b", .invalidFieldName),
        ("X-\u{e9}: b", .invalidFieldName),
        ("X-A: b\u{0}c", .invalidFieldValue),
        ("X-A: b\rc", .invalidFieldValue),
        ("X-A: b\u{7f}", .invalidFieldValue),
        ("X-A: b\u{1b}[31m", .invalidFieldValue),
        ("X-A: b\r\n c", .obsoleteLineFolding),
        ("X-A: b\r\n\tc", .obsoleteLineFolding),
        ("Content-Length: 1\r\nContent-Length: 1", .multipleContentLengths),
        ("Content-Length: 1, 1", .multipleContentLengths),
        ("Content-Length: +1", .invalidContentLength),
        ("Content-Length: 0x10", .invalidContentLength),
        ("Content-Length: 1 2", .invalidContentLength),
        ("Content-Length:", .invalidContentLength),
        ("Content-Length: 1234567890123456789", .invalidContentLength),
        ("Content-Length: 5\r\nTransfer-Encoding: chunked", .contentLengthAndTransferEncoding),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", .contentLengthAndTransferEncoding),
        ("Transfer-Encoding: gzip, chunked", .unsupportedTransferCoding),
        ("Transfer-Encoding: chunked, gzip", .unsupportedTransferCoding),
        ("Transfer-Encoding: identity", .unsupportedTransferCoding),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", .unsupportedTransferCoding),
        ("Transfer-Encoding: xchunked", .unsupportedTransferCoding),
        ("Content-LEngth: 6\t\t", .invalidContentLength),
        ("Content-Length: 6 \t", .invalidContentLength),
        ("Transfer-Encoding: chunked\t", .unsupportedTransferCoding),
    ])
    func fieldRefusals(fields: String, expected: HTTP1ParseError) {
        #expect(self.refusal("POST / HTTP/1.1\r\nHost: a\r\n\(fields)\r\n\r\n") == expected, "\(fields.debugDescription)")
    }

    @Test("values are checked eight bytes at a time: every byte at every offset, in the word and in the tail")
    func valueBytesAtEveryOffset() {
        for length in [1, 7, 8, 9, 15, 16, 17, 24, 31] {
            for position in 0..<length {
                for byte in [0x00, 0x01, 0x0B, 0x0D, 0x1F, 0x7F, 0x09, 0x20, 0x7E, 0x80, 0xA0, 0xFF] as [UInt8] {
                    var value = [UInt8](repeating: UInt8(ascii: "v"), count: length)
                    value[position] = byte
                    let head = Array("GET / HTTP/1.1\r\nX: ".utf8) + value + Array("\r\n\r\n".utf8)
                    var parser = HTTP1RequestParser()
                    let progress = head.withUnsafeBytes { parser.parse($0) }
                    let allowed = byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
                    if allowed {
                        guard case .complete = progress else { Issue.record("\(byte) at \(position) of \(length) refused"); continue }
                        let kept = parser.fields[0].value
                        let trimmed = value.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
                        #expect(Array(head[kept]) == Array(trimmed), "\(byte) at \(position) of \(length)")
                    } else {
                        #expect(progress == .failed(.invalidFieldValue), "\(byte) at \(position) of \(length)")
                    }
                }
            }
        }
        // The line feed is found at every offset too.
        for padding in 0..<20 {
            let head = "GET / HTTP/1.1\r\nX: \(String(repeating: "a", count: padding))\r\n\r\n"
            var parser = HTTP1RequestParser()
            #expect(Array(head.utf8).withUnsafeBytes { parser.parse($0) } == .complete(length: head.utf8.count))
        }
    }

    @Test func limitsAndHTTP10() {
        #expect(self.refusal("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == .transferEncodingInHTTP10)
        let big = "GET / HTTP/1.1\r\nX-A: \(String(repeating: "a", count: 200))\r\n\r\n"
        if case .failure(let error) = self.request(big, maxHeadBytes: 100) { #expect(error == .headTooLarge(limit: 100)) } else { Issue.record("accepted") }
        // Exactly at the limit is fine; one more byte is not.
        let exact = "GET / HTTP/1.1\r\n\r\n"
        #expect((try? self.request(exact, maxHeadBytes: exact.utf8.count).get()) != nil)
        if case .failure(let error) = self.request(exact, maxHeadBytes: exact.utf8.count - 1) { #expect(error == .headTooLarge(limit: exact.utf8.count - 1)) } else { Issue.record("accepted") }
        let many = "GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 11) + "\r\n"
        if case .failure(let error) = self.request(many, maxFields: 10) { #expect(error == .tooManyFields(limit: 10)) } else { Issue.record("accepted") }
        // A head that never ends is refused once it passes the limit, not held forever.
        var parser = HTTP1RequestParser(maxHeadBytes: 64)
        let endless = Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100)).utf8)
        #expect(endless.withUnsafeBytes { parser.parse($0) } == .failed(.headTooLarge(limit: 64)))
        #expect(HTTP1ParseError.headTooLarge(limit: 1).status == 431 && HTTP1ParseError.unsupportedMethod.status == 501)
        #expect(HTTP1ParseError.unsupportedVersion.status == 505 && HTTP1ParseError.unsupportedTransferCoding.status == 501 && HTTP1ParseError.obsoleteLineFolding.status == 400)
    }

    // MARK: Responses

    func response(_ head: String, method: HTTP1Method = .POST) -> Result<(status: Int, framing: HTTP1Framing, reason: String), HTTP1ParseError> {
        let bytes = Array(head.utf8)
        var parser = HTTP1ResponseParser()
        switch bytes.withUnsafeBytes({ parser.parse($0, requestMethod: method) }) {
        case .complete: return .success((parser.status, parser.framing, Self.text(bytes, parser.reason)))
        case .failed(let error): return .failure(error)
        case .incomplete: return .failure(.headTooLarge(limit: -1))
        }
    }

    @Test func responseHeadsAndTheirFraming() throws {
        let ok = try self.response("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n").get()
        #expect(ok.status == 200 && ok.framing == .length(12) && ok.reason == "OK")
        #expect(try self.response("HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n").get().framing == .chunked)
        #expect(try self.response("HTTP/1.1 200\r\n\r\n").get().framing == .untilClose, "no reason phrase, no length: until the end")
        #expect(try self.response("HTTP/1.0 200 OK\r\n\r\n").get().framing == .untilClose)
        #expect(try self.response("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n").get().framing == .none)
        #expect(try self.response("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n").get().framing == .none)
        #expect(try self.response("HTTP/1.1 100 Continue\r\n\r\n").get().framing == .none)
        #expect(try self.response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method: .HEAD).get().framing == .none)
        #expect(try self.response("HTTP/1.1 404 Not\tFound caf\u{e9}\r\n\r\n").get().reason == "Not\tFound caf\u{e9}")
        for bad in ["{\"jsonrpc\":\"2.0\"}\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 X\r\n\r\n", "HTTP/1.1 600 X\r\n\r\n",
                    "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 200 O\u{0}K\r\n\r\n", "http/1.1 200 OK\r\n\r\n"] {
            guard case .failure(let error) = self.response(bad) else { Issue.record("accepted \(bad.debugDescription)"); continue }
            #expect(error == .invalidStatusLine, "\(bad.debugDescription)")
        }
        guard case .failure(.contentLengthAndTransferEncoding) = self.response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") else {
            Issue.record("CL and TE accepted from an upstream")
            return
        }
        guard case .failure(.obsoleteLineFolding) = self.response("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n") else { Issue.record("obs-fold accepted"); return }
    }

    // MARK: Bodies

    /// Reads `body` with `framing`, given in pieces of `step` bytes (each piece a new buffer, as
    /// reads come): the body bytes, and whether it ended, or the refusal.
    func body(_ body: String, _ framing: HTTP1Framing, step: Int, closed: Bool = false) -> Result<(data: String, ended: Bool, rest: Int, trailers: [String]), HTTP1ParseError> {
        let bytes = Array(body.utf8)
        var reader = HTTP1BodyReader(framing, maxChunkExtensionBytes: 32, maxTrailerBytes: 64)
        var data: [UInt8] = []
        var start = 0
        while start < bytes.count {
            let piece = Array(bytes[start..<min(bytes.count, start + step)])
            var offset = 0
            reading: while true {
                switch piece.withUnsafeBytes({ reader.read($0, from: offset) }) {
                case .failure(let error): return .failure(error)
                case .success(let (.data(range), next)): data += piece[range]; offset = next
                case .success((.needMore, _)): break reading
                case .success(let (.end, next)):
                    let trailers = reader.trailers.map { Self.text(reader.trailerBytes, $0.name) + "=" + Self.text(reader.trailerBytes, $0.value) }
                    return .success((String(decoding: data, as: UTF8.self), true, bytes.count - (start + next), trailers))
                }
            }
            start += step
        }
        if closed, let error = reader.connectionClosed() { return .failure(error) }
        return .success((String(decoding: data, as: UTF8.self), reader.isDone, 0, []))
    }

    @Test("RFC 9112 7.1: chunks, an extension, the last chunk and trailers; the same a byte at a time", arguments: [1, 2, 3, 7, 1000])
    func chunkedBodies(step: Int) throws {
        let chunked = "4\r\nWiki\r\n5;name=\"v \\\"a\\\\\";x;y=z\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nGET"
        let read = try self.body(chunked, .chunked, step: step).get()
        #expect(read.data == "Wikipedia in\r\n\r\nchunks." && read.ended && read.trailers == ["Expires=never"])
        #expect(read.rest == 3, "bytes after the body belong to the next message")
        let plain = try self.body("0\r\n\r\n", .chunked, step: step).get()
        #expect(plain.data.isEmpty && plain.ended)
        let length = try self.body("hello world", .length(5), step: step).get()
        #expect(length.data == "hello" && length.ended && length.rest == 6)
        #expect(try self.body("all of it", .untilClose, step: step, closed: true).get().data == "all of it")
        #expect(try self.body("ignored", .none, step: step).get().data.isEmpty)
    }

    @Test("every refusal of chunked framing, and truncation", arguments: [
        ("g\r\n", HTTP1ParseError.invalidChunkSize),
        ("\r\n", .invalidChunkSize),
        ("-1\r\n", .invalidChunkSize),
        (" 1\r\nx\r\n", .invalidChunkSize),
        ("1 \r\nx\r\n", .invalidChunkSize),
        ("1000000000000000\r\n", .invalidChunkSize),
        ("1\nx\r\n", .invalidChunkSize),
        ("1\r\r\nx", .bareLineEnding),
        ("1;\u{0}\r\nx\r\n", .invalidChunkExtension),
        ("1;a=\u{e9}\r\nx\r\n", .invalidChunkExtension),
        ("1;\(String(repeating: "a", count: 40))\r\nx\r\n", .chunkExtensionTooLong(limit: 32)),
        ("5;nStrinv\"\r\npedia\r\n", .invalidChunkExtension),
        ("1;\r\nx\r\n", .invalidChunkExtension),
        ("1;a=\r\nx\r\n", .invalidChunkExtension),
        ("1; a\r\nx\r\n", .invalidChunkExtension),
        ("1;a =b\r\nx\r\n", .invalidChunkExtension),
        ("1;a=\"b\r\nx\r\n", .invalidChunkExtension),
        ("1;a=\"b\"c\r\nx\r\n", .invalidChunkExtension),
        ("1;a=b\"\r\nx\r\n", .invalidChunkExtension),
        ("1\r\nxy\r\n", .invalidChunkTerminator),
        ("1\r\nx\n", .invalidChunkTerminator),
        ("0\r\nX : y\r\n\r\n", .whitespaceBeforeColon),
        ("0\r\n folded\r\n\r\n", .obsoleteLineFolding),
        ("0\r\nX: y\n\r\n", .bareLineEnding),
        ("0\r\nX: \(String(repeating: "y", count: 80))\r\n\r\n", .trailersTooLarge(limit: 64)),
        ("0\r\nTransfer-Encoding: chunked\r\n\r\n", .forbiddenTrailerField),
        ("0\r\ncontent-length: 5\r\n\r\n", .forbiddenTrailerField),
        ("0\r\nHost: b\r\n\r\n", .forbiddenTrailerField),
        ("0\r\nAuthorization: Bearer x\r\n\r\n", .forbiddenTrailerField),
    ])
    func chunkRefusals(body: String, expected: HTTP1ParseError) {
        for step in [1, 1000] {
            guard case .failure(let error) = self.body(body, .chunked, step: step) else { Issue.record("accepted \(body.debugDescription)"); continue }
            #expect(error == expected, "\(body.debugDescription) in steps of \(step)")
        }
    }

    @Test func aBodyCutShortIsAnError() {
        for (body, framing) in [("abc", HTTP1Framing.length(5)), ("5\r\nab", .chunked), ("0\r\nX: y\r\n", .chunked)] {
            guard case .failure(let error) = self.body(body, framing, step: 1, closed: true) else { Issue.record("\(body.debugDescription) accepted as whole"); continue }
            #expect(error == .truncatedBody)
        }
    }
}
