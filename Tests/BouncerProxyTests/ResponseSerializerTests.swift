import BouncerCore
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

@Suite("Response serialisation")
struct ResponseSerializerTests {
    func head(
        _ status: HTTPResponseStatus, _ headers: [(String, String)], extra: [(String, String)] = [], method: HTTPMethod = .POST,
        version: HTTPVersion = .http1_1, keepAlive: Bool = true, include: (String) -> Bool = { _ in true }
    ) throws -> (String, ResponseBodyFraming) {
        var buffer = ByteBuffer()
        let framing = try ResponseSerializer.writeHead(
            status: status, headers: HTTPHeaders(headers), include: { include(String(decoding: $0, as: UTF8.self)) }, extra: extra, requestMethod: method,
            requestVersion: version, keepAlive: keepAlive, into: &buffer
        )
        return (String(buffer: buffer), framing)
    }

    @Test func contentLengthIsKeptAndTransferEncodingDropped() throws {
        let (text, framing) = try self.head(.ok, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"), ("Content-Length", "2")])
        #expect(text == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        #expect(framing == .contentLength)
    }

    @Test func aBodyWithoutALengthIsChunked() throws {
        let (text, framing) = try self.head(.ok, [("Content-Type", "text/event-stream"), ("transfer-encoding", "gzip, chunked")])
        #expect(text == "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(framing == .chunked)
    }

    @Test func statusesWithoutABodyCarryNoFraming() throws {
        for status in [HTTPResponseStatus.noContent, .notModified] {
            let (text, framing) = try self.head(status, [("ETag", "\"x\""), ("Content-Length", "10"), ("Transfer-Encoding", "chunked")])
            #expect(text == "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nETag: \"x\"\r\n\r\n")
            #expect(framing == .none)
        }
        let (interim, framing) = try self.head(.continue, [])
        #expect(interim == "HTTP/1.1 100 Continue\r\n\r\n")
        #expect(framing == .none)
    }

    @Test func aHeadResponseDescribesTheBodyItDoesNotHave() throws {
        let (sized, sizedFraming) = try self.head(.ok, [("Content-Length", "42")], method: .HEAD)
        #expect(sized == "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
        #expect(sizedFraming == .none)
        let (chunked, chunkedFraming) = try self.head(.ok, [], method: .HEAD)
        #expect(chunked == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(chunkedFraming == .none)
    }

    @Test func filteredAndExtraHeaders() throws {
        let (text, _) = try self.head(
            .ok, [("X-Dropped", "1"), ("X-Kept", "1"), ("Keep-Alive", "timeout=5")], extra: [("X-Added", "2"), ("Content-Length", "0")],
            include: { !["x-dropped", "keep-alive"].contains($0.lowercased()) }
        )
        #expect(text == "HTTP/1.1 200 OK\r\nX-Kept: 1\r\nX-Added: 2\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func connectionIsTheSerialisersToSay() throws {
        // Whatever the headers say, `Connection` follows `keepAlive`: one field, never two.
        let (closing, _) = try self.head(.ok, [("Connection", "keep-alive"), ("Content-Length", "0")], extra: [("connection", "upgrade")], keepAlive: false)
        #expect(closing == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        let (persisting, _) = try self.head(.ok, [("Connection", "close"), ("Content-Length", "0")])
        #expect(persisting == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        // An interim response says nothing about the connection: the final one does.
        let (interim, _) = try self.head(.continue, [], keepAlive: false)
        #expect(interim == "HTTP/1.1 100 Continue\r\n\r\n")
    }

    @Test func anHTTP10ClientNeverGetsChunked() throws {
        // RFC 9112 6.1: no Transfer-Encoding unless the request was HTTP/1.1; a body of unknown
        // length ends with the connection (6.3, rule 8), and the head says so.
        let (stream, streamFraming) = try self.head(.ok, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")], version: .http1_0)
        #expect(stream == "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        #expect(streamFraming == .untilClose)
        // With a length, a keep-alive HTTP/1.0 client is told the connection persists (9.3).
        let (sized, sizedFraming) = try self.head(.ok, [("Content-Length", "2")], version: .http1_0)
        #expect(sized == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n")
        #expect(sizedFraming == .contentLength)
        let (closing, _) = try self.head(.ok, [("Content-Length", "2")], version: .http1_0, keepAlive: false)
        #expect(closing == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
        // A HEAD response has no body to delimit: the connection can persist.
        let (described, describedFraming) = try self.head(.ok, [], method: .HEAD, version: .http1_0)
        #expect(described == "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n")
        #expect(describedFraming == .none)
    }

    @Test func theReasonPhraseIsNeverTheUpstreams() throws {
        let (text, _) = try self.head(.custom(code: 200, reasonPhrase: "Fine\r\nSet-Cookie: a=b"), [("Content-Length", "0")])
        #expect(text == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        let (unknown, _) = try self.head(.custom(code: 599, reasonPhrase: "Whatever"), [("Content-Length", "0")])
        #expect(unknown.hasPrefix("HTTP/1.1 599 "))
        #expect(!unknown.contains("Whatever"))
        #expect(throws: ResponseSerializer.InvalidHeader.self) { try self.head(.custom(code: 1000, reasonPhrase: ""), []) }
        #expect(throws: ResponseSerializer.InvalidHeader.self) { try self.head(.custom(code: 99, reasonPhrase: ""), []) }
    }

    @Test func headersThatCouldSplitTheResponseAreRefusedAndNothingIsWritten() throws {
        let hostile: [(String, String)] = [
            ("X-A", "a\r\nSet-Cookie: session=stolen"), ("X-A", "a\nb"), ("X-A", "a\rb"), ("X-A", "a\u{0}b"), ("X-A", "a\u{7F}b"), ("X-A", "a\u{1B}b"),
            ("X A", "a"), ("X-A:", "a"), ("", "a"), ("X-\u{E9}", "a"), ("X-A\r\nX-B", "a"),
        ]
        for field in hostile {
            var buffer = ByteBuffer(string: "kept")
            #expect(throws: ResponseSerializer.InvalidHeader.self, "\(field)") {
                try ResponseSerializer.writeHead(status: .ok, headers: HTTPHeaders([("Content-Length", "0"), field]), requestMethod: .GET, requestVersion: .http1_1, keepAlive: true, into: &buffer)
            }
            #expect(String(buffer: buffer) == "kept", "nothing written for \(field)")
        }
        // HTAB, and bytes beyond ASCII (obs-text), are legal in a value.
        let (text, _) = try self.head(.ok, [("X-A", "a\tb"), ("X-B", "caf\u{E9}"), ("Content-Length", "0")])
        #expect(text.contains("X-A: a\tb\r\nX-B: caf\u{E9}\r\n"))
    }

    @Test func bodiesAreFramedForTheirResponse() {
        let allocator = ByteBufferAllocator()
        func bytes(_ framed: ResponseSerializer.FramedBody) -> String? {
            switch framed {
            case .nothing: return nil
            case .one(let buffer): return String(buffer: buffer)
            case .chunk(let prefix, let body): return String(buffer: prefix) + "|" + String(buffer: body)
            }
        }
        #expect(bytes(ResponseSerializer.frame(ByteBuffer(string: "hello"), as: .contentLength, allocator: allocator)) == "hello")
        #expect(bytes(ResponseSerializer.frame(ByteBuffer(string: "data: x\n\n"), as: .untilClose, allocator: allocator)) == "data: x\n\n")
        #expect(bytes(ResponseSerializer.frame(ByteBuffer(string: "hello"), as: .none, allocator: allocator)) == nil)
        #expect(bytes(ResponseSerializer.frame(ByteBuffer(string: "data: x\n\n"), as: .chunked, allocator: allocator)) == "9\r\ndata: x\n\n\r\n")
        // An empty chunk would end the body early: nothing is written for it.
        #expect(bytes(ResponseSerializer.frame(ByteBuffer(), as: .chunked, allocator: allocator)) == nil)
        let large = String(repeating: "x", count: ResponseSerializer.copyLimit + 1)
        #expect(bytes(ResponseSerializer.frame(ByteBuffer(string: large), as: .chunked, allocator: allocator)) == "1001\r\n|" + large)
    }

    /// An upstream's head relayed from the codec's ranges is the head relayed from the same
    /// fields as Strings, byte for byte: hop-by-hop and Connection-nominated fields dropped,
    /// the gateway's replacements and extras in place, framing re-derived.
    @Test func aHeadRelayedFromTheRangesIsTheHeadFromStrings() throws {
        let pool = [
            "Content-Type: application/json", "content-type: text/event-stream", "Content-Length: 12", "Transfer-Encoding: chunked",
            "Connection: keep-alive, X-Hop", "connection: close", "X-Hop: 1", "Keep-Alive: timeout=5", "DPoP-Nonce: n1", "Mcp-Session-Id: s1",
            "mcp-session-id: s2", "Server: uvicorn", "Date: Sun, 06 Dec 2026 01:00:00 GMT", "X-Custom: a value", "Upgrade: h2c", "TE: trailers",
            "Cache-Control: no-store", "WWW-Authenticate: Bearer error=\"invalid_token\"", "Trailer: X-T", "Proxy-Authenticate: Basic",
        ]
        var random = SplitMix64(seed: 9)
        for _ in 0..<2000 {
            let status = [200, 202, 204, 304, 401, 500][Int(random.next() % 6)]
            let lines = (0..<Int(random.next() % 8)).map { _ in pool[Int(random.next() % UInt64(pool.count))] }
            var reader = HTTP1ResponseReader()
            reader.append(ByteBuffer(string: "HTTP/1.1 \(status) X\r\n\(lines.map { $0 + "\r\n" }.joined())\r\n"))
            guard case .head(let wire)? = try? reader.next() else { continue }
            var relayed = RelayedResponseHead(wire)
            var built = RelayedResponseHead(status: HTTPResponseStatus(statusCode: status), headers: wire.decoded().headers)
            if random.next() % 2 == 0 {
                relayed.replace("Mcp-Session-Id", with: "sealed")
                built.replace("Mcp-Session-Id", with: "sealed")
            }
            let extra = random.next() % 3 == 0 ? [("DPoP-Nonce", "gateway-nonce")] : []
            let rewritten: RewrittenBody? = [nil, .length(5), .unknownLength][Int(random.next() % 3)]
            let method: HTTPMethod = random.next() % 4 == 0 ? .HEAD : .POST
            let version: HTTPVersion = random.next() % 4 == 0 ? .http1_0 : .http1_1
            var writer = ResponseWriter()
            writer.answer(method: method, version: version)
            var other = writer
            let fromRanges = try writer.serialiseHead(relayed, keepAlive: true, allocator: ByteBufferAllocator(), rewritten: rewritten, extra: extra)
            let fromStrings = try other.serialiseHead(built, keepAlive: true, allocator: ByteBufferAllocator(), rewritten: rewritten, extra: extra)
            #expect(String(buffer: fromRanges) == String(buffer: fromStrings), "\(status) \(lines)")
            #expect(writer.framing == other.framing)
            #expect(!String(buffer: fromRanges).lowercased().contains("x-hop") || !lines.contains { $0.contains("X-Hop") && $0.lowercased().hasPrefix("connection") })
        }
    }

    /// A response's media type read from the first Content-Type's bytes, as from its String:
    /// by prefix, ASCII case-insensitively, parameters after it.
    @Test func theMediaTypeIsReadFromTheBytes() throws {
        let cases: [(String?, ResponseMediaType?)] = [
            ("application/json", .json), ("Application/JSON; charset=utf-8", .json), ("text/event-stream", .eventStream),
            ("TEXT/Event-Stream;x=1", .eventStream), ("text/event", .other), ("application/jso", .other), ("text/plain", .other), ("", .other), (nil, nil),
        ]
        for (type, expected) in cases {
            var reader = HTTP1ResponseReader()
            let field = type.map { "Content-Type: \($0)\r\n" } ?? "X-Other: 1\r\n"
            reader.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\(field)content-type: text/event-stream\r\n\r\n"))
            guard case .head(let wire)? = try reader.next() else {
                Issue.record("no head for \(String(describing: type))")
                continue
            }
            let firstIsOther = type == nil
            let expectedWire: ResponseMediaType? = firstIsOther ? .eventStream : expected
            #expect(RelayedResponseHead(wire).mediaType == expectedWire, "\(String(describing: type))")
            #expect(RelayedResponseHead(status: .ok, headers: wire.decoded().headers).mediaType == expectedWire, "\(String(describing: type))")
        }
        var reader = HTTP1ResponseReader()
        reader.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n"))
        guard case .head(let wire)? = try reader.next() else { throw HTTP1ParseError.bareLineEnding }
        #expect(RelayedResponseHead(wire).mediaType == nil)
    }
}
