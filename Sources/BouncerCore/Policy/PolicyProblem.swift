/// One thing wrong with a policy file, located by line and key path.
public struct PolicyProblem: Error, Hashable, Sendable, CustomStringConvertible {
    /// 1-based; `nil` when the problem is about a missing key of the whole document.
    public var line: Int?
    public var column: Int?
    /// Dotted path with list indices: `resources[0].methods.tools/call`.
    public var keyPath: String
    public var message: String

    public init(line: Int?, column: Int?, keyPath: String, message: String) {
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        let location = self.line.map { "line \($0)" + (self.column.map { ":\($0)" } ?? "") } ?? "document"
        let path = self.keyPath.isEmpty ? "(top level)" : self.keyPath
        return "\(location): \(path): \(self.message)"
    }
}

/// Every problem found in a policy file; thrown by ``PolicyLoader/load(yaml:secrets:)``.
public struct PolicyValidationError: Error, Sendable, CustomStringConvertible {
    public var problems: [PolicyProblem]

    public var description: String {
        self.problems.map(\.description).joined(separator: "\n")
    }
}
