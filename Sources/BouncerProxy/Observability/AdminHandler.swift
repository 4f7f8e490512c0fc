import BouncerCore
import NIOCore
import NIOHTTP1

/// One admin connection: requests read with the gateway's own codec (``HTTP1RequestReader``),
/// answered in order (`/metrics`, `/healthz`, `/readyz`; 405 for another method on them, 404
/// elsewhere). A request the codec refuses is answered with its status (400, 431, 501, 505)
/// and the connection closed; none of these endpoints takes a body, and one over
/// ``maxBodyBytes`` gets 413 and the close.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxHeadBytes = 16 * 1024
    static let maxFields = 100
    static let maxBodyBytes = 64 * 1024

    private let status: GatewayStatus
    private var reader = HTTP1RequestReader(maxHeadBytes: AdminHandler.maxHeadBytes, maxFields: AdminHandler.maxFields)
    /// The request being read: its method, path and whether the connection outlives it.
    private var request: (method: HTTP1Method, path: String, keepAlive: Bool)?
    private var bodyBytes = 0
    /// A response that closes the connection was written: nothing more is read.
    private var closing = false

    init(status: GatewayStatus) {
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closing else { return }
        self.reader.append(self.unwrapInboundIn(data))
        do {
            while !self.closing, let event = try self.reader.next() {
                switch event {
                case .head(let head):
                    let target = head.string(head.target)
                    let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? target
                    self.request = (head.method, path, head.isKeepAlive && head.violation == nil)
                    self.bodyBytes = 0
                    if let violation = head.violation {
                        self.respond(status: 400, body: "bad request: \(violation)\n", keepAlive: false, context: context)
                    }
                case .body(let body):
                    self.bodyBytes += body.readableBytes
                    if self.bodyBytes > Self.maxBodyBytes {
                        self.respond(status: 413, body: "the admin endpoints take no body\n", keepAlive: false, context: context)
                    }
                case .end:
                    guard let request = self.request else { continue }
                    self.request = nil
                    self.answer(request, context: context)
                }
            }
        } catch {
            self.respond(status: error.status, body: "bad request: \(error)\n", keepAlive: false, context: context)
        }
        context.flush()
    }

    private func answer(_ request: (method: HTTP1Method, path: String, keepAlive: Bool), context: ChannelHandlerContext) {
        let isRead = request.method == .GET || request.method == .HEAD
        switch request.path {
        case "/metrics" where isRead:
            self.respond(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: self.status.metrics(), head: request.method == .HEAD,
                         keepAlive: request.keepAlive, context: context)
        case "/healthz" where isRead:
            self.respond(status: 200, body: "ok\n", head: request.method == .HEAD, keepAlive: request.keepAlive, context: context)
        case "/readyz" where isRead:
            let readiness = self.status.gateway.readiness
            self.respond(status: readiness.ready ? 200 : 503, body: readiness.text, head: request.method == .HEAD, keepAlive: request.keepAlive, context: context)
        case "/metrics", "/healthz", "/readyz":
            self.respond(status: 405, body: "method not allowed\n", allow: true, keepAlive: request.keepAlive, context: context)
        default:
            self.respond(status: 404, body: "not found: the admin listener serves /metrics, /healthz and /readyz\n", keepAlive: request.keepAlive, context: context)
        }
    }

    private func respond(status: Int, body: String, head: Bool = false, allow: Bool = false, keepAlive: Bool, context: ChannelHandlerContext) {
        self.respond(status: status, contentType: "text/plain", body: Array(body.utf8), head: head, allow: allow, keepAlive: keepAlive, context: context)
    }

    /// Writes one response (not flushed: ``channelRead(context:data:)`` flushes after the read's
    /// requests); one that does not keep the connection closes it once written.
    private func respond(status: Int, contentType: String, body: [UInt8], head: Bool = false, allow: Bool = false, keepAlive: Bool, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 160 + (head ? 0 : body.count))
        buffer.writeString("HTTP/1.1 \(status) \(HTTPResponseStatus(statusCode: status).reasonPhrase)\r\n")
        buffer.writeString("Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n")
        if allow { buffer.writeStaticString("Allow: GET, HEAD\r\n") }
        if !keepAlive { buffer.writeStaticString("Connection: close\r\n") }
        buffer.writeStaticString("\r\n")
        if !head { buffer.writeBytes(body) }
        guard !keepAlive else {
            context.write(self.wrapOutboundOut(buffer), promise: nil)
            return
        }
        self.closing = true
        context.writeAndFlush(self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}
