import BouncerCore
import BouncerTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Receives one upstream response. Implemented by the downstream connection's handler,
/// which lives on the same event loop, so calls are direct.
protocol UpstreamResponseSink: AnyObject {
    /// An interim (1xx) response; the final head follows.
    func upstreamInterimResponse(_ head: HTTPResponseHead)
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ buffer: ByteBuffer)
    func upstreamResponseEnd(keepAlive: Bool)
    /// The request may have reached the upstream (see ``UpstreamHandler/send(_:body:)``).
    func upstreamRequestWritten()
    /// The upstream has no more bytes for now: time to flush what was relayed.
    func upstreamReadComplete()
    func upstreamFailed(_ error: any Error)
}

/// The last handler of an upstream connection: writes the request, hands response parts to
/// the current sink and holds reads while the downstream cannot take more (backpressure).
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPClientRequestPart

    weak var sink: (any UpstreamResponseSink)?
    private var context: ChannelHandlerContext?
    private var paused = false
    private var readPending = false
    private var responseKeepAlive = true

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Writes one request and flushes it (one buffer on the wire: see UpstreamRequestEncoder).
    /// Through this handler's context, not `Channel.write`: the parts stay concretely typed
    /// all the way to the encoder.
    ///
    /// Then tells the sink whether the request may have reached the upstream (what decides
    /// whether it may be sent again if the connection fails). NIO writes a flushed
    ///   buffer to the socket at once and, if that fails, closes the channel before `flush`
    ///   returns: a connection still open afterwards took the request, whole or in part, and
    ///   counts as written. One that is closed did not take it whole, and the upstream cannot
    ///   have acted on an incomplete request (the gateway always frames a body with
    ///   Content-Length). No promise, so no allocation per request.
    func send(_ head: HTTPRequestHead, body: ByteBuffer?) {
        guard let context = self.context else {
            // The connection was torn down between lease and write: fail now, not at the
            // response timeout.
            if let sink = self.sink {
                self.sink = nil
                sink.upstreamFailed(UpstreamError.closedEarly)
            }
            return
        }
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if let body, body.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        if context.channel.isActive {
            self.sink?.upstreamRequestWritten()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let sink = self.sink else {
            // Data on an idle pooled connection: the upstream is confused; drop the connection.
            context.close(promise: nil)
            return
        }
        switch self.unwrapInboundIn(data) {
        case .head(let head) where (100..<200).contains(head.status.code):
            // The decoder forwards interim responses; a 101 is the sink's to refuse.
            sink.upstreamInterimResponse(head)
        case .head(let head):
            self.responseKeepAlive = head.isKeepAlive
            sink.upstreamResponseHead(head)
        case .body(let buffer):
            sink.upstreamResponseBody(buffer)
        case .end:
            self.sink = nil
            sink.upstreamResponseEnd(keepAlive: self.responseKeepAlive)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.sink?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if self.paused {
            self.readPending = true
        } else {
            context.read()
        }
    }

    /// Stop reading from the upstream until ``resume()``.
    func pause() {
        self.paused = true
    }

    func resume() {
        guard self.paused else { return }
        self.paused = false
        if self.readPending, let context {
            self.readPending = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let sink = self.sink {
            self.sink = nil
            sink.upstreamFailed(UpstreamError.closedEarly)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let sink = self.sink {
            self.sink = nil
            sink.upstreamFailed(error)
        }
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension UpstreamHandler: Sendable {}

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
                    // NIO's response decoder, with the gateway's own request encoder where NIO's
                    // would be (see UpstreamRequestEncoder).
                    try channel.pipeline.syncOperations.addHandlers(
                        UpstreamRequestEncoder(), ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward))
                    )
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
