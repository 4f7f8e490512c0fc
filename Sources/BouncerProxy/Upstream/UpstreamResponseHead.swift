import BouncerCore
import NIOCore
import NIOHTTP1

/// A response head the gateway relays to a client: an upstream's as the codec read it (its
/// ranges: no String is made of a field unless a decision reads it), or one the gateway built
/// (a bridged stream's), and the fields the gateway writes in place of the upstream's (a
/// sealed session id).
struct RelayedResponseHead: ResponseFieldList {
    enum Fields {
        case wire(HTTP1ResponseReader.Head)
        case built(HTTPHeaders)
    }

    let status: HTTPResponseStatus
    let fields: Fields
    /// Written in place of any field of the same name in ``fields``.
    private(set) var replacements: [(String, String)] = []

    /// What the first `Content-Type` says the body is, read once from its bytes when the head
    /// is made (the exchange and the writer both ask).
    let mediaType: ResponseMediaType?

    init(_ wire: HTTP1ResponseReader.Head) {
        self.status = HTTPResponseStatus(statusCode: wire.status)
        self.fields = .wire(wire)
        self.mediaType = wire.bytes.withUnsafeReadableBytes { bytes in
            guard let field = wire.fields.first(where: { HTTP1Lines.equals(UnsafeRawBufferPointer(rebasing: bytes[$0.name]), lowercase: "content-type") })
            else { return nil }
            let value = field.value
            func starts(_ lowercase: StaticString) -> Bool {
                value.count >= lowercase.utf8CodeUnitCount
                    && HTTP1Lines.equals(UnsafeRawBufferPointer(rebasing: bytes[value.lowerBound..<(value.lowerBound + lowercase.utf8CodeUnitCount)]), lowercase: lowercase)
            }
            return starts("text/event-stream") ? .eventStream : starts("application/json") ? .json : .other
        }
    }

    init(status: HTTPResponseStatus, headers: HTTPHeaders) {
        self.status = status
        self.fields = .built(headers)
        self.mediaType = headers.first(name: "content-type").map { type in
            type.hasPrefixIgnoringASCIICase("text/event-stream") ? .eventStream : type.hasPrefixIgnoringASCIICase("application/json") ? .json : .other
        }
    }

    /// The elements of every field named `lowercase` (comma-separated lists split).
    func elements(_ lowercase: StaticString) -> [String] {
        switch self.fields {
        case .wire(let head): head.bytes.withUnsafeReadableBytes { HTTP1Lines.elements(named: lowercase, of: head.fields, in: $0) }
        case .built(let headers): headers[canonicalForm: "\(lowercase)"].map(String.init)
        }
    }

    /// NIO's head, for the rare reader of a whole header list (the DPoP nonce rules, the bridge).
    var decoded: HTTPResponseHead {
        switch self.fields {
        case .wire(let head): head.decoded()
        case .built(let headers): HTTPResponseHead(version: .http1_1, status: self.status, headers: headers)
        }
    }

    mutating func replace(_ name: String, with value: String) {
        self.replacements.append((name, value))
    }

    /// Calls `body` with each field's name and value bytes, in order, until it returns false,
    /// without those ``replacements`` replace (they are the writer's to add).
    func forEachField(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) {
        switch self.fields {
        case .wire(let head) where self.replacements.isEmpty: head.forEachField(body)
        case .wire(let head): head.forEachField { name, value in self.isReplaced(name) ? true : body(name, value) }
        case .built(let headers): headers.forEachField { name, value in self.isReplaced(name) ? true : body(name, value) }
        }
    }

    private func isReplaced(_ name: UnsafeRawBufferPointer) -> Bool {
        !self.replacements.isEmpty && self.replacements.contains { HTTP1Lines.equals(name, ignoringCase: $0.0) }
    }

    /// The names the `Connection` fields list (hop-by-hop, RFC 9110 7.6.1), without a list of
    /// Strings made first.
    var connectionOptions: ConnectionOptions {
        var options = ConnectionOptions()
        switch self.fields {
        case .wire(let head):
            head.bytes.withUnsafeReadableBytes { bytes in
                for field in head.fields where HTTP1Lines.equals(UnsafeRawBufferPointer(rebasing: bytes[field.name]), lowercase: "connection") {
                    options.add(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self))
                }
            }
        case .built(let headers):
            for value in headers[canonicalForm: "connection"] { options.add(String(value)) }
        }
        return options
    }

    var byteCount: Int {
        switch self.fields {
        case .wire(let head): head.byteCount
        case .built(let headers): headers.byteCount
        }
    }
}

/// What a response's `Content-Type` says of its body, as far as the gateway reads it:
/// `text/event-stream` and `application/json` by prefix (parameters follow), ASCII
/// case-insensitively.
enum ResponseMediaType {
    case eventStream, json, other
}

extension HTTP1ResponseReader.Head {
    /// NIO's head, made from the codec's ranges.
    func decoded() -> HTTPResponseHead {
        self.bytes.withUnsafeReadableBytes { raw in
            func string(_ range: Range<Int>) -> String {
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self)
            }
            var fields: [(String, String)] = []
            fields.reserveCapacity(self.fields.count)
            for field in self.fields { fields.append((string(field.name), string(field.value))) }
            let version: HTTPVersion = self.version == .http11 ? .http1_1 : .http1_0
            return HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: self.status, reasonPhrase: string(self.reason)), headers: HTTPHeaders(fields))
        }
    }
}
