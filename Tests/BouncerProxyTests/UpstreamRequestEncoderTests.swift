import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// Records each write as it reaches it (before any flush).
final class WriteRecorder: ChannelOutboundHandler {
    typealias OutboundIn = IOData
    var writes: [String] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .byteBuffer(let buffer) = self.unwrapOutboundIn(data) { self.writes.append(String(buffer: buffer)) }
        context.write(data, promise: promise)
    }
}

@Suite("Upstream request encoding")
struct UpstreamRequestEncoderTests {
    func head(_ method: HTTPMethod, _ uri: String, _ headers: [(String, String)]) -> HTTPClientRequestPart {
        .head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers)))
    }

    func body(_ text: String) -> HTTPClientRequestPart {
        .body(.byteBuffer(ByteBuffer(string: text)))
    }

    func makeChannel() throws -> (EmbeddedChannel, WriteRecorder) {
        let recorder = WriteRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(recorder, UpstreamRequestEncoder())
        return (channel, recorder)
    }

    /// What reached the channel, write by write: the same as the recorder saw, now read off.
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

    @Test func headAndBodyGoOutAsOneWriteAtTheEnd() throws {
        let (channel, recorder) = try self.makeChannel()
        channel.write(self.head(.POST, "/mcp?x=1", [("Host", "up:8080"), ("Content-Length", "2")]), promise: nil)
        channel.write(self.body("{}"), promise: nil)
        #expect(recorder.writes.isEmpty, "nothing before the end")
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        #expect(recorder.writes == ["POST /mcp?x=1 HTTP/1.1\r\nHost: up:8080\r\nContent-Length: 2\r\n\r\n{}"])
        let parts = try self.parse(recorder.writes.joined())
        guard parts.count == 3, case .head(let head) = parts[0], case .body(let body) = parts[1], case .end = parts[2] else {
            Issue.record("not one request: \(parts)")
            return
        }
        #expect(head.method == .POST && head.uri == "/mcp?x=1" && head.headers.first(name: "host") == "up:8080")
        #expect(String(buffer: body) == "{}")
        #expect(try self.outbound(channel) == recorder.writes)
        #expect(try channel.finish().isClean)
    }

    @Test func aRequestWithoutBody() throws {
        let (channel, recorder) = try self.makeChannel()
        channel.write(self.head(.GET, "/mcp", [("Host", "up"), ("Accept", "text/event-stream")]), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        #expect(recorder.writes == ["GET /mcp HTTP/1.1\r\nHost: up\r\nAccept: text/event-stream\r\n\r\n"])
        #expect(try self.outbound(channel) == recorder.writes)
        #expect(try channel.finish().isClean)
    }

    @Test func aLargeBodyIsNotCopied() throws {
        let (channel, recorder) = try self.makeChannel()
        let body = String(repeating: "a", count: UpstreamRequestEncoder.copyLimit + 1)
        channel.write(self.head(.POST, "/mcp", [("Content-Length", "\(body.utf8.count)")]), promise: nil)
        channel.write(self.body(body), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        #expect(recorder.writes == ["POST /mcp HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n", body])
        #expect(try self.outbound(channel) == recorder.writes)
        #expect(try channel.finish().isClean)
    }

    @Test func aFlushOrAPromisePassesPendingBytesOnInOrder() throws {
        let (channel, recorder) = try self.makeChannel()
        channel.write(self.head(.POST, "/a", [("Content-Length", "2")]), promise: nil)
        channel.flush()
        #expect(recorder.writes == ["POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n"])
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(self.body("x"), promise: promise)
        #expect(recorder.writes.last == "x", "written at once for its promise")
        channel.write(self.body("y"), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        #expect(recorder.writes == ["POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n", "x", "y"])
        #expect(throws: Never.self) { try promise.futureResult.wait() }
        #expect(try self.outbound(channel) == recorder.writes)
        #expect(try channel.finish().isClean)
    }

    @Test func bodyBytesWithoutALengthAreRefused() throws {
        let (channel, recorder) = try self.makeChannel()
        channel.write(self.head(.POST, "/mcp", [("Host", "up")]), promise: nil)
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(self.body("{}"), promise: promise)
        #expect(throws: UpstreamError.unframedBody) { try promise.futureResult.wait() }
        #expect(throws: UpstreamError.unframedBody) { try channel.throwIfErrorCaught() }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        #expect(recorder.writes == ["POST /mcp HTTP/1.1\r\nHost: up\r\n\r\n"], "the body never left")
        #expect(try self.outbound(channel) == recorder.writes)
        #expect(try channel.finish().isClean)
    }
}
