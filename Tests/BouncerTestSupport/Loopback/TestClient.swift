import BouncerCore
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import BouncerProxy

/// A minimal HTTP/1.1 client for the tests: one request per connection.
package struct TestClient {
    package struct Response {
        package var status: HTTPResponseStatus
        package var headers: HTTPHeaders
        package var body: String
    }

    package let group: any EventLoopGroup

    package init(group: any EventLoopGroup) {
        self.group = group
    }

    package func send(port: Int, method: HTTPMethod = .POST, uri: String, headers: [(String, String)] = [], body: String = "") throws -> Response {
        let promise = self.group.next().makePromise(of: Response.self)
        let channel = try ClientBootstrap(group: self.group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Collector(promise: promise))
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
        head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Accept", value: "application/json, text/event-stream")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer { channel.close(promise: nil) }
        return try promise.futureResult.wait()
    }

    private final class Collector: ChannelInboundHandler {
        package typealias InboundIn = HTTPClientResponsePart
        package let promise: EventLoopPromise<Response>
        package var response: Response?

        package init(promise: EventLoopPromise<Response>) { self.promise = promise }

        package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head): self.response = Response(status: head.status, headers: head.headers, body: "")
            case .body(let buffer): self.response?.body += String(buffer: buffer)
            case .end: if let response { self.promise.succeed(response) }
            }
        }

        package func channelInactive(context: ChannelHandlerContext) {
            self.promise.fail(ChannelError.eof)
        }
    }
}
