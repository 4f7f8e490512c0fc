/// A whole-number policy key: its name, its range and the field of `Root` it sets. Its
/// default is the field's initial value in `Root`, and nowhere else: the loader reads the key
/// with this, and a test checks that `policies/README.md` states the same default and range.
public struct IntegerSetting<Root>: Sendable {
    public enum Field: Sendable {
        case int(any WritableKeyPath<Root, Int> & Sendable)
        case int64(any WritableKeyPath<Root, Int64> & Sendable)
    }

    public let key: String
    public let range: ClosedRange<Int64>
    public let field: Field

    public init(key: String, range: ClosedRange<Int64>, field: Field) {
        self.key = key
        self.range = range
        self.field = field
    }

    public func value(in root: Root) -> Int64 {
        switch self.field {
        case .int(let path): return Int64(root[keyPath: path])
        case .int64(let path): return root[keyPath: path]
        }
    }

    public func set(_ value: Int64, in root: inout Root) {
        switch self.field {
        case .int(let path): root[keyPath: path] = Int(value)
        case .int64(let path): root[keyPath: path] = value
        }
    }
}
