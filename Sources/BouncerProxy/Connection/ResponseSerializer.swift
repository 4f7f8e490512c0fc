import NIOCore
import NIOHTTP1
import BouncerCore

/// How the body of the response being written is delimited on the client connection.
enum ResponseBodyFraming: Equatable {
    /// No body bytes are sent: a response to HEAD, or a status that has no body (1xx, 204, 304).
    case none
    /// `Content-Length` delimits the body: its bytes are written as they come.
    case contentLength
    /// `Transfer-Encoding: chunked`: each body buffer is one chunk, and the response ends with
    /// the last chunk.
    case chunked
    /// The body ends when the connection closes (RFC 9112 6.3, rule 8): a body of unknown length
    /// for an HTTP/1.0 client, which must not be sent chunked. The connection is closed after it.
    case untilClose
}

/// Writes HTTP/1.1 responses to the client as bytes: the gateway's own serialisation in place
/// of NIO's `HTTPResponseEncoder` and `NIOHTTPResponseHeadersValidator`, which on every
/// response copied the header list (framing-header removal on a shared array), grew a 256-byte
/// head buffer, and cost two more pipeline hops.
///
/// The rules are theirs: framing is chosen as `HTTPResponseEncoder` chooses it (no body for
/// 1xx, 204, 304 or a HEAD request; an existing `Content-Length` is kept and any
/// `Transfer-Encoding` dropped; otherwise the body is chunked), except that an HTTP/1.0
/// client never gets `Transfer-Encoding` (RFC 9112 6.1): a body of unknown length is sent as
/// it comes and ends with the connection. `Connection` is the serialiser's too: `close` when
/// the connection ends after this response, `keep-alive` to an HTTP/1.0 client that asked for
/// it and keeps it (RFC 9112 9.3, 9.6). A head is written only if
/// every header name is an RFC 9110 token and no value holds a control character other than
/// HTAB (what the validator checks: no response splitting, whatever the upstream sent). The
/// status line carries the standard reason phrase for the code, never the upstream's.
enum ResponseSerializer {
    /// A header that cannot be sent as it stands.
    struct InvalidHeader: Error, CustomStringConvertible {
        let name: String
        var description: String { "response header \"\(name)\" has characters that cannot be sent" }
    }

    /// Appends the head of a response to `buffer` (allocate it with ``estimatedSize(_:_:)`` and
    /// it does not grow) and returns the framing of the body that follows. `include` filters `headers` (hop-by-hop ones, `Connection` among them, out);
    /// `extra` are added after them, then `contentLength` (a body the gateway rewrote; the
    /// upstream's own is for `include` to drop). `keepAlive` says whether the connection is meant to
    /// persist after this response; it does not if the body is ``ResponseBodyFraming/untilClose``.
    /// Nothing is written if a header is invalid.
    static func writeHead(
        status: HTTPResponseStatus,
        headers: some ResponseFieldList,
        include: (UnsafeRawBufferPointer) -> Bool = { _ in true },
        extra: [(String, String)] = [],
        contentLength: Int? = nil,
        requestMethod: HTTPMethod,
        requestVersion: HTTPVersion,
        keepAlive: Bool,
        into buffer: inout ByteBuffer
    ) throws(InvalidHeader) -> ResponseBodyFraming {
        let code = status.code
        guard (100...999).contains(code) else { throw InvalidHeader(name: ":status \(code)") }
        let mayHaveBody = !(100..<200).contains(code) && code != 204 && code != 304
        let start = buffer.writerIndex
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeInteger(UInt8(ascii: "0") + UInt8(code / 100))
        buffer.writeInteger(UInt8(ascii: "0") + UInt8(code / 10 % 10))
        buffer.writeInteger(UInt8(ascii: "0") + UInt8(code % 10))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(HTTPResponseStatus(statusCode: Int(code)).reasonPhrase)
        buffer.writeStaticString("\r\n")

        // One value the closures below write into (captured, not boxed: no allocation).
        var fields = WrittenFields()
        headers.forEachField { name, value in
            include(name) ? fields.write(name, value, mayHaveBody: mayHaveBody, into: &buffer) : true
        }
        for (name, value) in extra where fields.invalid == nil {
            var name = name
            var value = value
            _ = name.withUTF8 { name in
                value.withUTF8 { value in fields.write(UnsafeRawBufferPointer(name), UnsafeRawBufferPointer(value), mayHaveBody: mayHaveBody, into: &buffer) }
            }
        }
        if let contentLength, fields.invalid == nil, mayHaveBody {
            buffer.writeStaticString("Content-Length: ")
            buffer.writeString(String(contentLength))
            buffer.writeStaticString("\r\n")
            fields.hasContentLength = true
        }
        if let invalid = fields.invalid {
            buffer.moveWriterIndex(to: start)
            throw invalid
        }

        let framing: ResponseBodyFraming
        if (100..<200).contains(code) {
            // Interim: the final head follows, and says what happens to the connection.
            buffer.writeStaticString("\r\n")
            return .none
        } else if !mayHaveBody {
            framing = .none
        } else if fields.hasContentLength {
            framing = .contentLength
        } else if requestVersion.isHTTP11OrLater {
            buffer.writeStaticString("Transfer-Encoding: chunked\r\n")
            framing = .chunked
        } else {
            framing = .untilClose
        }
        // A HEAD response describes the body a GET would get, and has none.
        let sent = requestMethod == .HEAD ? .none : framing
        if !keepAlive || sent == .untilClose {
            buffer.writeStaticString("Connection: close\r\n")
        } else if !requestVersion.isHTTP11OrLater {
            buffer.writeStaticString("Connection: keep-alive\r\n")
        }
        buffer.writeStaticString("\r\n")
        return sent
    }

