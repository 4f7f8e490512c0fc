import BouncerCore
import BouncerTLS
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The listening side: binds, builds each connection's pipeline, and stops accepting on
/// graceful shutdown.
public final class GatewayServer: Service, Sendable {
    public let gateway: Gateway
    private let group: any EventLoopGroup
    private let onListening: @Sendable (SocketAddress) -> Void
    private let connections = NIOLockedValueBox([ObjectIdentifier: any Channel]())

    public init(gateway: Gateway, group: any EventLoopGroup, onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }) {
        self.gateway = gateway
        self.group = group
        self.onListening = onListening
    }

    /// Binds the listener and returns its channel.
    public func bind() -> EventLoopFuture<any Channel> {
        let gateway = self.gateway
        let connections = self.connections
        let tls = gateway.tls.server
        let handshakeTimeout = TimeAmount.seconds(gateway.policy.tls?.handshakeTimeoutSeconds ?? 10)
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                connections.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0[id] = nil } }
                return channel.eventLoop.makeCompletedFuture {
                    let peer = channel.remoteAddress?.ipAddress ?? "unknown"
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        // Each connection keeps the context it started with; reloads affect new ones.
                        try sync.addHandler(TLSHandler(context: tls.current, handshakeTimeout: handshakeTimeout))
                    }
                    // NIO's request decoder only: GatewayHandler handles pipelining and malformed
                    // requests, and serialises responses itself (ResponseSerializer), so every
                    // read and write crosses as few handlers as possible.
                    let meter = RequestByteMeter()
                    try sync.addHandler(ByteToMessageHandler(MeteredRequestDecoder(meter: meter)))
                    try sync.addHandler(GatewayHandler(gateway: gateway, remoteAddress: peer, meter: meter))
                }
            }
            .bind(host: gateway.policy.listen.host, port: gateway.policy.listen.port)
    }

    public func run() async throws {
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
    public var openConnections: Int { self.connections.withLockedValue { $0.count } }

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
