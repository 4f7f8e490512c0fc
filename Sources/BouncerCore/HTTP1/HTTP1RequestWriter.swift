import NIOCore

/// A request head written from Strings, for the gateway's own calls (discovery documents, key
/// sets, token and introspection endpoints, `probe`, `pin`). Their targets and fields come from
/// documents other parties wrote (a `jwks_uri`, a `token_endpoint`), from the policy and from
/// the command line: each is checked before a byte is written, so none can end the request line
/// or a field early and add a request or a field of its own (RFC 9112 3.2, 5; the same rules the
/// codec holds what it reads to, ``HTTP1RequestParser``).
public enum HTTP1RequestWriter {
    public enum Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        /// The method is not a token.
        case invalidMethod
        /// The target is not in origin form (`/` first) or holds a byte outside visible ASCII
        /// (a space, a control, DEL, a raw byte above 0x7E).
        case invalidTarget
        /// The name is empty or holds a byte that is not a token character.
        case invalidFieldName(String)
        /// The value holds a control character (CR, LF, NUL, ...) or DEL, or starts or ends
        /// with whitespace.
        case invalidFieldValue(name: String)

        public var description: String {
            switch self {
            case .invalidMethod: "the method is not an HTTP token"
            case .invalidTarget: "the request target must start with / and hold visible ASCII only (percent-encode the rest)"
            case .invalidFieldName(let name): "the field name \(name.debugDescription) is not an HTTP token"
            case .invalidFieldValue(let name): "the value of \(name) holds a control character or surrounding whitespace"
            }
        }
    }

    /// Appends `method target HTTP/1.1`, the fields in order and the empty line to `buffer`;
    /// writes nothing when any part is refused.
    public static func write(method: String, target: String, fields: [(name: String, value: String)], into buffer: inout ByteBuffer) throws(Refusal) {
        guard !method.isEmpty, method.utf8.allSatisfy(HTTPToken.isTokenCharacter) else { throw .invalidMethod }
        guard Self.isOriginForm(target) else { throw .invalidTarget }
        for (name, value) in fields {
            guard !name.isEmpty, name.utf8.allSatisfy(HTTPToken.isTokenCharacter) else { throw .invalidFieldName(name) }
            guard Self.isFieldValue(value) else { throw .invalidFieldValue(name: name) }
        }
        buffer.writeString(method)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(target)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        for (name, value) in fields {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// `/` and then visible ASCII only.
    static func isOriginForm(_ target: String) -> Bool {
        target.utf8.first == UInt8(ascii: "/") && target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// Field-vchar, SP and HTAB (RFC 9110 5.5), with no whitespace first or last: a value read
    /// back by a parser is the value written.
    static func isFieldValue(_ value: String) -> Bool {
        let bytes = value.utf8
        if let first = bytes.first, first == 0x20 || first == 0x09 { return false }
        if let last = bytes.last, last == 0x20 || last == 0x09 { return false }
        return bytes.allSatisfy(HTTP1Lines.isFieldValueByte)
    }
}