    private enum FieldWrite {
        case written, dropped, invalid
    }

    /// What writing a head's fields found: a Content-Length written, or the first field that
    /// cannot be sent.
    private struct WrittenFields {
        var hasContentLength = false
        var invalid: InvalidHeader?

        /// Writes one field; false (stop) when it cannot be sent.
        mutating func write(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, mayHaveBody: Bool, into buffer: inout ByteBuffer) -> Bool {
            switch ResponseSerializer.writeField(name, value, mayHaveBody: mayHaveBody, into: &buffer) {
            case .written:
                self.hasContentLength = self.hasContentLength || HTTP1Lines.equals(name, lowercase: "content-length")
            case .dropped:
                break
            case .invalid:
                self.invalid = InvalidHeader(name: String(decoding: name, as: UTF8.self))
                return false
            }
            return true
        }
    }

    /// Writes one header field unless framing rules drop it.
    private static func writeField(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, mayHaveBody: Bool, into buffer: inout ByteBuffer) -> FieldWrite {
        // Framing and persistence are the gateway's: Transfer-Encoding and Connection are
        // re-derived, and a body-less status sends no Content-Length.
        if HTTP1Lines.equals(name, lowercase: "transfer-encoding") || HTTP1Lines.equals(name, lowercase: "connection") { return .dropped }
        if !mayHaveBody, HTTP1Lines.equals(name, lowercase: "content-length") { return .dropped }
        guard !name.isEmpty, name.allSatisfy(HTTPToken.isTokenCharacter), value.allSatisfy(Self.isFieldValueByte) else { return .invalid }
        buffer.writeBytes(name)
        buffer.writeStaticString(": ")
        buffer.writeBytes(value)
        buffer.writeStaticString("\r\n")
        return .written
    }

    /// Room for the head `writeHead` would write: allocate the buffer with it, and the head
    /// is written without growing it.
    static func estimatedSize(_ headers: some ResponseFieldList, _ extra: [(String, String)] = [], contentLength: Int? = nil) -> Int {
        var size = 64 + 30 + 24 + headers.byteCount  // status line, Transfer-Encoding, Connection, final CRLF
        if contentLength != nil { size += 40 }
        for (name, value) in extra { size += name.utf8.count + value.utf8.count + 4 }
        return size
    }

    /// RFC 9110 5.5 field-value: no control characters but HTAB (so no CR, LF or NUL).
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\t") || (byte >= 0x20 && byte != 0x7F)
    }

    /// The framing bytes around one body buffer: a chunk's size line before and CRLF after, or
    /// nothing. Small chunks are copied into one buffer with their framing (one write instead
    /// of three).
    static func frame(_ body: ByteBuffer, as framing: ResponseBodyFraming, allocator: ByteBufferAllocator) -> FramedBody {
        switch framing {
        case .none:
            return .nothing
        case .contentLength, .untilClose:
            return body.readableBytes > 0 ? .one(body) : .nothing
        case .chunked:
            let size = body.readableBytes
            guard size > 0 else { return .nothing }  // an empty chunk would end the body
            var prefix = allocator.buffer(capacity: size <= Self.copyLimit ? size + 20 : 20)
            prefix.writeString(String(size, radix: 16))
            prefix.writeStaticString("\r\n")
            guard size <= Self.copyLimit else { return .chunk(prefix: prefix, body: body) }
            var body = body
            prefix.writeBuffer(&body)
            prefix.writeStaticString("\r\n")
            return .one(prefix)
        }
    }

    /// Chunks up to this size are copied next to their framing.
    static let copyLimit = 4096

    enum FramedBody {
        case nothing
        case one(ByteBuffer)
        /// A large chunk: the size line, the body as it came, then CRLF.
        case chunk(prefix: ByteBuffer, body: ByteBuffer)
    }
}

extension HTTPVersion {
    /// HTTP/1.1 or later: chunked bodies and 1xx responses may be sent (RFC 9112 6.1, RFC 9110
    /// 15.2); an HTTP/1.0 client gets neither, and keeps its connection only if it said so.
    var isHTTP11OrLater: Bool { self.major > 1 || (self.major == 1 && self.minor >= 1) }
}

extension ByteBuffer {
    /// `name: value` and CRLF, as HTTP/1.1 writes a field line (RFC 9112 5). The caller has
    /// checked, or knows, that both can be sent as they are.
    mutating func writeHeaderField(_ name: String, _ value: String) {
        self.writeString(name)
        self.writeStaticString(": ")
        self.writeString(value)
        self.writeStaticString("\r\n")
    }
}

/// Header fields a response head is written from: the gateway's own (`HTTPHeaders`) or an
/// upstream's head as the codec read it (its ranges, no String made of them).
protocol ResponseFieldList {
    /// Calls `body` with each field's name and value bytes, in order, until it returns false.
    func forEachField(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool)
    /// The bytes of every name and value with 4 for each line's framing.
    var byteCount: Int { get }
}

extension HTTPHeaders: ResponseFieldList {
    func forEachField(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) {
        for (name, value) in self {
            var name = name
            var value = value
            let goOn = name.withUTF8 { name in value.withUTF8 { value in body(UnsafeRawBufferPointer(name), UnsafeRawBufferPointer(value)) } }
            if !goOn { return }
        }
    }

    var byteCount: Int {
        self.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }
}

extension HTTP1ResponseReader.Head: ResponseFieldList {
    func forEachField(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) {
        self.bytes.withUnsafeReadableBytes { bytes in
            for field in self.fields where !body(UnsafeRawBufferPointer(rebasing: bytes[field.name]), UnsafeRawBufferPointer(rebasing: bytes[field.value])) {
                return
            }
        }
    }

    var byteCount: Int { self.bytes.readableBytes }
}
