import BouncerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The composition root: everything a running gateway is made of, built from one policy in
/// one place. `mcp-bouncer run`, `mcp-bouncer demo`, the loopback tests and the benchmarks
/// all build the gateway through it, so each gets the same wiring (the authorization-server
/// timeouts from the policy, the TLS contexts, the services).
package final class GatewayApplication: Sendable {
    package let policy: GatewayPolicy
    package let group: any EventLoopGroup
    /// Whether ``shutdown()`` stops the event loops (it does when the application made them).
    private let ownsGroup: Bool
    /// The gateway in force (a reload replaces it: ``apply(_:reason:file:)``).
    package var gateway: Gateway { self.server.current.gateway }
    package let server: GatewayServer
    /// The policy file, when the gateway runs from one: ``services`` reload it (``PolicyReloader``).
    private let reload: (file: PolicyFile, files: [String], watch: Bool)?
    /// The client-facing certificate reloader, when the policy terminates TLS.
    package let tlsReloader: TLSReloader?
    /// The metrics and health listener, when the policy has `admin:`.
    package let admin: AdminServer?
    package let metrics: GatewayMetrics
    /// The one wall clock (``WallClock``), passed to every gateway a reload builds.
    let clock: WallClock
    package let logger: Logger
    /// The session key when the policy has none: made once, so a reload keeps the sessions.
    let sessionKey = SessionKey.random()
    private let allowDevelopmentAuthorizationServer: Bool
    /// Reloads are applied one at a time.
    private let reloading = NIOLock()

    /// - Parameters:
    ///   - tls: the policy's TLS contexts; loaded here (off any event loop) when `nil`.
    ///   - group: the event loops to run on; when `nil`, `threads` new ones owned by the
    ///     application.
    ///   - allowDevelopmentAuthorizationServer: `true` only for `mcp-bouncer demo`.
    ///   - onListening: told the bound address (port 0 picks a free one).
    ///   - onAdminListening: told the admin listener's bound address.
    /// - Throws: ``TLSLoadErrors`` when a certificate or key does not load, ``AuditSinkError``
    ///   when the audit file cannot be opened or is not an audit file.
    /// - Parameter clock: the time of day for sessions, tokens and audit records (tests set it).
    /// - Parameter reload: the policy file the policy came from, the files it named, and whether
    ///   to watch them (`run --watch`): SIGHUP, and with `watch` a change, reloads it
    ///   (``PolicyReloader``). Without it SIGHUP is logged and ignored.
    package init(
        policy: GatewayPolicy, tls: GatewayTLSContexts? = nil, group: (any EventLoopGroup)? = nil, threads: Int = System.coreCount,
        allowDevelopmentAuthorizationServer: Bool = false, reload: (file: PolicyFile, files: [String], watch: Bool)? = nil, clock: WallClock = .system, logger: Logger,
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
        self.allowDevelopmentAuthorizationServer = allowDevelopmentAuthorizationServer
        self.reload = reload
        self.clock = clock
        let group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.group = group
        let metrics = GatewayMetrics()
        self.metrics = metrics
        let audit: AuditTrail? = try policy.audit.map { settings throws(AuditSinkError) in try AuditTrail(settings: settings, metrics: metrics, logger: logger, clock: clock) }
        let timeout = TimeAmount.seconds(policy.limits.authorizationServerTimeoutSeconds)
        let fetcher = HTTPFetcher(group: group, connectTimeout: timeout, responseTimeout: timeout, metrics: metrics)
        let gateway = Gateway(
            policy: policy, fetcher: fetcher, tls: contexts, allowDevelopmentAuthorizationServer: allowDevelopmentAuthorizationServer,
            metrics: metrics, audit: audit, sessionKey: self.sessionKey, wallClock: clock, logger: logger
        )
        let server = GatewayServer(gateway: gateway, group: group, onListening: onListening)
        self.server = server
        let status = GatewayStatus(current: server.current, server: server)
        self.admin = policy.admin.map { settings in
            AdminServer(settings: settings, group: group, status: status, logger: logger, onListening: onAdminListening)
        }
        if policy.sessions.keys.isEmpty {
            logger.notice("no sessions.keys: session ids are sealed with a random key made at start; sessions will not survive a restart or move between replicas")
        }
        if let settings = policy.tls, let box = contexts.server {
            self.tlsReloader = TLSReloader(settings: settings, box: box, events: GatewayEvents(audit: audit, metrics: metrics, logger: logger), logger: logger)
        } else {
            self.tlsReloader = nil
        }
    }

    /// Puts a new policy in force: settings that take a restart (``restartOnlySettings``) keep
    /// their running values (each reported: log, `reload_kept` audit record); everything else
    /// takes effect for new requests and new connections, while requests already admitted
    /// finish under the policy they started with. No connection is closed. Throws when the new
    /// policy's TLS files (upstreams, authorization servers) do not load: then nothing changes.
    package func apply(_ policy: GatewayPolicy, reason: String, file: String) throws(TLSLoadErrors) {
        self.reloading.lock()
        defer { self.reloading.unlock() }
        let previous = self.gateway
        var merged = policy
        let kept = Self.restartOnlySettings(previous.policy, policy)
        merged.listen = previous.policy.listen
        merged.tls = previous.policy.tls
        merged.audit = previous.policy.audit
        merged.admin = previous.policy.admin
        var contexts = try GatewayTLSContexts.load(merged, logger: self.logger)
        // The client-facing certificate has its own reloader; its box is kept.
        contexts.server = previous.tls.server
        let gateway = Gateway(
            policy: merged, fetcher: previous.fetcher, tls: contexts, allowDevelopmentAuthorizationServer: self.allowDevelopmentAuthorizationServer,
            metrics: self.metrics, audit: previous.audit, sessionKey: self.sessionKey, previous: previous, wallClock: self.clock, logger: self.logger
        )
        self.server.current.swap(gateway)
        gateway.events.policyReloaded(file: file, reason: reason, resources: merged.resources, kept: kept)
        // New authorization servers' keys, the tools of pinned resources and the upstreams'
        // eras, as at start.
        let fresh = gateway.keyStores.filter { previous.keyStores[$0.key] !== $0.value }.map(\.value)
        let eventLoop = self.group.next()
        Task {
            for store in fresh { _ = try? await store.keys(on: eventLoop).get() }
            await gateway.listPinnedTools()
            await gateway.discoverUpstreamEras()
        }
    }

    /// The settings a reload cannot change that `new` changes.
    static func restartOnlySettings(_ old: GatewayPolicy, _ new: GatewayPolicy) -> [String] {
        func audit(_ settings: AuditSettings?) -> String {
            guard let settings else { return "none" }
            return "\(settings.file) \(settings.arguments) \(settings.fsync) \(settings.onOverflow) \(settings.checkpointEvery) \(settings.queueCapacity) \(settings.signingKey?.keyID ?? "-")"
        }
        let changed = [
            ("listen", old.listen != new.listen),
            ("tls", old.tls != new.tls),
            ("audit", audit(old.audit) != audit(new.audit)),
            ("admin", old.admin?.listen != new.admin?.listen),
        ]
        return changed.filter(\.1).map(\.0)
    }

    /// The services ``run()`` supervises. A service group stops them in reverse order: the
    /// audit trail comes first so that it stops last, after the server has finished its
    /// requests and their records are queued.
    package var services: [any Service] {
        var services: [any Service] = []
        if let audit = self.gateway.audit {
            services.append(AuditService(trail: audit, startDetails: self.startDetails, logger: self.logger))
        }
        if let admin = self.admin { services.append(admin) }
        services.append(self.server)
        if let reloader = self.tlsReloader { services.append(reloader) }
        if let reload = self.reload {
            services.append(PolicyReloader(file: reload.file, files: reload.files, application: self, watch: reload.watch, logger: self.logger))
        }
        services.append(SignalLogger(handlesSIGHUP: self.reload != nil || self.tlsReloader != nil, handlesSIGUSR1: self.gateway.audit != nil, logger: self.logger))
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
    package func run() async throws {
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
    package func bind() async throws -> any Channel {
        try await self.server.bind().get()
    }

    /// Stops the event loops, if the application made them.
    package func shutdown() async throws {
        if self.ownsGroup { try await self.group.shutdownGracefully() }
    }
}
