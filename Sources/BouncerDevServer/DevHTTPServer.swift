import BouncerCore
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
/// server, on the gateway's own codec (``HTTP1RequestReader``) like everything else that speaks
/// HTTP/1.1 in the binary. Development only: request bodies are capped at 1 MiB, a request the
/// codec refuses gets a 400 and the connection closed, nothing is tuned.
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
                    try channel.pipeline.syncOperations.addHandler(DevConnectionHandler(handler: handler))
                }
            }
            .bind(host: host, port: port)
    }
}

private final class DevConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxBodyBytes = 1024 * 1024

    private let handler: @Sendable (DevRequest) -> DevResponse
    private var reader = HTTP1RequestReader(maxHeadBytes: 64 * 1024, maxFields: 256)
    private var head: HTTP1RequestReader.Head?
    private var body: [UInt8] = []
    /// A response is being streamed: requests read meanwhile wait for it to end.
    private var streaming = false
    /// The codec refused the connection's bytes: it is answered once and closes.
    private var refused = false
    /// Requests read and not answered yet (pipelined, or read during a stream).
    private var waiting: [(head: HTTP1RequestReader.Head, body: [UInt8])] = []

    init(handler: @escaping @Sendable (DevRequest) -> DevResponse) {
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.refused else { return }
        self.reader.append(self.unwrapInboundIn(data))
        do {
            while let event = try self.reader.next() {
                switch event {
                case .head(let head):
                    self.head = head
                    self.body = []
                case .body(let buffer):
                    guard self.body.count + buffer.readableBytes <= Self.maxBodyBytes else {
                        context.close(promise: nil)
                        return
                    }
                    self.body += buffer.readableBytesView
                case .end:
                    guard let head = self.head else { continue }
                    self.head = nil
                    self.waiting.append((head, self.body))
                    self.serveWaiting(context: context)
                }
            }
        } catch {
            self.refused = true
            let text = "bad request: \(error)\n"
            self.respond(.full(status: HTTPResponseStatus(statusCode: error.status), headers: [("Content-Type", "text/plain")], body: Array(text.utf8)), keepAlive: false, context: context)
        }
    }

    /// Answers the requests read so far, in order, until one streams.
    private func serveWaiting(context: ChannelHandlerContext) {
        while !self.streaming, context.channel.isActive, !self.waiting.isEmpty {
            let (head, body) = self.waiting.removeFirst()
            self.serve(head, body: body, context: context)
        }
    }

    private func serve(_ head: HTTP1RequestReader.Head, body: [UInt8], context: ChannelHandlerContext) {
        let target = head.string(head.target)
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let headers = HTTPHeaders(head.fields.map { (head.string($0.name), head.string($0.value)) })
        let request = DevRequest(method: HTTPMethod(rawValue: head.method.name), path: String(parts[0]), query: parts.count > 1 ? String(parts[1]) : "", headers: headers, body: body)
        self.respond(self.handler(request), keepAlive: head.isKeepAlive, context: context)
    }

    /// The status line and fields; a streamed response without a Content-Length is chunked.
    private func writeHead(_ status: HTTPResponseStatus, _ headers: [(String, String)], contentLength: Int?, keepAlive: Bool, context: ChannelHandlerContext) -> Bool {
        var buffer = ByteBuffer(string: "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        for (name, value) in headers { buffer.writeString("\(name): \(value)\r\n") }
        let declared = headers.contains { $0.0.equalsIgnoringASCIICase("content-length") }
        if let contentLength, !declared { buffer.writeString("Content-Length: \(contentLength)\r\n") }
        let chunked = contentLength == nil && !declared
        if chunked { buffer.writeStaticString("Transfer-Encoding: chunked\r\n") }
        if !keepAlive { buffer.writeStaticString("Connection: close\r\n") }
        buffer.writeStaticString("\r\n")
        context.write(self.wrapOutboundOut(buffer), promise: nil)
        return chunked
    }

    private func respond(_ response: DevResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        switch response {
        case .full(let status, let headers, let body):
            _ = self.writeHead(status, headers, contentLength: body.count, keepAlive: keepAlive, context: context)
            let done = context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: body)))
            if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        case .stream(let status, let headers, let chunks):
            var remaining = chunks[...]
            self.stream(status, headers, next: { _ in remaining.popFirst() }, keepAlive: keepAlive, context: context)
        case .live(let status, let headers, let next):
            self.stream(status, headers, next: next, keepAlive: keepAlive, context: context)
        }
    }

    private func stream(_ status: HTTPResponseStatus, _ headers: [(String, String)], next: @escaping (Int) -> (delay: TimeAmount, text: String)?, keepAlive: Bool,
                        context: ChannelHandlerContext) {
        let chunked = self.writeHead(status, headers, contentLength: nil, keepAlive: keepAlive, context: context)
        context.flush()
        self.streaming = true
        self.writeLive(next, index: 0, chunked: chunked, keepAlive: keepAlive, context: context)
    }

    private func writeLive(_ next: @escaping (Int) -> (delay: TimeAmount, text: String)?, index: Int, chunked: Bool, keepAlive: Bool, context: ChannelHandlerContext) {
        guard let chunk = next(index) else {
            self.streaming = false
            let done = context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: chunked ? "0\r\n\r\n" : "")))
            if !keepAlive || !chunked {
                done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                self.serveWaiting(context: context)
            }
            return
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: chunk.delay) {
            guard context.channel.isActive else { return }
            if !chunk.text.isEmpty {
                let size = chunk.text.utf8.count
                let framed = chunked ? "\(String(size, radix: 16))\r\n\(chunk.text)\r\n" : chunk.text
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: framed)), promise: nil)
            }
            self.writeLive(next, index: index + 1, chunked: chunked, keepAlive: keepAlive, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension DevConnectionHandler: Sendable {}
