import BouncerCore
import BouncerTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Prometheus

/// The listening side: binds, builds each connection's pipeline, and stops accepting on
/// graceful shutdown.
package final class GatewayServer: Service, Sendable {
    /// The gateway in force; a policy reload swaps it (``GatewayReference``).
    package let current: GatewayReference
    /// The gateway in force now (a reload keeps the listen address and TLS setting it started with).
    package var gateway: Gateway { self.current.gateway }
    private let group: any EventLoopGroup
    private let onListening: @Sendable (SocketAddress) -> Void
    private let connections = NIOLockedValueBox([ObjectIdentifier: any Channel]())

    package init(gateway: Gateway, group: any EventLoopGroup, onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }) {
        self.current = GatewayReference(gateway)
        self.group = group
        self.onListening = onListening
    }

    /// Binds the listener and returns its channel.
    package func bind() -> EventLoopFuture<any Channel> {
        let current = self.current
        let gateway = current.gateway
        let connections = self.connections
        // TLS on or off is fixed at start; its certificates reload on their own (``TLSReloader``).
        let tls = gateway.tls.server
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                // Each connection is served by the gateway in force when it was accepted, and
                // each of its requests by the one in force when its head arrived.
                let gateway = current.gateway
                let id = ObjectIdentifier(channel)
                let admitted = connections.withLockedValue { open in
                    guard open.count < gateway.policy.limits.maxConnections else { return false }
                    open[id] = channel
                    return true
                }
                guard admitted else {
                    gateway.metrics.connectionsRefused.increment()
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ConnectionLimitHandler())
                    }
                }
                channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0[id] = nil } }
                return channel.eventLoop.makeCompletedFuture {
                    let peer = channel.remoteAddress?.ipAddress ?? "unknown"
                    let sync = channel.pipeline.syncOperations
                    let handshakeTimeout = TimeAmount.seconds(gateway.policy.tls?.handshakeTimeoutSeconds ?? 10)
                    if let tls {
                        // Each connection keeps the context it started with; reloads affect new ones.
                        try sync.addHandler(TLSHandler(context: tls.current, handshakeTimeout: handshakeTimeout))
                    }
                    // One handler: GatewayHandler reads the requests with the gateway's codec,
                    // handles pipelining and malformed requests, and serialises responses
                    // itself (ResponseSerializer), so every read and write crosses one handler.
                    try sync.addHandler(GatewayHandler(gateway: current, remoteAddress: peer))
                }
            }
            .bind(host: gateway.policy.listen.host, port: gateway.policy.listen.port)
    }

    package func run() async throws {
        let channel = try await self.bind().get()
        if let address = channel.localAddress {
            self.gateway.logger.info("listening", metadata: [
                "address": "\(address)", "public_url": "\(self.gateway.policy.publicURL)",
                "resources": "\(self.gateway.policy.resources.map { "\($0.uri) -> \($0.upstream)" }.joined(separator: ", "))",
            ])
            self.onListening(address)
        }
        for resource in self.gateway.policy.resources where !resource.inspectResponses {
            self.gateway.logger.warning("responses are relayed unread (inspect_responses: false): lists unfiltered, no tool pins, no elicitation or sampling guard", metadata: [
                "resource": "\(resource.path)",
            ])
        }
        _ = try? await self.gateway.warmUp(on: channel.eventLoop).get()
        await self.gateway.listPinnedTools()
        await self.gateway.discoverUpstreamEras()
        try await withGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onGracefulShutdown: {
            self.gateway.logger.info("shutting down: no longer accepting connections")
            channel.close(promise: nil)
            self.quiesce()
        }
        await self.drain(grace: .seconds(self.gateway.policy.limits.shutdownGraceSeconds))
    }

    /// Tells every open connection to finish what it is doing and close: idle keep-alive
    /// connections close at once, the others after their response (NIO's quiesce event).
    func quiesce() {
        let open = self.connections.withLockedValue { Array($0.values) }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    /// Number of open client connections.
    package var openConnections: Int { self.connections.withLockedValue { $0.count } }

    /// Lets in-flight exchanges finish for up to `grace`, then closes what is left (long SSE
    /// streams, clients that never read their last response).
    func drain(grace: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while self.openConnections > 0, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let remaining = self.connections.withLockedValue { Array($0.values) }
        if !remaining.isEmpty {
            self.gateway.logger.info("closing connections still open after the shutdown grace period", metadata: ["connections": "\(remaining.count)"])
        }
        for channel in remaining { channel.close(promise: nil) }
    }
}

/// The gateway in force: read by every new connection and request, swapped whole by a policy
/// reload. Requests already admitted keep the gateway they started with.
package final class GatewayReference: Sendable {
    private let box: NIOLockedValueBox<Gateway>

    package init(_ gateway: Gateway) {
        self.box = NIOLockedValueBox(gateway)
    }

    package var gateway: Gateway { self.box.withLockedValue { $0 } }

    /// Puts `gateway` in force; returns the one it replaces.
    @discardableResult
    package func swap(_ gateway: Gateway) -> Gateway {
        self.box.withLockedValue { current in
            defer { current = gateway }
            return current
        }
    }
}

/// What a connection beyond `limits.max_connections` gets: a 503 written as soon as it is
/// open, then the close. Nothing it sends is read.
final class ConnectionLimitHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    static let response: String = {
        let body = "Service Unavailable: too many open connections\n"
        return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }()

    func channelActive(context: ChannelHandlerContext) {
        let buffer = context.channel.allocator.buffer(string: Self.response)
        let channel = context.channel
        context.writeAndFlush(NIOAny(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
