import BouncerCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The composition root: everything a running gateway is made of, built from one policy in
/// one place. `mcp-bouncer run`, `mcp-bouncer demo`, the loopback tests and the benchmarks
/// all build the gateway through it, so each gets the same wiring (the authorization-server
/// timeouts from the policy, the TLS contexts, the services).
public final class GatewayApplication: Sendable {
    public let policy: GatewayPolicy
    public let group: any EventLoopGroup
    /// Whether ``shutdown()`` stops the event loops (it does when the application made them).
    private let ownsGroup: Bool
    public let gateway: Gateway
    public let server: GatewayServer
    /// The client-facing certificate reloader, when the policy terminates TLS.
    public let tlsReloader: TLSReloader?
    public let logger: Logger

    /// - Parameters:
    ///   - tls: the policy's TLS contexts; loaded here (off any event loop) when `nil`.
    ///   - group: the event loops to run on; when `nil`, `threads` new ones owned by the
    ///     application.
    ///   - allowDevelopmentAuthorizationServer: `true` only for `mcp-bouncer demo`.
    ///   - onListening: told the bound address (port 0 picks a free one).
    public init(
        policy: GatewayPolicy, tls: GatewayTLSContexts? = nil, group: (any EventLoopGroup)? = nil, threads: Int = System.coreCount,
        allowDevelopmentAuthorizationServer: Bool = false, logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) throws(TLSLoadErrors) {
        let contexts: GatewayTLSContexts
        if let tls {
            contexts = tls
        } else {
            contexts = try GatewayTLSContexts.load(policy, logger: logger)
        }
        self.policy = policy
        self.logger = logger
        self.ownsGroup = group == nil
        let group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.group = group
        let timeout = TimeAmount.seconds(policy.limits.authorizationServerTimeoutSeconds)
        let fetcher = HTTPFetcher(group: group, connectTimeout: timeout, responseTimeout: timeout)
        self.gateway = Gateway(
            policy: policy, fetcher: fetcher, tls: contexts, allowDevelopmentAuthorizationServer: allowDevelopmentAuthorizationServer, logger: logger
        )
        self.server = GatewayServer(gateway: self.gateway, group: group, onListening: onListening)
        if let settings = policy.tls, let box = contexts.server {
            self.tlsReloader = TLSReloader(settings: settings, box: box, logger: logger)
        } else {
            self.tlsReloader = nil
        }
    }

    /// The services ``run()`` supervises: the server, and the TLS reloader when there is one.
    public var services: [any Service] {
        var services: [any Service] = [self.server]
        if let reloader = self.tlsReloader { services.append(reloader) }
        return services
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (see
    /// ``GatewayServer/run()``) and stops the event loops it owns.
    public func run() async throws {
        let serviceGroup = ServiceGroup(configuration: .init(
            services: self.services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: self.logger
        ))
        try await serviceGroup.run()
        try await self.shutdown()
    }

    /// Binds the listener without the service lifecycle (tests, the demo): the caller closes
    /// the returned channel.
    public func bind() async throws -> any Channel {
        try await self.server.bind().get()
    }

    /// Stops the event loops, if the application made them.
    public func shutdown() async throws {
        if self.ownsGroup { try await self.group.shutdownGracefully() }
    }
}
