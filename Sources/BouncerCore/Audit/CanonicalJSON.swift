/// The JSON Canonicalization Scheme (RFC 8785): one byte sequence per JSON value, whatever the
/// whitespace, member order, escapes or number spelling of the text it came from. Audit
/// records are hashed over it (so a log shipper that re-serialises a line does not break the
/// chain, while any change of a value does), and tool arguments are digested over it.
public enum CanonicalJSON {
    /// The canonical form of `value`.
    public static func serialize(_ value: JSONValue) -> String {
        var out = ""
        self.append(value, to: &out)
        return out
    }

    public static func append(_ value: JSONValue, to out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .number(let text): out += self.number(text)
        case .string(let text): self.appendString(text, to: &out)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += "," }
                self.append(element, to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, key) in self.sortedKeys(members.keys).enumerated() {
                if index > 0 { out += "," }
                self.appendString(key, to: &out)
                out += ":"
                self.append(members[key]!, to: &out)
            }
            out += "}"
        }
    }

    /// RFC 8785 3.2.3: members sorted by the UTF-16 code units of their names (not by
    /// Swift's `String` order, which compares Unicode scalars after normalisation).
    public static func sortedKeys(_ keys: some Sequence<String>) -> [String] {
        keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
    }

    /// RFC 8785 3.2.2.2: `"` and `\` escaped, control characters as `\b \t \n \f \r` or
    /// `\u00xx` (lower-case hex), everything else as itself in UTF-8.
    public static func appendString(_ text: String, to out: inout String) {
        out += "\""
        var plainStart = text.utf8.startIndex
        var index = plainStart
        let utf8 = text.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                utf8.formIndex(after: &index)
                continue
            }
            out += text[plainStart..<index]
            switch byte {
            case UInt8(ascii: "\""): out += "\\\""
            case UInt8(ascii: "\\"): out += "\\\\"
            case 0x08: out += "\\b"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0C: out += "\\f"
            case 0x0D: out += "\\r"
            default:
                let hex = String(byte, radix: 16)
                out += "\\u00" + (hex.count == 1 ? "0" : "") + hex
            }
            utf8.formIndex(after: &index)
            plainStart = index
        }
        out += text[plainStart..<index]
        out += "\""
    }

    /// RFC 8785 3.2.2.3: a number as ECMAScript's `Number.prototype.toString` writes the
    /// IEEE 754 double it denotes (`1.0` -> `1`, `1E3` -> `1000`, `1e-7` -> `1e-7`,
    /// `1e21` -> `1e+21`). Text that is not a finite double stays as written (the parser
    /// accepts only JSON numbers, which are all finite unless they overflow, which JSON
    /// allows and I-JSON does not).
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
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(millis, 3))Z"
    }
}
