import BouncerCore
import BouncerTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why an exchange with an upstream failed on the gateway's side of the wire. The `code` is
/// stable (logs, tests); the `reason` is for the log.
struct UpstreamError: CodedError {
    enum Code: String, Hashable {
        /// No connection could be made (refused, unreachable, TLS, timeout).
        case connectFailed = "connect_failed"
        /// The upstream closed the connection before the response ended.
        case closedEarly = "closed_early"
        /// A request body was to be written without a length in its head (a bug, not input).
        case unframedBody = "unframed_body"
    }

    var code: Code
    var reason: String

    init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    static let closedEarly = UpstreamError(.closedEarly, "the upstream closed the connection before the response ended")
    static let unframedBody = UpstreamError(.unframedBody, "request body without a Content-Length in the request head")
}

/// An upstream connection lent to one exchange.
struct UpstreamLease {
    var channel: any Channel
    var handler: UpstreamHandler
    /// Taken from the idle pool rather than freshly connected: the upstream may have closed
    /// it an instant ago, so a failure before any response byte is worth one retry.
    var reused: Bool
}

/// Keep-alive connections to upstreams, one pool per event loop, used only from that loop:
/// a downstream connection, its upstream connection and this pool share one thread, so an
/// exchange takes no lock.
final class UpstreamConnectionPool {
    private let eventLoop: any EventLoop
    private let connectTimeout: TimeAmount
    private let maxIdle: Int
    /// Idle connections of one upstream, most recently used last. A class, so taking and
    /// returning a connection mutates the list in place instead of through the dictionary.
    private final class IdleList {
        var leases: [UpstreamLease] = []
    }

    /// By ``UpstreamTarget/connectionKey``.
    private var idle: [String: IdleList] = [:]

    init(eventLoop: any EventLoop, connectTimeout: TimeAmount, maxIdle: Int) {
        self.eventLoop = eventLoop
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle
    }

    /// An idle keep-alive connection to `target`, if the pool has one: the common case, with
    /// no future and no allocation.
    func idleConnection(to target: UpstreamTarget) -> UpstreamLease? {
        self.eventLoop.preconditionInEventLoop()
        guard let list = self.idle[target.connectionKey] else { return nil }
        while let lease = list.leases.popLast() {
            if lease.channel.isActive { return lease }
        }
        return nil
    }

    /// A new connection to `target`.
    func connect(to target: UpstreamTarget, tls: TLSContext?, serverName: String?) -> EventLoopFuture<UpstreamLease> {
        self.eventLoop.preconditionInEventLoop()
        let verifiedName = serverName ?? target.host
        let handshakeTimeout = self.connectTimeout
        let key = target.connectionKey
        return ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, serverHostname: verifiedName, handshakeTimeout: handshakeTimeout))
                    }
                    // One handler writes the requests and reads the responses (see UpstreamHandler).
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
            .connect(host: target.host, port: target.port)
            .flatMapErrorThrowing { error in throw UpstreamError(.connectFailed, "\(target): \(error)") }
            .assumeIsolated()
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                // Once per connection: forget it when it closes, wherever it is then.
                channel.closeFuture.assumeIsolated().whenComplete { [weak self] _ in
                    self?.idle[key]?.leases.removeAll { $0.channel === channel }
                }
                return UpstreamLease(channel: channel, handler: handler, reused: false)
            }
            .nonisolated()
    }

    /// Returns a connection whose response ended cleanly; anything else is closed.
    func release(_ lease: UpstreamLease, target: UpstreamTarget, reusable: Bool) {
        self.eventLoop.preconditionInEventLoop()
        lease.handler.sink = nil
        lease.handler.resume()
        let list: IdleList
        if let existing = self.idle[target.connectionKey] {
            list = existing
        } else {
            list = IdleList()
            self.idle[target.connectionKey] = list
        }
        guard reusable, lease.channel.isActive, list.leases.count < self.maxIdle else {
            lease.channel.close(promise: nil)
            return
        }
        var returned = lease
        returned.reused = true
        list.leases.append(returned)
    }
}

/// One ``UpstreamConnectionPool`` per event loop, created on first use.
final class UpstreamPools: Sendable {
    private let connectTimeout: TimeAmount
    private let maxIdle: Int
    private let pools = NIOLockedValueBox([ObjectIdentifier: NIOLoopBound<UpstreamConnectionPool>]())

    init(connectTimeout: TimeAmount, maxIdle: Int) {
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle
    }

    func pool(for eventLoop: any EventLoop) -> UpstreamConnectionPool {
        let key = ObjectIdentifier(eventLoop)
        let bound = self.pools.withLockedValue { pools in
            if let existing = pools[key] { return existing }
            let created = NIOLoopBound(UpstreamConnectionPool(eventLoop: eventLoop, connectTimeout: self.connectTimeout, maxIdle: self.maxIdle), eventLoop: eventLoop)
            pools[key] = created
            return created
        }
        return bound.value
    }
}
