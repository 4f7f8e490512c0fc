import BouncerCore
import NIOCore
import NIOHTTP1

/// A request head as the gateway writes it to an upstream: the request line, the client's
/// fields that go on (``Enforcement/ClientFieldFilter``), copied byte for byte from the head
/// the codec read, then the gateway's own fields. No header list of Strings is built for the
/// client's fields.
struct UpstreamRequestHead {
    var method: HTTPMethod
    var uri: String
    /// The client's head, whose fields `filter` passes go first.
    var client: (head: HTTP1RequestReader.Head, filter: Enforcement.ClientFieldFilter)?
    /// The gateway's own fields, after the client's.
    var fields: [(name: String, value: String)]

    init(method: HTTPMethod, uri: String, client: (head: HTTP1RequestReader.Head, filter: Enforcement.ClientFieldFilter)? = nil, fields: [(name: String, value: String)] = []) {
        self.method = method
        self.uri = uri
        self.client = client
        self.fields = fields
    }

    /// Sets the gateway's field `name` (ASCII case-insensitively), in place of any before.
    mutating func replaceOrAdd(name: String, value: String) {
        self.fields.removeAll { $0.name.equalsIgnoringASCIICase(name) }
        self.fields.append((name, value))
    }

    /// The value of the gateway's field `name`, if it set one.
    func field(_ name: String) -> String? {
        self.fields.first { $0.name.equalsIgnoringASCIICase(name) }?.value
    }

    /// The fields as the upstream gets them, in order, as Strings (for tests and logs).
    var allFields: [(name: String, value: String)] {
        var all: [(name: String, value: String)] = []
        if let (head, filter) = self.client {
            for field in head.fields where head.bytes.withUnsafeReadableBytes({ filter.forwards(UnsafeRawBufferPointer(rebasing: $0[field.name])) }) {
                all.append((head.string(field.name), head.string(field.value)))
            }
        }
        return all + self.fields
    }

    /// Writes the head (with the client's fields copied from its bytes) into `buffer`.
    func write(into buffer: inout ByteBuffer) {
        buffer.writeString(self.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(self.uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        if let (head, filter) = self.client {
            head.bytes.withUnsafeReadableBytes { bytes in
                for field in head.fields {
                    let name = UnsafeRawBufferPointer(rebasing: bytes[field.name])
                    guard filter.forwards(name) else { continue }
                    buffer.writeBytes(name)
                    buffer.writeStaticString(": ")
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                    buffer.writeStaticString("\r\n")
                }
            }
        }
        for (name, value) in self.fields { buffer.writeHeaderField(name, value) }
        buffer.writeStaticString("\r\n")
    }

    /// An upper bound of the head's size in bytes.
    var estimatedSize: Int {
        var size = self.method.rawValue.utf8.count + self.uri.utf8.count + 16 + (self.client?.head.bytes.readableBytes ?? 0)
        for (name, value) in self.fields { size += name.utf8.count + value.utf8.count + 4 }
        return size
    }
}
