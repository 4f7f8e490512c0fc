import NIOCore
import NIOHTTP1
import NIOPosix

/// A request as the development servers see it: head and whole body.
package struct DevRequest: Sendable {
    package var method: HTTPMethod
    package var path: String
    package var query: String
    package var headers: HTTPHeaders
    package var body: [UInt8]

    package init(method: HTTPMethod, path: String, query: String = "", headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    package func header(_ name: String) -> String? { self.headers.first(name: name) }
}

/// A development server's answer: whole, or a stream of chunks written with delays (SSE).
package enum DevResponse: Sendable {
    case full(status: HTTPResponseStatus, headers: [(String, String)], body: [UInt8])
    case stream(status: HTTPResponseStatus, headers: [(String, String)], chunks: [(delay: TimeAmount, text: String)])
    /// A stream whose chunks are decided as it goes: `next(n)` gives the n-th chunk (written
    /// after its delay; an empty text writes nothing), or nil to end the response.
    case live(status: HTTPResponseStatus, headers: [(String, String)], next: @Sendable (Int) -> (delay: TimeAmount, text: String)?)

    package static func json(_ status: HTTPResponseStatus, _ body: String, headers: [(String, String)] = []) -> DevResponse {
        .full(status: status, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")] + headers, body: Array(body.utf8))
    }

    package static func empty(_ status: HTTPResponseStatus, headers: [(String, String)] = []) -> DevResponse {
        .full(status: status, headers: headers, body: [])
    }
}

/// The small HTTP/1.1 server under the development authorization server and the sample MCP
/// server. Development only: request bodies are capped at 1 MiB, nothing is tuned.
package final class DevHTTPServer: Sendable {
    private let group: any EventLoopGroup
    private let handler: @Sendable (DevRequest) -> DevResponse

    package init(group: any EventLoopGroup, handler: @escaping @Sendable (DevRequest) -> DevResponse) {
        self.group = group
        self.handler = handler
    }

    /// Binds and returns the listening channel (port 0 picks a free port).
    package func bind(host: String, port: Int) -> EventLoopFuture<any Channel> {
        let handler = self.handler
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(DevConnectionHandler(handler: handler))
                }
            }
            .bind(host: host, port: port)
    }
}

private final class DevConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: @Sendable (DevRequest) -> DevResponse
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(handler: @escaping @Sendable (DevRequest) -> DevResponse) {
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
        case .body(var buffer):
            guard self.body.count + buffer.readableBytes <= 1024 * 1024 else {
                context.close(promise: nil)
                return
            }
            self.body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head = self.head else { return }
            let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            let request = DevRequest(method: head.method, path: String(parts[0]), query: parts.count > 1 ? String(parts[1]) : "", headers: head.headers, body: self.body)
            self.respond(self.handler(request), keepAlive: head.isKeepAlive, context: context)
        }
    }

    private func respond(_ response: DevResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        switch response {
        case .full(let status, let headers, let body):
            var head = HTTPResponseHead(version: .http1_1, status: status)
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            head.headers.add(name: "Content-Length", value: String(body.count))
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            if !body.isEmpty { context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
            let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        case .stream(let status, let headers, let chunks):
            var head = HTTPResponseHead(version: .http1_1, status: status)
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            context.writeAndFlush(self.wrapOutboundOut(.head(head)), promise: nil)
            self.writeChunks(chunks[...], keepAlive: keepAlive, context: context)
        case .live(let status, let headers, let next):
            var head = HTTPResponseHead(version: .http1_1, status: status)
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            context.writeAndFlush(self.wrapOutboundOut(.head(head)), promise: nil)
            self.writeLive(next, index: 0, keepAlive: keepAlive, context: context)
        }
    }

    private func writeLive(_ next: @escaping @Sendable (Int) -> (delay: TimeAmount, text: String)?, index: Int, keepAlive: Bool, context: ChannelHandlerContext) {
        guard let chunk = next(index) else {
            let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
            return
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: chunk.delay) {
            guard context.channel.isActive else { return }
            if !chunk.text.isEmpty { context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: chunk.text)))), promise: nil) }
            self.writeLive(next, index: index + 1, keepAlive: keepAlive, context: context)
        }
    }

    private func writeChunks(_ chunks: ArraySlice<(delay: TimeAmount, text: String)>, keepAlive: Bool, context: ChannelHandlerContext) {
        guard let first = chunks.first else {
            let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
            return
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: first.delay) {
            guard context.channel.isActive else { return }
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: first.text)))), promise: nil)
            self.writeChunks(chunks.dropFirst(), keepAlive: keepAlive, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension DevConnectionHandler: Sendable {}
