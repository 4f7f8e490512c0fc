import Crypto
import protocol FoundationEssentials.ContiguousBytes

/// Lower-case hexadecimal.
public enum Hex {
    public static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        self.append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func append(_ bytes: some Sequence<UInt8>, to out: inout [UInt8]) {
        for byte in bytes {
            out.append(Self.digit(byte >> 4))
            out.append(Self.digit(byte & 0x0F))
        }
    }

    /// The 16 hex digits of a 64-bit value (big-endian).
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { Self.append($0, to: &out) }
    }

    /// A digest's bytes, read through its buffer rather than byte by byte.
    public static func append(_ digest: some Digest, to out: inout [UInt8]) {
        digest.withUnsafeBytes { Self.append($0, to: &out) }
    }

    /// Bytes in memory: the array grown once, the digits written in place (the audit writer
    /// writes four digests per record).
    public static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: bytes.count * 2))
        out.withUnsafeMutableBufferPointer { digits in
            for (index, byte) in bytes.enumerated() {
                digits[start + 2 * index] = Self.digit(byte >> 4)
                digits[start + 2 * index + 1] = Self.digit(byte & 0x0F)
            }
        }
    }

    /// The lower-case digit of a nibble (0-15).
    @inline(__always)
    static func digit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") - 10 + nibble
    }

    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 2 == 0 else { return nil }
        func value(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count / 2)
        var index = 0
        while index < bytes.count {
            guard let high = value(bytes[index]), let low = value(bytes[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
