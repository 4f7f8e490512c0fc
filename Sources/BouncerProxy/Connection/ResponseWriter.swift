import BouncerCore
import NIOCore
import NIOHTTP1

/// Writes a connection's responses to the client, one at a time in request order: the
/// gateway's own answers, relayed interim and final heads, body framing (``ResponseSerializer``)
/// and the end of each body, and says when the client cannot take more (backpressure). It
/// holds what framing depends on: the method and version of the request being answered, and
/// how the body under way is delimited.
struct ResponseWriter {
    /// The request being answered: a response to HEAD has no body, an HTTP/1.0 client gets no
    /// chunked body nor interim responses.
    private(set) var requestMethod = HTTPMethod.GET
    private(set) var requestVersion = HTTPVersion.http1_1
    /// How the body under way is delimited, once its head is written.
    private(set) var framing = ResponseBodyFraming.none
    /// Relayed heads are written into the last one's storage once it is on the wire.
    private var heads = RecycledBuffer()

    /// A chunked body's last chunk, and the CRLF after a large chunk: shared, never written into.
    private static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
    private static let crlf = ByteBuffer(string: "\r\n")

    /// Body chunks at least this large are flushed as they arrive rather than at the end of
    /// the upstream read (a TLS record's worth).
    static let immediateFlushBytes = 16 * 1024

    /// The next response answers this request.
    mutating func answer(method: HTTPMethod, version: HTTPVersion) {
        self.requestMethod = method
        self.requestVersion = version
    }

    /// The next response answers no request the gateway could read (a head that never came
    /// whole, malformed HTTP): it is framed as for an HTTP/1.1 GET.
    mutating func answerUnreadRequest() {
        self.answer(method: .GET, version: .http1_1)
    }

    /// `100 Continue`, flushed, to a client waiting for it before it sends its body.
    func writeContinue(context: ChannelHandlerContext) {
        var interim = context.channel.allocator.buffer(capacity: 32)
        _ = try? ResponseSerializer.writeHead(
            status: .continue, headers: HTTPHeaders(), requestMethod: self.requestMethod, requestVersion: self.requestVersion, keepAlive: true, into: &interim
        )
        context.writeAndFlush(NIOAny(interim), promise: nil)
    }

    /// A response the gateway wrote itself (errors, metadata, health): head and body in one
    /// buffer. No body is sent in answer to HEAD, though Content-Length still says how long it
    /// would be. Call ``end(keepAlive:context:)`` after it.
    mutating func write(_ response: GatewayResponse, keepAlive: Bool, context: ChannelHandlerContext) throws(ResponseSerializer.InvalidHeader) {
        var extra = response.headers
        extra.append(("Content-Length", String(response.body.utf8.count)))
        var buffer = context.channel.allocator.buffer(capacity: ResponseSerializer.estimatedSize(HTTPHeaders(), extra) + response.body.utf8.count)
        self.framing = try ResponseSerializer.writeHead(
            status: HTTPResponseStatus(statusCode: response.status), headers: HTTPHeaders(), extra: extra,
            requestMethod: self.requestMethod, requestVersion: self.requestVersion, keepAlive: keepAlive, into: &buffer
        )
        if self.framing != .none { buffer.writeString(response.body) }
        context.write(NIOAny(buffer), promise: nil)
    }

    /// An upstream's interim (1xx) response, flushed at once.
    mutating func writeInterim(_ upstreamHead: RelayedResponseHead, keepAlive: Bool, context: ChannelHandlerContext) throws(ResponseSerializer.InvalidHeader) {
        let (buffer, _) = try self.serialise(upstreamHead, keepAlive: keepAlive, allocator: context.channel.allocator)
        context.writeAndFlush(NIOAny(buffer), promise: nil)
    }

