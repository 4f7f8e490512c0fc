/// Why a JSON text was refused.
public struct JSONParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// Not JSON at all at `offset`.
        case syntax
        /// Arrays and objects nested deeper than the limit.
        case tooDeep
        /// The same key twice in one object: ambiguous, so refused (two parsers could
        /// disagree on which one wins, and the upstream must see what we checked).
        case duplicateKey
        /// A string that is not valid UTF-8 or holds a lone surrogate.
        case invalidString
    }

    public var kind: Kind
    public var offset: Int
    public var detail: String

    public var description: String { "\(self.detail) at byte \(self.offset)" }
}

/// A strict RFC 8259 parser over bytes with a depth limit and duplicate-key detection.
///
/// Written for the request path: one pass, no Foundation, no intermediate copies of the
/// input. The caller bounds the input size before calling.
public struct JSONParser {
    public var maxDepth: Int

    public init(maxDepth: Int = 64) {
        self.maxDepth = maxDepth
    }

    // Inlinable so that callers in other modules get it specialised for their collection (a
    // request body's ByteBufferView): unspecialised, every call pays runtime metadata lookups.
    @inlinable
    public func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        try withContiguousBytes(bytes) { buffer throws(JSONParseError) in try self.parse(buffer: buffer) }
    }

    @usableFromInline
    func parse(buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        var cursor = Cursor(bytes: buffer, maxDepth: self.maxDepth)
        cursor.skipWhitespace()
        let value = try cursor.parseValue(depth: 0)
        cursor.skipWhitespace()
        guard cursor.index == buffer.count else {
            throw cursor.error(.syntax, "unexpected data after the JSON value")
        }
        return value
    }

    public func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try self.parse(Array(text.utf8))
    }
}

/// Calls `body` with `bytes` in place when they are contiguous (a ByteBufferView, an Array),
/// else with one copy of them.
@inlinable
func withContiguousBytes<Result, Failure: Error>(
    _ bytes: some Collection<UInt8>,
    _ body: (UnsafeBufferPointer<UInt8>) throws(Failure) -> Result
) throws(Failure) -> Result {
    let inPlace = bytes.withContiguousStorageIfAvailable { buffer in
        Swift.Result { () throws(Failure) in try body(buffer) }
    }
    if let inPlace { return try inPlace.get() }
    return try Array(bytes).withUnsafeBufferPointer { buffer throws(Failure) in try body(buffer) }
}

private struct Cursor {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func error(_ kind: JSONParseError.Kind, _ detail: String) -> JSONParseError {
        JSONParseError(kind: kind, offset: self.index, detail: detail)
    }

    var current: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

