import BouncerDevServer
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

/// The development servers' HTTP/1.1 server on the gateway's codec: framing of whole and
/// streamed answers, pipelined requests in order, refusals.
@Suite("Development HTTP server")
struct DevHTTPServerTests {
    /// Sends `raw` and returns what came back by the time the server closed (at most 5 s).
    static func exchange(_ raw: String, handler: @escaping @Sendable (DevRequest) -> DevResponse) async throws -> String {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await DevHTTPServer(group: group, handler: handler).bind(host: "127.0.0.1", port: 0).get()
        let received = NIOLockedValueBox("")
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(received: received)) }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        try await channel.writeAndFlush(ByteBuffer(string: raw))
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        try await channel.closeFuture.get()
        timeout.cancel()
        try await server.close()
        return received.withLockedValue { $0 }
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAroundAStream() async throws {
        let answer = try await Self.exchange(
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\nPOST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        ) { request in
            switch request.path {
            case "/stream": .stream(status: .ok, headers: [("Content-Type", "text/event-stream")], chunks: [(.milliseconds(10), "data: 1\n\n"), (.milliseconds(10), "data: 2\n\n")])
            default: .json(.ok, #"{"path":"\#(request.path)","query":"\#(request.query)","body":"\#(String(decoding: request.body, as: UTF8.self))"}"#)
            }
        }
        let first = answer.range(of: #"{"path":"/a","query":"","body":""}"#)
        let stream = answer.range(of: "Transfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n")
        let last = answer.range(of: #"{"path":"/b","query":"q=1","body":"abc"}"#)
        #expect(first != nil && stream != nil && last != nil, "\(answer.debugDescription)")
        if let first, let stream, let last { #expect(first.upperBound <= stream.lowerBound && stream.upperBound <= last.lowerBound) }
    }

    @Test func aRequestTheCodecRefusesGets400AndTheClose() async throws {
        let answer = try await Self.exchange("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx") { _ in .empty(.ok) }
        #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(answer.contains("Connection: close\r\n"))
    }

    /// A refusal carries its own status and reason, and is the connection's only answer
    /// however many more requests were sent behind it.
    @Test func aRefusalIsAnsweredOnceWithItsStatus() async throws {
        let long = String(repeating: "a", count: 70 * 1024)
        let answer = try await Self.exchange("GET / HTTP/1.1\r\nHost: x\r\nX: \(long)\r\n\r\n" + String(repeating: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", count: 20)) { _ in .empty(.ok) }
        #expect(answer.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(answer.components(separatedBy: "HTTP/1.1 ").count == 2, "\(answer.prefix(300).debugDescription)")
    }
}

private final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received: NIOLockedValueBox<String>

    init(received: NIOLockedValueBox<String>) { self.received = received }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: self.unwrapInboundIn(data))
        self.received.withLockedValue { $0 += text }
    }
}
