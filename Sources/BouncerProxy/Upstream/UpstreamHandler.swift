import BouncerCore
import BouncerTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

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
