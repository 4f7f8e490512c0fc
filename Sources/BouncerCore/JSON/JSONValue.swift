/// A parsed JSON value.
///
/// Numbers keep their source text so that a JSON-RPC `id` is echoed back byte for byte
/// (an id of `1.0` or `10000000000000000001` must not come back as something else).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// The number exactly as it was written.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The value of an integral number that fits in an `Int64`, else `nil`.
    public var int64Value: Int64? {
        guard case .number(let text) = self else { return nil }
        if let value = Int64(text) { return value }
        // `1.0e3` and friends are valid JSON integers for claims such as `exp`.
        if let double = Double(text), double.rounded() == double, abs(double) < 9.0e15 {
            return Int64(double)
        }
        return nil
    }
}

extension JSONValue {
    /// Serialises the value compactly. Object members are written in key order, so the
    /// output is deterministic.
    public var serialized: String {
        var out = ""
        self.write(into: &out)
        return out
    }

    public func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let text): out += text
        case .string(let value): JSONWriter.appendQuoted(value, to: &out)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += "," }
                element.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                JSONWriter.appendQuoted(key, to: &out)
                out += ":"
                members[key]!.write(into: &out)
            }
            out += "}"
        }
    }
}

/// Writes JSON objects with members in the order given, for documents people read
/// (metadata, error bodies).
public struct JSONWriter: Sendable {
    /// Keys with their values already serialised.
    private var members: [(String, String)] = []

    public init() {}

    public mutating func add(_ key: String, _ value: JSONValue) {
        self.members.append((key, value.serialized))
    }

    public mutating func add(_ key: String, _ value: String) {
        self.add(key, JSONValue.string(value))
    }

    public mutating func add(_ key: String, _ values: [String]) {
        self.add(key, JSONValue.array(values.map { .string($0) }))
    }

    public mutating func add(_ key: String, _ object: JSONWriter) {
        self.members.append((key, object.string))
    }

    public var string: String {
        var out = "{"
        for (index, (key, value)) in self.members.enumerated() {
            if index > 0 { out += "," }
            Self.appendQuoted(key, to: &out)
            out += ":"
            out += value
        }
        out += "}"
        return out
    }

    static func appendQuoted(_ value: String, to out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
