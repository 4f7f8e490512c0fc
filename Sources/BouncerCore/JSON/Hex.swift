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
            out.append(self.digits[Int(byte >> 4)])
            out.append(self.digits[Int(byte & 0x0F)])
        }
    }

    /// The 16 hex digits of a 64-bit value (big-endian).
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 60, through: 0, by: -4) {
            out.append(self.digits[Int(truncatingIfNeeded: value >> UInt64(shift)) & 0x0F])
        }
    }

    /// A digest's bytes, read through its buffer rather than byte by byte.
    public static func append(_ digest: some Digest, to out: inout [UInt8]) {
        digest.withUnsafeBytes { bytes in
            out.reserveCapacity(out.count + bytes.count * 2)
            for byte in bytes {
                out.append(self.digits[Int(byte >> 4)])
                out.append(self.digits[Int(byte & 0x0F)])
            }
        }
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
