import BouncerCore

/// How bad a probe finding is. Ordered: `info` < `low` < ... < `critical`.
public enum ProbeSeverity: String, Sendable, Hashable, CaseIterable, Comparable {
    case info, low, medium, high, critical

    private var rank: Int { Self.allCases.firstIndex(of: self)! }

    public static func < (lhs: ProbeSeverity, rhs: ProbeSeverity) -> Bool { lhs.rank < rhs.rank }

    /// SARIF `level`. An `info` finding is a result of kind `informational`, whose level SARIF
    /// 2.1.0 (3.27.9) requires to be `none`.
    var sarifLevel: String {
        switch self {
        case .critical, .high: "error"
        case .medium: "warning"
        case .low: "note"
        case .info: "none"
        }
    }

    /// GitHub code scanning's `security-severity` (CVSS-like, 0.0 - 10.0).
    var securitySeverity: String {
        switch self {
        case .critical: "9.5"
        case .high: "8.0"
        case .medium: "5.5"
        case .low: "3.0"
        case .info: "0.0"
        }
    }
}

/// `probe --fail-on`: the least severity that makes the command exit non-zero.
public enum ProbeFailOn: String, Sendable, CaseIterable {
    case critical, high, medium, never

    public func fails(_ reports: [ProbeReport]) -> Bool {
        guard let threshold = ProbeSeverity(rawValue: self.rawValue) else { return false }
        return reports.contains { $0.findings.contains { $0.severity >= threshold } }
    }
}

/// One kind of finding: what it means, where the requirement is written, how to fix it.
public struct ProbeRule: Sendable, Hashable {
    public var id: String
    public var severity: ProbeSeverity
    public var title: String
    /// The specification and section that require what the finding says is missing.
    public var reference: String
    public var fix: String

    public init(_ id: String, _ severity: ProbeSeverity, _ title: String, reference: String, fix: String) {
        self.id = id
        self.severity = severity
        self.title = title
        self.reference = reference
        self.fix = fix
    }
}

/// One thing a probe found about one server.
public struct ProbeFinding: Sendable, Hashable {
    public var rule: ProbeRule
    /// What was observed, specific to this server.
    public var detail: String

    public init(_ rule: ProbeRule, _ detail: String) {
        self.rule = rule
        self.detail = detail
    }

    public var severity: ProbeSeverity { self.rule.severity }
}

/// What a probe learnt about one MCP endpoint.
public struct ProbeReport: Sendable, Hashable {
    public var url: String
    /// `streamable-http`, `http+sse` (2024-11-05), or nil when no MCP transport answered.
    public var transport: String?
    /// Protocol revisions the server offered (initialize's answer, `server/discover`'s list).
    public var protocolVersions: [String] = []
    /// Tools called (each annotated `readOnlyHint: true`).
    public var toolsCalled: [String] = []
    public var findings: [ProbeFinding] = []

    public init(url: String) {
        self.url = url
    }

    public mutating func add(_ rule: ProbeRule, _ detail: String) {
        self.findings.append(ProbeFinding(rule, detail))
    }

    /// The worst finding's severity, nil without findings.
    public var worst: ProbeSeverity? { self.findings.map(\.severity).max() }

    /// Findings worst first, in the order found within a severity.
    public var sortedFindings: [ProbeFinding] {
        self.findings.enumerated().sorted { ($0.element.severity, -$0.offset) > ($1.element.severity, -$1.offset) }.map(\.element)
    }
}
