/// The JSON Canonicalization Scheme (RFC 8785): one byte sequence per JSON value, whatever the
/// whitespace, member order, escapes or number spelling of the text it came from. Audit
/// records are hashed over it (so a log shipper that re-serialises a line does not break the
/// chain, while any change of a value does), and tool arguments are digested over it.
public enum CanonicalJSON {
    /// The canonical form of `value`.
    public static func serialize(_ value: JSONValue) -> String {
        String(decoding: self.bytes(value), as: UTF8.self)
    }

    public static func bytes(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        self.append(value, to: &out)
        return out
    }

    public static func append(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let text):
            if Self.isShortInteger(text) { out.append(contentsOf: text.utf8) } else { out.append(contentsOf: self.number(text).utf8) }
        case .string(let text): self.appendString(text, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                self.append(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, key) in self.sortedKeys(members.keys).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                self.appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                self.append(members[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// RFC 8785 3.2.3: members sorted by the UTF-16 code units of their names (not by
    /// Swift's `String` order, which compares Unicode scalars after normalisation).
    public static func sortedKeys(_ keys: some Sequence<String>) -> [String] {
        keys.sorted(by: self.precedes)
    }

    /// UTF-16 code unit order. For ASCII names (every name the gateway writes) that is byte
    /// order, compared without transcoding.
    @inlinable
    public static func precedes(_ lhs: String, _ rhs: String) -> Bool {
        if lhs.utf8.allSatisfy({ $0 < 0x80 }) && rhs.utf8.allSatisfy({ $0 < 0x80 }) {
            return lhs.utf8.lexicographicallyPrecedes(rhs.utf8)
        }
        return lhs.utf16.lexicographicallyPrecedes(rhs.utf16)
    }

    /// RFC 8785 3.2.2.2: `"` and `\` escaped, control characters as `\b \t \n \f \r` or
    /// `\u00xx` (lower-case hex), everything else as itself in UTF-8.
    public static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            // Runs that need no escape (nearly everything) are copied whole.
            var runStart = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                runStart = index + 1
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x09: out.append(UInt8(ascii: "t"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                default:
                    out.append(contentsOf: "u00".utf8)
                    out.append(Hex.digits[Int(byte >> 4)])
                    out.append(Hex.digits[Int(byte & 0x0F)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The same, into a `String` (the JSON log handler writes strings).
    public static func appendString(_ text: String, to out: inout String) {
        var bytes: [UInt8] = []
        self.appendString(text, to: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }

    /// Bytes already in canonical form (a member's name and punctuation), copied whole.
    @inline(__always)
    public static func appendLiteral(_ literal: StaticString, to out: inout [UInt8]) {
        literal.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// A whole number, in decimal.
    @inlinable
    public static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 {
            out.append(UInt8(ascii: "-"))
            // -Int64.min does not fit; its magnitude does as UInt64.
            self.appendUnsigned(UInt64(bitPattern: 0 &- value), to: &out)
        } else {
            self.appendUnsigned(UInt64(value), to: &out)
        }
    }

    @usableFromInline
    static func appendUnsigned(_ value: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes: room for 20 digits
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[31 - count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            out.append(contentsOf: buffer[(32 - count)...])
        }
    }

    /// A duration in microseconds written as milliseconds, as ECMAScript writes the double
    /// `microseconds / 1000` (`12345` -> `12.345`, `12300` -> `12.3`, `5` -> `0.005`).
    public static func appendMilliseconds(microseconds: Int64, to out: inout [UInt8]) {
        let magnitude = microseconds < 0 ? 0 &- microseconds : microseconds
        if microseconds < 0 { out.append(UInt8(ascii: "-")) }
        self.appendUnsigned(UInt64(magnitude / 1000), to: &out)
        var fraction = Int(magnitude % 1000)
        guard fraction > 0 else { return }
        out.append(UInt8(ascii: "."))
        var divisor = 100
        while fraction > 0 {
            out.append(UInt8(ascii: "0") + UInt8(fraction / divisor))
            fraction %= divisor
            divisor /= 10
        }
    }

    /// RFC 8785 3.2.2.3: a number as ECMAScript's `Number.prototype.toString` writes the
    /// IEEE 754 double it denotes (`1.0` -> `1`, `1E3` -> `1000`, `1e-7` -> `1e-7`,
    /// `1e21` -> `1e+21`). Text that is not a finite double stays as written (the parser
    /// accepts only JSON numbers, which are all finite unless they overflow, which JSON
    /// allows and I-JSON does not).
    /// An integer literal of at most 15 digits without a leading zero: an exact double that
    /// ECMAScript prints as written, so its own canonical form (no round trip through Double
    /// and its text; `-0` and `0…` take the round trip).
    static func isShortInteger(_ text: String) -> Bool {
        var digits = text.utf8[...]
        if digits.first == UInt8(ascii: "-") { digits = digits.dropFirst() }
        guard let first = digits.first, digits.count <= 15, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return false }
        return first != UInt8(ascii: "0") || text == "0"
    }

    public static func number(_ text: String) -> String {
        guard let value = Double(text), value.isFinite else { return text }
        return self.number(value)
    }

    public static func number(_ value: Double) -> String {
        if value == 0 { return "0" }
        // Swift prints the shortest digits that round-trip (as ECMAScript requires); only the
        // layout differs. Take the digits and the decimal exponent from it.
        var description = Array((value < 0 ? -value : value).description.utf8)
        var exponent = 0
        if let e = description.firstIndex(where: { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
            exponent = Int(String(decoding: description[(e + 1)...], as: UTF8.self)) ?? 0
            description.removeSubrange(e...)
        }
        var digits: [UInt8] = []
        var pointPosition: Int?
        for byte in description {
            if byte == UInt8(ascii: ".") { pointPosition = digits.count } else { digits.append(byte) }
        }
        // value = 0.d1d2...dk × 10^n, with d1 != 0.
        var n = (pointPosition ?? digits.count) + exponent
        while digits.first == UInt8(ascii: "0") {
            digits.removeFirst()
            n -= 1
        }
        while digits.last == UInt8(ascii: "0") { digits.removeLast() }
        let k = digits.count
        let digitText = String(decoding: digits, as: UTF8.self)
        var out = value < 0 ? "-" : ""
        if k <= n && n <= 21 {
            out += digitText + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            out += digitText.prefix(n) + "." + digitText.dropFirst(n)
        } else if -6 < n && n <= 0 {
            out += "0." + String(repeating: "0", count: -n) + digitText
        } else {
            let e = n - 1
            out += digitText.prefix(1)
            if k > 1 { out += "." + digitText.dropFirst() }
            out += "e" + (e < 0 ? "-" : "+") + String(abs(e))
        }
        return out
    }
}

/// RFC 3339 timestamps in UTC with milliseconds (`2026-12-01T02:08:08.123Z`), from the
/// milliseconds since the Unix epoch; the caller reads the clock.
public enum RFC3339 {
    public static func format(millisecondsSinceEpoch ms: Int64) -> String {
        var out: [UInt8] = []
        self.append(millisecondsSinceEpoch: ms, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func append(millisecondsSinceEpoch ms: Int64, to out: inout [UInt8]) {
        let millis = Int((ms % 1000 + 1000) % 1000)
        let seconds = (ms - Int64(millis)) / 1000
        var days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        // Howard Hinnant's civil_from_days.
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = max(0, value)
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(rest / divisor % 10))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(year, 4)
        out.append(UInt8(ascii: "-"))
        digits(month, 2)
        out.append(UInt8(ascii: "-"))
        digits(day, 2)
        out.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2)
        out.append(UInt8(ascii: ":"))
        digits(secondOfDay / 60 % 60, 2)
        out.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2)
        out.append(UInt8(ascii: "."))
        digits(millis, 3)
        out.append(UInt8(ascii: "Z"))
    }
}
