import NIOCore
import NIOHTTP1
import BouncerCore

/// Writes requests to an upstream as bytes: the head and the (already complete) body the
/// gateway holds go out in one buffer and one write. In place of NIO's `HTTPRequestEncoder`,
/// which on every request copied the header list (to drop a `Transfer-Encoding` that is never
/// there), grew a 256-byte head buffer and wrote head, body and end separately.
///
/// It sits where that encoder sat, below the response decoder, so the decoder still sees each
/// request head (it needs the method: a response to HEAD has no body). Headers are not
/// validated again: each comes from a request llhttp parsed, from the policy (validated at
/// load) or from a token-endpoint response (checked as a b64token). The body must be framed
/// by the head's `Content-Length` (the gateway sets it whenever there is a body); body bytes
/// for a head without one are refused rather than sent unframed.
final class UpstreamRequestEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = IOData

    /// Bodies up to this size are copied after the head; larger ones are written as they are.
    static let copyLimit = 16 * 1024

    /// The bytes of the current request not yet passed on (written at its end, at a flush, or
    /// when a part comes with a promise).
    private var pending: ByteBuffer?
    private var bodyAllowed = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var isEnd = false
        switch self.unwrapOutboundIn(data) {
        case .head(let head):
            self.emitPending(context: context)
            var declaredLength = 0
            var size = head.method.rawValue.utf8.count + head.uri.utf8.count + 16
            for (name, value) in head.headers {
                size += name.utf8.count + value.utf8.count + 4
                if name.equalsIgnoringASCIICase("content-length") { declaredLength = Int(value) ?? 0 }
            }
            self.bodyAllowed = declaredLength > 0
            var buffer = context.channel.allocator.buffer(capacity: size + min(declaredLength, Self.copyLimit))
            buffer.writeString(head.method.rawValue)
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(head.uri)
            buffer.writeStaticString(" HTTP/1.1\r\n")
            for (name, value) in head.headers { buffer.writeHeaderField(name, value) }
            buffer.writeStaticString("\r\n")
            self.pending = buffer
        case .body(let body):
            guard self.bodyAllowed else {
                promise?.fail(UpstreamError.unframedBody)
                context.fireErrorCaught(UpstreamError.unframedBody)
                return
            }
            if case .byteBuffer(var bytes) = body, bytes.readableBytes <= Self.copyLimit, var pending = self.pending {
                // Taken out and put back, so the buffer is uniquely referenced when written to.
                self.pending = nil
                pending.writeBuffer(&bytes)
                self.pending = pending
            } else {
                self.emitPending(context: context)
                context.write(self.wrapOutboundOut(body), promise: promise)
                return
            }
        case .end:
            self.bodyAllowed = false
            isEnd = true
        }
        // The request is complete, or somebody waits for this part: pass it all on, in order.
        if isEnd || promise != nil {
            self.emitPending(context: context, promise: promise)
        }
    }

    func flush(context: ChannelHandlerContext) {
        self.emitPending(context: context)
        context.flush()
    }

    private func emitPending(context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        if let pending = self.pending {
            self.pending = nil
            context.write(self.wrapOutboundOut(.byteBuffer(pending)), promise: promise)
        } else if let promise {
            context.write(self.wrapOutboundOut(.byteBuffer(ByteBuffer())), promise: promise)
        }
    }
}

@available(*, unavailable)
extension UpstreamRequestEncoder: Sendable {}
