import NIOCore
import NIOHTTP1
import BouncerCore

/// Writes a request to an upstream as bytes: the head and the (already complete) body the
/// gateway holds go out as one buffer and one write, in place of NIO's `HTTPRequestEncoder`
/// (which copied the header list on every request, grew a 256-byte head buffer and wrote head,
/// body and end separately).
///
/// Headers are not validated again: each comes from a request the gateway's codec parsed (copied
/// from its bytes: ``UpstreamRequestHead``), from
/// the policy (validated at load) or from a token-endpoint response (checked as a b64token).
/// The body must be framed by the head's `Content-Length` (the gateway sets it whenever there
/// is a body); body bytes for a head without one are refused rather than sent unframed.
enum UpstreamRequestSerializer {
    /// Bodies up to this size are copied after the head; larger ones are written as they are.
    static let copyLimit = 16 * 1024

    /// The request's bytes: the head with the body copied in, or (for a body over
    /// ``copyLimit``) the head and the body as it is.
    /// The head is written into `recycled`'s buffer (the connection's last request's, once it
    /// is on the wire).
    static func serialize(
        _ head: UpstreamRequestHead, body: ByteBuffer?, into recycled: inout RecycledBuffer, allocator: ByteBufferAllocator
    ) throws -> (head: ByteBuffer, body: ByteBuffer?) {
        // The client's Content-Length never goes on (hop-by-hop here): the gateway's frames the body.
        let declaredLength = head.field("content-length").flatMap { Int($0) } ?? 0
        let bodyLength = body?.readableBytes ?? 0
        if bodyLength > 0, declaredLength == 0 { throw UpstreamError.unframedBody }
        let copied = bodyLength <= Self.copyLimit
        var buffer = recycled.buffer(capacity: head.estimatedSize + (copied ? bodyLength : 0), allocator: allocator)
        head.write(into: &buffer)
        if copied, var body { buffer.writeBuffer(&body) }
        recycled.keep(buffer)
        return (buffer, copied ? nil : body)
    }
}
