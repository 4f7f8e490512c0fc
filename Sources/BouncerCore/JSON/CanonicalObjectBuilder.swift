import Crypto
import W3CTraceContext

/// Builds a JSON object in RFC 8785 form: members sorted by their names, values already
/// canonical. Bytes throughout (the writer thread builds one per record): names and values
/// are kept in one buffer and sorted by comparing bytes.
///
/// Names must be ASCII (the gateway's own), for which byte order is RFC 8785's UTF-16 order;
/// objects with arbitrary names (tool arguments) go through ``CanonicalJSON``.
public struct CanonicalObjectBuilder: Sendable {
    private var members: [(key: Range<Int>, value: Range<Int>)] = []
    private var bytes: [UInt8] = []

    public init() {
        self.members.reserveCapacity(32)
        self.bytes.reserveCapacity(1536)
    }

    /// Empties the builder, keeping its storage for the next object.
    public mutating func removeAll() {
        self.members.removeAll(keepingCapacity: true)
        self.bytes.removeAll(keepingCapacity: true)
    }

    private mutating func add(_ key: String, writing value: (inout [UInt8]) -> Void) {
        assert(key.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x80 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }, "\(key): names must be plain ASCII")
        let keyStart = self.bytes.count
        self.bytes.append(contentsOf: key.utf8)
        let valueStart = self.bytes.count
        value(&self.bytes)
        self.members.append((keyStart..<valueStart, valueStart..<self.bytes.count))
    }

    public mutating func add(_ key: String, _ value: String?) {
        guard let value else { return }
        self.add(key) { CanonicalJSON.appendString(value, to: &$0) }
    }

    public mutating func add(_ key: String, _ value: Int) {
        self.add(key) { CanonicalJSON.appendInteger(Int64(value), to: &$0) }
    }

    public mutating func add(_ key: String, _ value: Int64) {
        self.add(key) { CanonicalJSON.appendInteger(value, to: &$0) }
    }

    /// An RFC 3339 time, from milliseconds since the epoch.
    public mutating func add(_ key: String, time milliseconds: Int64) {
        self.add(key) { out in
            out.append(UInt8(ascii: "\""))
            RFC3339.append(millisecondsSinceEpoch: milliseconds, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    public mutating func add(_ key: String, _ value: JSONValue) {
        self.add(key) { CanonicalJSON.append(value, to: &$0) }
    }

    /// Appends the object in canonical form (sorting the members in place).
    public mutating func build(into out: inout [UInt8]) {
        // Members mostly arrive in order already: the (stable, run-detecting) sort is then
        // about one comparison per member.
        self.bytes.withUnsafeBufferPointer { buffer in
            self.members.sort { lhs, rhs in
                UnsafeBufferPointer(rebasing: buffer[lhs.key]).lexicographicallyPrecedes(UnsafeBufferPointer(rebasing: buffer[rhs.key]))
            }
        }
        out.append(UInt8(ascii: "{"))
        for (position, member) in self.members.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: self.bytes[member.key])
            out.append(contentsOf: #"":"#.utf8)
            out.append(contentsOf: self.bytes[member.value])
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The object in canonical form.
    public func build() -> String {
        var out: [UInt8] = []
        var copy = self
        copy.build(into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