    /// The upstream's final head as the client gets it, serialised but not yet written (the
    /// exchange decides whether it goes out): see ``writeHead(_:context:)``.
    ///
    /// `rewritten` is for a body the gateway changes: its length when known (a JSON body read
    /// whole), or not (an inspected event stream: the body is chunked, or delimited by the
    /// connection's end for an HTTP/1.0 client).
    /// `extra` are the gateway's own fields (a `DPoP-Nonce`).
    mutating func serialiseHead(
        _ upstreamHead: RelayedResponseHead, keepAlive: Bool, allocator: ByteBufferAllocator, rewritten: RewrittenBody? = nil, extra: [(String, String)] = []
    ) throws(ResponseSerializer.InvalidHeader) -> ByteBuffer {
        var extra = upstreamHead.replacements + extra
        if upstreamHead.mediaType == .eventStream {
            // Tell any buffering proxy in front of us not to hold events back.
            extra.append(("X-Accel-Buffering", "no"))
        }
        // The body changed: the upstream's Content-Length goes, replaced when the new length
        // is known.
        var contentLength: Int?
        if case .length(let length)? = rewritten { contentLength = length }
        let buffer: ByteBuffer
        (buffer, self.framing) = try self.serialise(
            upstreamHead, extra: extra, contentLength: contentLength, droppingContentLength: rewritten != nil, keepAlive: keepAlive, allocator: allocator
        )
        return buffer
    }

    /// Writes a serialised head. It is flushed when the upstream read completes: one write for
    /// a response that arrived in one read, and still every SSE event as soon as it arrives.
    func writeHead(_ head: ByteBuffer, context: ChannelHandlerContext) {
        context.write(NIOAny(head), promise: nil)
    }

    /// Relays a piece of the upstream's body, framed. Each piece goes out with the upstream
    /// read it came in (flushed when that read completes): an SSE event is never held back. A
    /// large piece is flushed at once, so the client receives a big body while the next
    /// upstream read happens. Returns false when the client cannot take more for now: the
    /// upstream is paused until the channel is writable again.
    func writeBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) -> Bool {
        switch ResponseSerializer.frame(buffer, as: self.framing, allocator: context.channel.allocator) {
        case .nothing:
            break
        case .one(let framed):
            context.write(NIOAny(framed), promise: nil)
        case .chunk(let prefix, let body):
            context.write(NIOAny(prefix), promise: nil)
            context.write(NIOAny(body), promise: nil)
            context.write(NIOAny(Self.crlf), promise: nil)
        }
        if buffer.readableBytes >= Self.immediateFlushBytes {
            context.flush()
        }
        return context.channel.isWritable
    }

    /// Ends the response (the last chunk of a chunked body) and flushes it. Returns whether
    /// the connection may stay open: not after a body delimited by the connection's end, which
    /// is complete only once it closes. `written` completes when the end is on the wire, and
    /// is asked for only when the connection closes after it (no promise on the keep-alive path).
    mutating func end(keepAlive: Bool, context: ChannelHandlerContext) -> (keepAlive: Bool, written: EventLoopFuture<Void>?) {
        let end = self.framing == .chunked ? Self.lastChunk : ByteBuffer()
        let keepAlive = keepAlive && self.framing != .untilClose
        self.framing = .none
        guard keepAlive else { return (false, context.writeAndFlush(NIOAny(end))) }
        context.writeAndFlush(NIOAny(end), promise: nil)
        return (true, nil)
    }

    /// An upstream head, serialised straight from its fields (the codec's ranges): connection-scoped
    /// headers (and those its `Connection` names) dropped, `extra` in place of any the
    /// upstream sent under the same names.
    private mutating func serialise(
        _ upstreamHead: RelayedResponseHead, extra: [(String, String)] = [], contentLength: Int? = nil, droppingContentLength: Bool = false, keepAlive: Bool,
        allocator: ByteBufferAllocator
    ) throws(ResponseSerializer.InvalidHeader) -> (ByteBuffer, ResponseBodyFraming) {
        let connection = upstreamHead.connectionOptions
        var buffer = self.heads.buffer(capacity: ResponseSerializer.estimatedSize(upstreamHead, extra, contentLength: contentLength), allocator: allocator)
        let framing = try ResponseSerializer.writeHead(
            status: upstreamHead.status, headers: upstreamHead,
            include: { name in
                !HopByHop.isResponseHeader(bytes: name, connection: connection)
                    && !(!extra.isEmpty && extra.contains { HTTP1Lines.equals(name, ignoringCase: $0.0) })
                    && !(droppingContentLength && HTTP1Lines.equals(name, lowercase: "content-length"))
            },
            extra: extra, contentLength: contentLength, requestMethod: self.requestMethod, requestVersion: self.requestVersion, keepAlive: keepAlive,
            into: &buffer
        )
        self.heads.keep(buffer)
        return (buffer, framing)
    }
}

/// A response body the gateway changes on its way to the client.
enum RewrittenBody: Equatable {
    case length(Int)
    case unknownLength
}
