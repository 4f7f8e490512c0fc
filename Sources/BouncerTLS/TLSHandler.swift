import NIOCore
import NIOTLS

/// A SwiftNIO handler that speaks TLS through OpenSSL: ciphertext on the channel side,
/// plaintext toward the rest of the pipeline. One handler per connection, server or client
/// side depending on its ``TLSContext``.
///
/// Modelled on swift-nio-ssl's `NIOSSLHandler`: writes are buffered until the handshake
/// completes, and after it until the next flush, when small writes (an HTTP head and its body)
/// are encrypted together as one record; `close` sends close_notify and waits for the peer's (with a timeout); EOF
/// without close_notify is reported as ``TLSError/Code/uncleanShutdown``; a handshake that does
/// not finish in time fails with ``TLSError/Code/handshakeTimeout``; completion fires
/// `TLSUserEvent.handshakeCompleted(negotiatedProtocol:)`. Reads are passed through, so a
/// pipeline with autoRead off keeps its backpressure.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Where the session is.
    private enum State {
        /// Added, not yet active.
        case idle
        case handshaking
        case active
        /// We sent close_notify and wait for the peer's.
        case closing(EventLoopPromise<Void>?)
        case closed
    }

    private let tlsContext: TLSContext
    private let serverHostname: String?
    private let handshakeTimeout: TimeAmount
    private let closeTimeout: TimeAmount
    private var connection: TLSConnection?
    private var state = State.idle
    private var bufferedWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var bufferedFlush = false
    private var handshakeTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    /// A read was requested downstream and nothing has been delivered for it yet.
    private var readRequested = false
    private var deliveredData = false

    /// The verified peer certificate (DER), once the handshake completed. For servers with
    /// client verification on, this is what certificate-bound tokens will be checked against.
    public private(set) var peerCertificate: [UInt8]?
    public private(set) var negotiatedProtocol: String?
    public private(set) var protocolVersion: String?
    public private(set) var cipher: String?

    /// - Parameters:
    ///   - serverHostname: clients only: the name to verify and send as SNI (or an IP address).
    public init(context: TLSContext, serverHostname: String? = nil, handshakeTimeout: TimeAmount = .seconds(10), closeTimeout: TimeAmount = .seconds(3)) {
        self.tlsContext = context
        self.serverHostname = serverHostname
        self.handshakeTimeout = handshakeTimeout
        self.closeTimeout = closeTimeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            self.connection = try TLSConnection(context: self.tlsContext, serverHostname: self.serverHostname)
        } catch {
            self.state = .closed
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        if context.channel.isActive { self.startHandshake(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.handshakeTimer?.cancel()
        self.closeTimer?.cancel()
        self.failBufferedWrites(ChannelError.ioOnClosedChannel)
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.startHandshake(context: context)
        context.fireChannelActive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = self.state else { return }
        self.state = .handshaking
        self.handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.handshakeTimeout) {
            guard case .handshaking = self.state else { return }
            self.fail(TLSError(.handshakeTimeout, "no TLS handshake within \(self.handshakeTimeout.nanoseconds / 1_000_000) ms"), context: context)
        }
        self.advanceHandshake(context: context)
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection = self.connection else { return }
        connection.consume(self.unwrapInboundIn(data))
        switch self.state {
        case .handshaking:
            self.advanceHandshake(context: context)
        case .active, .closing:
            self.readPlaintext(context: context)
        case .idle, .closed:
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.writeOutput(context: context, flush: true)
        if self.deliveredData {
            self.deliveredData = false
            context.fireChannelReadComplete()
        }
        // Ciphertext that produced no plaintext (handshake, alerts, partial records) must not
        // swallow a read the pipeline asked for.
        if self.readRequested, context.channel.isActive {
            self.readRequested = false
            context.read()
        }
    }

    public func read(context: ChannelHandlerContext) {
        self.readRequested = true
        context.read()
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        let status = connection.handshake()
        self.writeOutput(context: context, flush: true)
        switch status {
        case .wantRead:
            return
        case .closed:
            self.fail(TLSError(.handshakeFailed, "the peer closed the session during the handshake"), context: context)
        case .failed(let error):
            self.fail(error, context: context)
        case .complete:
            self.handshakeTimer?.cancel()
            self.handshakeTimer = nil
            self.state = .active
            self.negotiatedProtocol = connection.negotiatedProtocol
            self.protocolVersion = connection.protocolVersion
            self.cipher = connection.cipher
            self.peerCertificate = connection.peerCertificate
            context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: self.negotiatedProtocol))
            self.writeBuffered(context: context)
            // Application data may have arrived with the last handshake flight.
            self.readPlaintext(context: context)
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        var buffer = context.channel.allocator.buffer(capacity: 16 * 1024)
        let status = connection.read(into: &buffer)
        if buffer.readableBytes > 0 {
            self.readRequested = false
            self.deliveredData = true
            context.fireChannelRead(self.wrapInboundOut(buffer))
        }
        switch status {
        case .complete, .wantRead:
            break
        case .closed:
            self.receivedCloseNotify(context: context)
        case .failed(let error):
            self.fail(error, context: context)
        }
    }

    private func receivedCloseNotify(context: ChannelHandlerContext) {
        switch self.state {
        case .closing(let promise):
            self.state = .closed
            self.closeTimer?.cancel()
            context.close(promise: promise)
        case .active, .handshaking:
            // The peer is done: answer with our close_notify, then close.
            self.state = .closed
            _ = self.connection?.shutdown()
            self.writeOutput(context: context, flush: true)
            context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted)
            context.close(promise: nil)
        case .idle, .closed:
            break
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.handshakeTimer?.cancel()
        self.closeTimer?.cancel()
        switch self.state {
        case .handshaking, .active:
            // EOF without close_notify: the data so far may be truncated.
            self.state = .closed
            context.fireErrorCaught(TLSError(.uncleanShutdown, "the peer closed the connection without close_notify"))
        case .closing(let promise):
            self.state = .closed
            promise?.succeed()
        case .idle, .closed:
            self.state = .closed
        }
        self.failBufferedWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = self.unwrapOutboundIn(data)
        switch self.state {
        case .idle, .handshaking, .active:
            self.bufferedWrites.append((buffer, promise))
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        switch self.state {
        case .idle, .handshaking:
            self.bufferedFlush = true
        case .active:
            self.writeBuffered(context: context)
        case .closing:
            context.flush()
        case .closed:
            break
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch self.state {
        case .active where mode != .input:
            // What was written before close goes out before close_notify.
            self.encryptBuffered(context: context)
            self.state = .closing(promise)
            _ = self.connection?.shutdown()
            self.writeOutput(context: context, flush: true)
            self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.closeTimeout) {
                // The peer never answered our close_notify: close anyway.
                guard case .closing(let promise) = self.state else { return }
                self.state = .closed
                context.close(promise: promise)
            }
        case .closing(let pending):
            if let promise {
                if let pending { pending.futureResult.cascade(to: promise) } else { self.state = .closing(promise) }
            }
        default:
            if mode == .all { self.state = .closed }
            context.close(mode: mode, promise: promise)
        }
    }

    private func encrypt(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        switch connection.write(buffer) {
        case .complete, .wantRead:
            if let output = connection.takeOutput(allocator: context.channel.allocator) {
                context.write(self.wrapOutboundOut(output), promise: promise)
            } else {
                promise?.succeed()
            }
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .failed(let error):
            promise?.fail(error)
            self.fail(error, context: context)
        }
    }

    /// Encrypts and flushes what was written since the last flush.
    private func writeBuffered(context: ChannelHandlerContext) {
        let wrote = self.encryptBuffered(context: context)
        if self.bufferedFlush || wrote {
            self.bufferedFlush = false
            context.flush()
        }
    }

    /// Up to this many plaintext bytes written between flushes are copied into one buffer and
    /// encrypted as one TLS record (a record holds 16 KiB); larger writes go one by one.
    static let coalescingLimit = 16 * 1024

    /// Encrypts the buffered writes; returns whether there were any.
    @discardableResult
    private func encryptBuffered(context: ChannelHandlerContext) -> Bool {
        guard !self.bufferedWrites.isEmpty else { return false }
        let writes = self.bufferedWrites
        self.bufferedWrites.removeAll(keepingCapacity: true)
        let total = writes.reduce(0) { $0 + $1.0.readableBytes }
        guard writes.count > 1, total <= Self.coalescingLimit else {
            for (buffer, promise) in writes { self.encrypt(buffer, promise: promise, context: context) }
            return true
        }
        var combined = context.channel.allocator.buffer(capacity: total)
        var promise: EventLoopPromise<Void>?
        for (buffer, writePromise) in writes {
            combined.writeImmutableBuffer(buffer)
            guard let writePromise else { continue }
            if let promise { promise.futureResult.cascade(to: writePromise) } else { promise = writePromise }
        }
        self.encrypt(combined, promise: promise, context: context)
        return true
    }

    private func writeOutput(context: ChannelHandlerContext, flush: Bool) {
        guard let connection = self.connection, let output = connection.takeOutput(allocator: context.channel.allocator) else { return }
        context.write(self.wrapOutboundOut(output), promise: nil)
        if flush { context.flush() }
    }

    private func failBufferedWrites(_ error: any Error) {
        let writes = self.bufferedWrites
        self.bufferedWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }

    private func fail(_ error: TLSError, context: ChannelHandlerContext) {
        self.handshakeTimer?.cancel()
        self.state = .closed
        // Send whatever alert OpenSSL produced before closing.
        self.writeOutput(context: context, flush: true)
        self.failBufferedWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
