import BouncerCore
import BouncerTLS
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An upstream connection's one handler: writes each request as bytes
/// (``UpstreamRequestSerializer``), reads the responses with the gateway's own codec
/// (``HTTP1ResponseReader``), hands their parts to the current sink and holds reads while the
/// downstream cannot take more (backpressure). No decoder or encoder handler beside it: a
/// response's bytes reach the sink without crossing the pipeline.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Never
    typealias OutboundOut = ByteBuffer

    weak var sink: (any UpstreamResponseSink)?
    private var context: ChannelHandlerContext?
    private var paused = false
    private var readPending = false
    private var responseKeepAlive = true
    private var reader = HTTP1ResponseReader()
    /// Requests are written into the last one's storage once it is on the wire.
    private var requests = RecycledBuffer()

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Writes one request and flushes it (one buffer on the wire: see ``UpstreamRequestSerializer``).
    ///
    /// Then tells the sink whether the request may have reached the upstream (what decides
    /// whether it may be sent again if the connection fails). NIO writes a flushed
    ///   buffer to the socket at once and, if that fails, closes the channel before `flush`
    ///   returns: a connection still open afterwards took the request, whole or in part, and
    ///   counts as written. One that is closed did not take it whole, and the upstream cannot
    ///   have acted on an incomplete request (the gateway always frames a body with
    ///   Content-Length). No promise, so no allocation per request.
    func send(_ head: UpstreamRequestHead, body: ByteBuffer?) {
        guard let context = self.context else {
            // The connection was torn down between lease and write: fail now, not at the
            // response timeout.
            if let sink = self.sink {
                self.sink = nil
                sink.upstreamFailed(UpstreamError.closedEarly)
            }
            return
        }
        let bytes: (head: ByteBuffer, body: ByteBuffer?)
        do {
            bytes = try UpstreamRequestSerializer.serialize(head, body: body, into: &self.requests, allocator: context.channel.allocator)
        } catch {
            if let sink = self.sink {
                self.sink = nil
                sink.upstreamFailed(error)
            }
            return
        }
        // Only HEAD changes how a response is framed (it has no body).
        self.reader.requestMethod = head.method == .HEAD ? .HEAD : .GET
        if let body = bytes.body {
            context.write(self.wrapOutboundOut(bytes.head), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(body), promise: nil)
        } else {
            context.writeAndFlush(self.wrapOutboundOut(bytes.head), promise: nil)
        }
        if context.channel.isActive {
            self.sink?.upstreamRequestWritten()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.reader.append(self.unwrapInboundIn(data))
        while true {
            let event: HTTP1ResponseReader.Event
            do {
                guard let next = try self.reader.next() else { return }
                event = next
            } catch {
                self.errorCaught(context: context, error: error)
                return
            }
            guard let sink = self.sink else {
                // A response on an idle pooled connection (or one more than was asked for):
                // the upstream is confused; drop the connection.
                context.close(promise: nil)
                return
            }
            switch event {
            case .head(let head) where head.isInterim:
                // A 101 is the sink's to refuse.
                sink.upstreamInterimResponse(RelayedResponseHead(head))
            case .head(let head):
                self.responseKeepAlive = head.isKeepAlive
                sink.upstreamResponseHead(RelayedResponseHead(head))
            case .body(let buffer):
                sink.upstreamResponseBody(buffer)
            case .end:
                self.sink = nil
                sink.upstreamResponseEnd(keepAlive: self.responseKeepAlive)
            }
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
        // A body framed by the connection's end is whole now.
        if let sink = self.sink, (try? self.reader.connectionClosed()) == true {
            self.sink = nil
            sink.upstreamResponseEnd(keepAlive: false)
        }
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
    func upstreamInterimResponse(_ head: RelayedResponseHead)
    func upstreamResponseHead(_ head: RelayedResponseHead)
    func upstreamResponseBody(_ buffer: ByteBuffer)
    func upstreamResponseEnd(keepAlive: Bool)
    /// The request may have reached the upstream (see ``UpstreamHandler/send(_:body:)``).
    func upstreamRequestWritten()
    /// The upstream has no more bytes for now: time to flush what was relayed.
    func upstreamReadComplete()
    func upstreamFailed(_ error: any Error)
}
