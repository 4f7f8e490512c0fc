import Yams

/// A mapping of the policy YAML whose keys were checked against those its section allows
/// (``PolicyReader/section(_:_:allowed:required:later:)``), with typed readers by key. Each
/// reader reports a problem at the value's line and key path when the value is not what the key
/// takes, and returns nil then, as it does for an absent key: a caller applies the default it
/// holds only to absent keys, because a policy with a problem is never loaded. Nothing falls
/// back silently.
struct PolicySection {
    let reader: PolicyReader
    let node: Node
    let path: String
    let entries: [(key: String, keyNode: Node, value: Node)]

    subscript(key: String) -> Node? {
        self.entries.first { $0.key == key }?.value
    }

    func childPath(_ key: String) -> String {
        self.path.isEmpty ? key : "\(self.path).\(key)"
    }

    /// Reports a problem with `key`'s value (or with the section, when the key is absent).
    func report(_ key: String, _ message: String) {
        self.reader.report(self[key] ?? self.node, self.childPath(key), message)
    }

    func string(_ key: String) -> String? {
        self.reader.string(self[key], self.childPath(key))
    }

    func nonEmptyString(_ key: String) -> String? {
        self.reader.nonEmptyString(self[key], self.childPath(key))
    }

    func integer(_ key: String, range: ClosedRange<Int64>) -> Int64? {
        self.reader.integer(self[key], self.childPath(key), range: range)
    }

    func bool(_ key: String) -> Bool? {
        self.reader.bool(self[key], self.childPath(key))
    }

    func stringList(_ key: String) -> [String]? {
        self.reader.stringList(self[key], self.childPath(key))
    }

    func scopeList(_ key: String) -> [String]? {
        self.reader.scopeList(self[key], self.childPath(key))
    }

    /// A nested mapping.
    func section(_ key: String, allowed: Set<String>, required: [String] = []) -> PolicySection? {
        guard let node = self[key] else { return nil }
        return self.reader.section(node, self.childPath(key), allowed: allowed, required: required)
    }

    /// One of an enumeration's values, spelled as its raw value. `message` says what is
    /// allowed (by default: one of the raw values).
    func choice<Value: RawRepresentable & CaseIterable>(_ key: String, _ type: Value.Type, message: String? = nil) -> Value? where Value.RawValue == String {
        guard let text = self.string(key) else { return nil }
        guard let value = Value(rawValue: text) else {
            self.report(key, message ?? "must be one of \(Value.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return value
    }

    /// A list of an enumeration's values, each spelled as its raw value. `problem` says what
    /// is wrong with a value that is none of them.
    func choices<Value: RawRepresentable & CaseIterable>(_ key: String, _ type: Value.Type, problem: (String) -> String) -> [Value]? where Value.RawValue == String {
        guard let names = self.stringList(key) else { return nil }
        var values: [Value] = []
        for name in names {
            guard let value = Value(rawValue: name) else {
                self.report(key, problem(name))
                return nil
            }
            values.append(value)
        }
        return values
    }

    /// Reads the whole-number keys `settings` names into `root`; absent keys keep `root`'s values
    /// (the defaults).
    func read<Root>(_ settings: [IntegerSetting<Root>], into root: inout Root) {
        for setting in settings {
            if let value = self.integer(setting.key, range: setting.range) {
                setting.set(value, in: &root)
            }
        }
    }
}
