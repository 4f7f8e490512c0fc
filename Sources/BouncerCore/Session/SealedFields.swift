/// The plaintext layout of what the gateway seals for clients (session ids, a bridged call's
/// `requestState`): big-endian integers and length-prefixed UTF-8 fields, read back
/// defensively even though the AEAD already authenticated them.
enum SealedFields {
    static func append(_ value: Int64, to out: inout [UInt8]) {
        withUnsafeBytes(of: UInt64(bitPattern: value).bigEndian) { out.append(contentsOf: $0) }
    }

    /// A field of at most 65,535 bytes (longer is cut: callers bound what they seal).
    static func append(_ field: String, to out: inout [UInt8]) {
        let count = min(field.utf8.count, Int(UInt16.max))
        out.append(UInt8(count >> 8))
        out.append(UInt8(count & 0xFF))
        out.append(contentsOf: field.utf8.prefix(count))
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var atEnd: Bool { self.offset == self.bytes.count }

        mutating func byte() -> UInt8? {
            guard self.offset < self.bytes.count else { return nil }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        mutating func int64() -> Int64? {
            guard self.bytes.count - self.offset >= 8 else { return nil }
            var value: UInt64 = 0
            for byte in self.bytes[self.offset..<self.offset + 8] { value = value << 8 | UInt64(byte) }
            self.offset += 8
            return Int64(bitPattern: value)
        }

        mutating func field() -> String? {
            guard let high = self.byte(), let low = self.byte() else { return nil }
            let count = Int(high) << 8 | Int(low)
            guard self.bytes.count - self.offset >= count else { return nil }
            defer { self.offset += count }
            return String(validating: self.bytes[self.offset..<self.offset + count], as: UTF8.self)
        }
    }
}