    mutating func skipWhitespace() {
        while let byte = self.current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            self.index += 1
        }
    }

    mutating func expect(_ literal: StaticString, value: JSONValue) throws(JSONParseError) -> JSONValue {
        let count = literal.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.error(.syntax, "truncated literal") }
        let start = literal.utf8Start
        for offset in 0..<count where self.bytes[self.index + offset] != start[offset] {
            throw self.error(.syntax, "invalid literal")
        }
        self.index += count
        return value
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard let byte = self.current else { throw self.error(.syntax, "unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try self.parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try self.parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"): return try self.expect("true", value: .bool(true))
        case UInt8(ascii: "f"): return try self.expect("false", value: .bool(false))
        case UInt8(ascii: "n"): return try self.expect("null", value: .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.parseNumber()
        default: throw self.error(.syntax, "unexpected character")
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= self.maxDepth else { throw self.error(.tooDeep, "nesting deeper than \(self.maxDepth)") }
        self.index += 1
        // JSON-RPC objects have a handful of members: one allocation instead of growing 1, 2, 4...
        var members: [String: JSONValue] = Dictionary(minimumCapacity: 4)
        self.skipWhitespace()
        if self.current == UInt8(ascii: "}") {
            self.index += 1
            return .object(members)
        }
        while true {
            self.skipWhitespace()
            guard self.current == UInt8(ascii: "\"") else { throw self.error(.syntax, "expected a string key") }
            let keyOffset = self.index
            let key = try self.parseString()
            self.skipWhitespace()
            guard self.current == UInt8(ascii: ":") else { throw self.error(.syntax, "expected ':'") }
            self.index += 1
            self.skipWhitespace()
            let value = try self.parseValue(depth: depth)
            if members.updateValue(value, forKey: key) != nil {
                throw JSONParseError(kind: .duplicateKey, offset: keyOffset, detail: "duplicate key \"\(key)\"")
            }
            self.skipWhitespace()
            switch self.current {
            case UInt8(ascii: ","): self.index += 1
            case UInt8(ascii: "}"):
                self.index += 1
                return .object(members)
            default: throw self.error(.syntax, "expected ',' or '}'")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= self.maxDepth else { throw self.error(.tooDeep, "nesting deeper than \(self.maxDepth)") }
        self.index += 1
        var elements: [JSONValue] = []
        self.skipWhitespace()
        if self.current == UInt8(ascii: "]") {
            self.index += 1
            return .array(elements)
        }
        while true {
            self.skipWhitespace()
            elements.append(try self.parseValue(depth: depth))
            self.skipWhitespace()
            switch self.current {
            case UInt8(ascii: ","): self.index += 1
            case UInt8(ascii: "]"):
                self.index += 1
                return .array(elements)
            default: throw self.error(.syntax, "expected ',' or ']'")
            }
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = self.index
        if self.current == UInt8(ascii: "-") { self.index += 1 }
        guard let first = self.current, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw self.error(.syntax, "invalid number")
        }
        if first == UInt8(ascii: "0") {
            self.index += 1
        } else {
            self.skipDigits()
        }
        if self.current == UInt8(ascii: ".") {
            self.index += 1
            guard self.skipDigits() > 0 else { throw self.error(.syntax, "invalid fraction") }
        }
        if self.current == UInt8(ascii: "e") || self.current == UInt8(ascii: "E") {
            self.index += 1
            if self.current == UInt8(ascii: "+") || self.current == UInt8(ascii: "-") { self.index += 1 }
            guard self.skipDigits() > 0 else { throw self.error(.syntax, "invalid exponent") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<self.index]), as: UTF8.self)
        return .number(text)
    }

    @discardableResult
    mutating func skipDigits() -> Int {
        let start = self.index
        while let byte = self.current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            self.index += 1
        }
        return self.index - start
    }

    mutating func parseString() throws(JSONParseError) -> String {
        self.index += 1  // opening quote
        let start = self.index
        // Fast path: no escapes.
        var nonASCII: UInt8 = 0
        while let byte = self.current, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw self.error(.syntax, "control character in string") }
            nonASCII |= byte & 0x80
            self.index += 1
        }
        guard let stop = self.current else { throw self.error(.syntax, "unterminated string") }
        let plain = UnsafeBufferPointer(rebasing: self.bytes[start..<self.index])
        if stop == UInt8(ascii: "\"") {
            self.index += 1
            // ASCII is valid UTF-8 as it stands, and decoding it needs no validation pass.
            if nonASCII == 0 { return String(decoding: plain, as: UTF8.self) }
            guard let string = String(validating: plain, as: UTF8.self) else {
                throw self.error(.invalidString, "string is not valid UTF-8")
            }
            return string
        }
        var scratch = Array(plain)
        while true {
            guard let byte = self.current else { throw self.error(.syntax, "unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                self.index += 1
                guard let string = String(validating: scratch, as: UTF8.self) else {
                    throw self.error(.invalidString, "string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                self.index += 1
                try self.parseEscape(into: &scratch)
            case 0..<0x20:
                throw self.error(.syntax, "control character in string")
            default:
                scratch.append(byte)
                self.index += 1
            }
        }
    }

    mutating func parseEscape(into scratch: inout [UInt8]) throws(JSONParseError) {
        guard let byte = self.current else { throw self.error(.syntax, "unterminated escape") }
        self.index += 1
        switch byte {
        case UInt8(ascii: "\""): scratch.append(0x22)
        case UInt8(ascii: "\\"): scratch.append(0x5C)
        case UInt8(ascii: "/"): scratch.append(0x2F)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var code = try self.parseHex4()
            if (0xD800...0xDBFF).contains(code) {
                guard self.current == UInt8(ascii: "\\") else { throw self.error(.invalidString, "lone surrogate") }
                self.index += 1
                guard self.current == UInt8(ascii: "u") else { throw self.error(.invalidString, "lone surrogate") }
                self.index += 1
                let low = try self.parseHex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw self.error(.invalidString, "lone surrogate") }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(code) {
                throw self.error(.invalidString, "lone surrogate")
            }
            guard let scalar = Unicode.Scalar(code) else { throw self.error(.invalidString, "invalid code point") }
            scratch.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw self.error(.syntax, "invalid escape")
        }
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.error(.syntax, "truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw self.error(.syntax, "invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            self.index += 1
        }
        return value
    }
}
