import BouncerCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The admin listener (`admin.listen`): `/metrics` (Prometheus text exposition, from
/// swift-prometheus), `/healthz` and `/readyz`, on an address of its own, never the public
/// port. Plain HTTP/1.1 with NIO's server pipeline: scrapes are rare and small.
package final class AdminServer: Service, Sendable {
    let settings: AdminSettings
    let group: any EventLoopGroup
    let status: GatewayStatus
    let logger: Logger
    private let onListening: @Sendable (SocketAddress) -> Void

    init(settings: AdminSettings, group: any EventLoopGroup, status: GatewayStatus, logger: Logger, onListening: @escaping @Sendable (SocketAddress) -> Void) {
        self.settings = settings
        self.group = group
        self.status = status
        self.logger = logger
        self.onListening = onListening
    }

    package func bind() -> EventLoopFuture<any Channel> {
        let status = self.status
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(status: status))
                }
            }
            .bind(host: self.settings.listen.host, port: self.settings.listen.port)
    }

    package func run() async throws {
        let channel = try await self.bind().get()
        if let address = channel.localAddress {
            self.logger.info("admin listener (metrics, health)", metadata: ["address": "\(address)"])
            self.onListening(address)
        }
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

private final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let status: GatewayStatus
    private var head: HTTPRequestHead?

    init(status: GatewayStatus) {
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        let contentType: String
        var body: [UInt8]
        switch (head.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            status = .ok
            contentType = "text/plain; version=0.0.4; charset=utf-8"
            body = self.status.metrics()
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            status = .ok
            contentType = "text/plain"
            body = Array("ok\n".utf8)
        case (.GET, "/readyz"), (.HEAD, "/readyz"):
            let readiness = self.status.gateway.readiness
            status = readiness.ready ? .ok : .serviceUnavailable
            contentType = "text/plain"
            body = Array(readiness.text.utf8)
        case (_, "/metrics"), (_, "/healthz"), (_, "/readyz"):
            status = .methodNotAllowed
            contentType = "text/plain"
            body = Array("method not allowed\n".utf8)
        default:
            status = .notFound
            contentType = "text/plain"
            body = Array("not found: the admin listener serves /metrics, /healthz and /readyz\n".utf8)
        }
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.count))])
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        if head.method == .HEAD { body = [] }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if !body.isEmpty {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}
