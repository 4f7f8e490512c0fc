import BouncerCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The admin listener (`admin.listen`): `/metrics` (Prometheus text exposition, from
/// swift-prometheus), `/healthz` and `/readyz`, on an address of its own, never the public
/// port. Plain HTTP/1.1 read with the gateway's own codec (``AdminHandler``): scrapes are rare
/// and small, but the listener is as strict as the public one.
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
