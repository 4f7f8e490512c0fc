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
    /// The request being read: its method, version, path and whether the connection outlives it.
    private var request: Request?
    private struct Request {
        var method: HTTPMethod
        var version: HTTPVersion
        var path: String
        var keepAlive: Bool
    }
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
                    let violation = head.violation
                    self.request = Request(
                        method: HTTPMethod(rawValue: head.method.name), version: head.version == .http11 ? .http1_1 : .http1_0, path: path,
                        keepAlive: head.isKeepAlive && violation == nil)
                    self.bodyBytes = 0
                    if let violation {
                        self.respond(status: .badRequest, body: "bad request: \(violation)\n", keepAlive: false, context: context)
                    }
                case .body(let body):
                    self.bodyBytes += body.readableBytes
                    if self.bodyBytes > Self.maxBodyBytes {
                        self.respond(status: .payloadTooLarge, body: "the admin endpoints take no body\n", keepAlive: false, context: context)
                    }
                case .end:
                    guard let request = self.request else { continue }
                    self.request = nil
                    self.answer(request, context: context)
                }
            }
        } catch {
            self.respond(status: HTTPResponseStatus(statusCode: error.status), body: "bad request: \(error)\n", keepAlive: false, context: context)
        }
        context.flush()
    }

    private func answer(_ request: Request, context: ChannelHandlerContext) {
        let isRead = request.method == .GET || request.method == .HEAD
        switch request.path {
        case "/metrics" where isRead:
            self.respond(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: self.status.metrics(), to: request, context: context)
        case "/healthz" where isRead:
            self.respond(status: .ok, body: "ok\n", to: request, context: context)
        case "/readyz" where isRead:
            let readiness = self.status.gateway.readiness
            self.respond(status: readiness.ready ? .ok : .serviceUnavailable, body: readiness.text, to: request, context: context)
        case "/metrics", "/healthz", "/readyz":
            self.respond(status: .methodNotAllowed, body: "method not allowed\n", extra: [("Allow", "GET, HEAD")], to: request, context: context)
        default:
            self.respond(status: .notFound, body: "not found: the admin listener serves /metrics, /healthz and /readyz\n", to: request, context: context)
        }
    }

    /// A refusal: the connection closes after it.
    private func respond(status: HTTPResponseStatus, body: String, keepAlive: Bool, context: ChannelHandlerContext) {
        let request = Request(method: .GET, version: .http1_1, path: "", keepAlive: keepAlive)
        self.respond(status: status, body: body, to: request, context: context)
    }

    private func respond(status: HTTPResponseStatus, contentType: String = "text/plain", body: String, extra: [(String, String)] = [], to request: Request,
                         context: ChannelHandlerContext) {
        self.respond(status: status, contentType: contentType, body: Array(body.utf8), extra: extra, to: request, context: context)
    }

    /// Writes one response, its head by ``ResponseSerializer`` (the framing rules of every
    /// response the gateway writes: HEAD without a body, `Connection` as the request and the
    /// version ask); not flushed (``channelRead(context:data:)`` flushes after the read's
    /// requests). One that does not keep the connection closes it once written.
    private func respond(status: HTTPResponseStatus, contentType: String, body: [UInt8], extra: [(String, String)] = [], to request: Request,
                         context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 256 + body.count)
        let framing = try? ResponseSerializer.writeHead(
            status: status, headers: HTTPHeaders(), extra: [("Content-Type", contentType)] + extra, contentLength: body.count,
            requestMethod: request.method, requestVersion: request.version, keepAlive: request.keepAlive, into: &buffer)
        if let framing, framing != .none { buffer.writeBytes(body) }
        guard !request.keepAlive || framing == nil else {
            context.write(self.wrapOutboundOut(buffer), promise: nil)
            return
        }
        self.closing = true
        context.writeAndFlush(self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}
