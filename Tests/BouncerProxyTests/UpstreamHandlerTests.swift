import BouncerCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// An upstream connection's one handler in an `EmbeddedChannel`: each request written as one
/// buffer (checked by NIO's own request parser), and the upstream's bytes read as responses by
/// the gateway's codec, whatever reads they come in, with interim heads, HEAD, a body framed by
/// the connection's end, a response cut short, and bytes nobody asked for.
@Suite("Upstream connection handler")
struct UpstreamHandlerTests {
    /// What the handler told its sink, as text.
    final class Recorder: UpstreamResponseSink {
        var events: [String] = []
        func upstreamInterimResponse(_ head: RelayedResponseHead) { self.events.append("interim \(head.status.code)") }
        func upstreamResponseHead(_ head: RelayedResponseHead) {
            self.events.append("head \(head.status.code) \(head.decoded.headers.map { "\($0.name)=\($0.value)" })")
        }
        func upstreamResponseBody(_ buffer: ByteBuffer) {
            if let last = self.events.last, last.hasPrefix("body ") { self.events[self.events.count - 1] = last + String(buffer: buffer) } else { self.events.append("body " + String(buffer: buffer)) }
        }
        func upstreamResponseEnd(keepAlive: Bool) { self.events.append("end keepAlive=\(keepAlive)") }
        func upstreamRequestWritten() { self.events.append("written") }
        func upstreamReadComplete() {}
        func upstreamFailed(_ error: any Error) { self.events.append("failed \(error)") }
    }

    func makeChannel() throws -> (EmbeddedChannel, UpstreamHandler, Recorder) {
        let handler = UpstreamHandler()
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.2", port: 80)).wait()
        let recorder = Recorder()
        handler.sink = recorder
        return (channel, handler, recorder)
    }

    func head(_ method: HTTPMethod, _ uri: String, _ headers: [(String, String)]) -> UpstreamRequestHead {
        UpstreamRequestHead(method: method, uri: uri, fields: headers.map { (name: $0.0, value: $0.1) })
    }

    func outbound(_ channel: EmbeddedChannel) throws -> [String] {
        var writes: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { writes.append(String(buffer: buffer)) }
        return writes
    }

    /// Parses `bytes` with NIO's request decoder: an independent check of the framing.
    func parse(_ bytes: String) throws -> [HTTPServerRequestPart] {
        let server = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        try server.writeInbound(ByteBuffer(string: bytes))
        var parts: [HTTPServerRequestPart] = []
        while let part = try server.readInbound(as: HTTPServerRequestPart.self) { parts.append(part) }
        return parts
    }

    @Test func headAndBodyGoOutAsOneWrite() throws {
        let (channel, handler, recorder) = try self.makeChannel()
        handler.send(self.head(.POST, "/mcp?x=1", [("Host", "up:8080"), ("Content-Length", "2")]), body: ByteBuffer(string: "{}"))
        let writes = try self.outbound(channel)
        #expect(writes == ["POST /mcp?x=1 HTTP/1.1\r\nHost: up:8080\r\nContent-Length: 2\r\n\r\n{}"])
        let parts = try self.parse(writes.joined())
        guard parts.count == 3, case .head(let head) = parts[0], case .body(let body) = parts[1], case .end = parts[2] else {
            Issue.record("not one request: \(parts)")
            return
        }
        #expect(head.method == .POST && head.uri == "/mcp?x=1" && head.headers.first(name: "host") == "up:8080")
        #expect(String(buffer: body) == "{}")
        #expect(recorder.events == ["written"])
    }

    @Test func aLargeBodyIsNotCopied() throws {
        let (channel, handler, _) = try self.makeChannel()
        let body = String(repeating: "a", count: UpstreamRequestSerializer.copyLimit + 1)
        handler.send(self.head(.POST, "/mcp", [("Content-Length", "\(body.utf8.count)")]), body: ByteBuffer(string: body))
        #expect(try self.outbound(channel) == ["POST /mcp HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n", body])
    }

    @Test func bodyBytesWithoutALengthAreRefused() throws {
        let (channel, handler, recorder) = try self.makeChannel()
        handler.send(self.head(.POST, "/mcp", [("Host", "up")]), body: ByteBuffer(string: "{}"))
        #expect(try self.outbound(channel).isEmpty, "nothing left")
        #expect(recorder.events == ["failed \(UpstreamError.unframedBody)"])
    }

    /// The same response bytes, whole and cut at every offset, tell the sink the same.
    @Test func responsesAreReadWhateverTheReads() throws {
        let wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
        let expected = ["written", "interim 100", "interim 103", "head 200 [\"Content-Type=text/event-stream\", \"Transfer-Encoding=chunked\"]", "body hello world", "end keepAlive=true"]
        let bytes = Array(wire.utf8)
        for cut in 0...bytes.count {
            let (channel, handler, recorder) = try self.makeChannel()
            handler.send(self.head(.POST, "/mcp", [("Content-Length", "2")]), body: ByteBuffer(string: "{}"))
            try channel.writeInbound(ByteBuffer(bytes: bytes[..<cut]))
            try channel.writeInbound(ByteBuffer(bytes: bytes[cut...]))
            #expect(recorder.events == expected, "cut at \(cut)")
        }
    }

    @Test func aResponseToHEADHasNoBodyAndOneWithoutLengthEndsWithTheConnection() throws {
        let (channel, handler, recorder) = try self.makeChannel()
        handler.send(self.head(.HEAD, "/mcp", []), body: nil)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"))
        #expect(recorder.events == ["written", "head 200 [\"Content-Length=50\"]", "end keepAlive=true"])

        let (other, otherHandler, otherRecorder) = try self.makeChannel()
        otherHandler.send(self.head(.GET, "/mcp", []), body: nil)
        try other.writeInbound(ByteBuffer(string: "HTTP/1.0 200 OK\r\n\r\nuntil the end"))
        #expect(otherRecorder.events == ["written", "head 200 []", "body until the end"])
        other.pipeline.fireChannelInactive()
        #expect(otherRecorder.events.last == "end keepAlive=false")
    }

    @Test func aResponseCutShortFails() throws {
        let (channel, handler, recorder) = try self.makeChannel()
        handler.send(self.head(.GET, "/mcp", []), body: nil)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nabc"))
        channel.pipeline.fireChannelInactive()
        #expect(recorder.events == ["written", "head 200 [\"Content-Length=50\"]", "body abc", "failed \(UpstreamError.closedEarly)"])
    }

    @Test func whatTheCodecRefusesFailsTheExchangeAndClosesTheConnection() throws {
        for wire in ["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "HTTP/0.9 200\r\n\r\n", "<html>\r\n\r\n",
                     "HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"] {
            let (channel, handler, recorder) = try self.makeChannel()
            handler.send(self.head(.GET, "/mcp", []), body: nil)
            _ = try? channel.writeInbound(ByteBuffer(string: wire))
            #expect(recorder.events.count >= 2 && recorder.events.last!.hasPrefix("failed "), "\(wire.debugDescription): \(recorder.events)")
            #expect(!channel.isActive, "\(wire.debugDescription)")
        }
    }

    @Test func bytesNobodyAskedForCloseTheConnection() throws {
        let (channel, handler, recorder) = try self.makeChannel()
        handler.send(self.head(.GET, "/mcp", []), body: nil)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        #expect(recorder.events == ["written", "head 200 [\"Content-Length=0\"]", "end keepAlive=true"])
        #expect(!channel.isActive, "a second response nobody asked for")
    }
}
