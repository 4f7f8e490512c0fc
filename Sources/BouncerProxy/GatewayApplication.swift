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
    /// The metrics and health listener, when the policy has `admin:`.
    public let admin: AdminServer?
    public let metrics: GatewayMetrics
    public let logger: Logger

    /// - Parameters:
    ///   - tls: the policy's TLS contexts; loaded here (off any event loop) when `nil`.
    ///   - group: the event loops to run on; when `nil`, `threads` new ones owned by the
    ///     application.
    ///   - allowDevelopmentAuthorizationServer: `true` only for `mcp-bouncer demo`.
    ///   - onListening: told the bound address (port 0 picks a free one).
    ///   - onAdminListening: told the admin listener's bound address.
    /// - Throws: ``TLSLoadErrors`` when a certificate or key does not load, ``AuditSinkError``
    ///   when the audit file cannot be opened or is not an audit file.
    public init(
        policy: GatewayPolicy, tls: GatewayTLSContexts? = nil, group: (any EventLoopGroup)? = nil, threads: Int = System.coreCount,
        allowDevelopmentAuthorizationServer: Bool = false, logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in },
        onAdminListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) throws {
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
        let metrics = GatewayMetrics()
        self.metrics = metrics
        let audit: AuditTrail? = try policy.audit.map { settings throws(AuditSinkError) in try AuditTrail(settings: settings, metrics: metrics, logger: logger) }
        let timeout = TimeAmount.seconds(policy.limits.authorizationServerTimeoutSeconds)
        let fetcher = HTTPFetcher(group: group, connectTimeout: timeout, responseTimeout: timeout, metrics: metrics)
        self.gateway = Gateway(
            policy: policy, fetcher: fetcher, tls: contexts, allowDevelopmentAuthorizationServer: allowDevelopmentAuthorizationServer,
            metrics: metrics, audit: audit, logger: logger
        )
        let server = GatewayServer(gateway: self.gateway, group: group, onListening: onListening)
        self.server = server
        let status = GatewayStatus(gateway: self.gateway, server: server)
        self.admin = policy.admin.map { settings in
            AdminServer(settings: settings, group: group, status: status, logger: logger, onListening: onAdminListening)
        }
        if let settings = policy.tls, let box = contexts.server {
            self.tlsReloader = TLSReloader(settings: settings, box: box, events: GatewayEvents(audit: audit, metrics: metrics), logger: logger)
        } else {
            self.tlsReloader = nil
        }
    }

    /// The services ``run()`` supervises. A service group stops them in reverse order: the
    /// audit trail comes first so that it stops last, after the server has finished its
    /// requests and their records are queued.
    public var services: [any Service] {
        var services: [any Service] = []
        if let audit = self.gateway.audit {
            services.append(AuditService(trail: audit, startDetails: self.startDetails, logger: self.logger))
        }
        if let admin = self.admin { services.append(admin) }
        services.append(self.server)
        if let reloader = self.tlsReloader { services.append(reloader) }
        return services
    }

    /// The `start` record's members.
    var startDetails: [String: JSONValue] {
        [
            "version": .string(MCPBouncerVersion.current),
            "listen": .string(self.policy.listen.description),
            "public_url": .string(self.policy.publicURL.description),
            "resources": .array(self.policy.resources.map { .string($0.uri.description) }),
            "arguments": .string(self.policy.audit?.arguments.rawValue ?? "none"),
            "signed": .bool(self.policy.audit?.signingKey != nil),
        ]
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
