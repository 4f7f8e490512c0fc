import NIOCore
import NIOHTTP1

/// How many bytes of the client's stream the HTTP/1 request decoder has parsed. Shared by the
/// decoder and the ``GatewayHandler`` of one connection (both on its event loop).
///
/// llhttp reports no progress between the parts it emits: a head that arrives one byte a
/// second, or a chunk extension megabytes long, produces no event at all until it ends. The
/// handler compares this count with the parts it has received to see both (the header read
/// timeout and the chunk framing bound).
final class RequestByteMeter {
    /// Bytes parsed since the connection opened.
    var parsed = 0
}

@available(*, unavailable)
extension RequestByteMeter: Sendable {}

/// NIO's `HTTPRequestDecoder`, counting the bytes it parses into a ``RequestByteMeter``. Not a
/// channel handler of its own: it is the decoder `ByteToMessageHandler` drives, so counting
/// adds no pipeline hop.
struct MeteredRequestDecoder: ByteToMessageDecoder {
    typealias InboundOut = HTTPServerRequestPart

    private let decoder: HTTPRequestDecoder
    private let meter: RequestByteMeter

    init(meter: RequestByteMeter) {
        self.decoder = HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)
        self.meter = meter
    }

    func decoderAdded(context: ChannelHandlerContext) {
        self.decoder.decoderAdded(context: context)
    }

    func decoderRemoved(context: ChannelHandlerContext) {
        self.decoder.decoderRemoved(context: context)
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let before = buffer.readableBytes
        defer { self.meter.parsed += before - buffer.readableBytes }
        return try self.decoder.decode(context: context, buffer: &buffer)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        let before = buffer.readableBytes
        defer { self.meter.parsed += before - buffer.readableBytes }
        return try self.decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }
}

@available(*, unavailable)
extension MeteredRequestDecoder: Sendable {}
