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

/// The three output formats of `mcp-bouncer probe`.
public enum ProbeOutput {
    public static let readOnlyNote = "Only tools annotated readOnlyHint: true (and needing no arguments) are called; no other tool is ever called."

    /// A human-readable report.
    public static func table(_ reports: [ProbeReport]) -> String {
        var out = ""
        for report in reports {
            out += "\(report.url)\n"
            let versions = report.protocolVersions.isEmpty ? "" : " (protocol \(report.protocolVersions.joined(separator: ", ")))"
            out += "  transport: \(report.transport ?? "none found")\(versions)\n"
            if !report.toolsCalled.isEmpty { out += "  read-only tools called: \(report.toolsCalled.joined(separator: ", "))\n" }
            let findings = report.sortedFindings
            if findings.isEmpty { out += "  no findings\n" }
            let width = findings.map { $0.rule.id.count }.max() ?? 0
            for finding in findings {
                let severity = finding.severity.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)
                out += "  \(severity) \(finding.rule.id.padding(toLength: width, withPad: " ", startingAt: 0))  \(finding.rule.title)\n"
                out += "  \(String(repeating: " ", count: 9 + width))  \(finding.detail)\n"
                if finding.severity > .info {
                    out += "  \(String(repeating: " ", count: 9 + width))  fix: \(finding.rule.fix)\n"
                    out += "  \(String(repeating: " ", count: 9 + width))  see: \(finding.rule.reference)\n"
                }
            }
            out += "\n"
        }
        out += self.summary(reports) + "\n" + self.readOnlyNote + "\n"
        return out
    }

    /// `3 servers: 1 critical, 2 high, 0 medium, 1 low`.
    public static func summary(_ reports: [ProbeReport]) -> String {
        let counts = [ProbeSeverity.critical, .high, .medium, .low].map { severity in
            "\(reports.reduce(0) { $0 + $1.findings.filter { $0.severity == severity }.count }) \(severity.rawValue)"
        }
        return "\(reports.count) server\(reports.count == 1 ? "" : "s"): \(counts.joined(separator: ", "))"
    }

    /// One JSON document: every server with its findings.
    public static func json(_ reports: [ProbeReport]) -> JSONValue {
        .object([
            "note": .string(self.readOnlyNote),
            "servers": .array(reports.map { report in
                .object([
                    "url": .string(report.url),
                    "transport": report.transport.map(JSONValue.string) ?? .null,
                    "protocol_versions": .array(report.protocolVersions.map(JSONValue.string)),
                    "tools_called": .array(report.toolsCalled.map(JSONValue.string)),
                    "worst": report.worst.map { .string($0.rawValue) } ?? .null,
                    "findings": .array(report.sortedFindings.map { finding in
                        .object([
                            "id": .string(finding.rule.id), "severity": .string(finding.severity.rawValue), "title": .string(finding.rule.title),
                            "detail": .string(finding.detail), "reference": .string(finding.rule.reference), "fix": .string(finding.rule.fix),
                        ])
                    }),
                ])
            }),
        ])
    }

    /// SARIF 2.1.0: one run, a rule per finding kind seen, a result per finding located at the
    /// server's URL.
    public static func sarif(_ reports: [ProbeReport], version: String) -> JSONValue {
        var rules: [ProbeRule] = []
        for report in reports {
            for finding in report.findings where !rules.contains(where: { $0.id == finding.rule.id }) { rules.append(finding.rule) }
        }
        rules.sort { $0.id < $1.id }
        let results: [JSONValue] = reports.flatMap { report in
            report.sortedFindings.map { finding in
                JSONValue.object([
                    "ruleId": .string(finding.rule.id),
                    "ruleIndex": .number(String(rules.firstIndex { $0.id == finding.rule.id }!)),
                    "level": .string(finding.severity.sarifLevel),
                    "kind": .string(finding.severity == .info ? "informational" : "fail"),
                    "message": .string("\(finding.rule.title): \(finding.detail)").sarifMessage,
                    "locations": .array([.object(["physicalLocation": .object(["artifactLocation": .object(["uri": .string(report.url)])])])]),
                    "properties": .object(["severity": .string(finding.severity.rawValue)]),
                ])
            }
        }
        let driverRules: [JSONValue] = rules.map { rule in
            .object([
                "id": .string(rule.id),
                "name": .string(rule.id.split(whereSeparator: { $0 == "." || $0 == "-" }).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()),
                "shortDescription": .string(rule.title).sarifMessage,
                "fullDescription": .string("\(rule.title). See \(rule.reference).").sarifMessage,
                "help": .string(rule.fix).sarifMessage,
                "defaultConfiguration": .object(["level": .string(rule.severity.sarifLevel)]),
                "properties": .object(["security-severity": .string(rule.severity.securitySeverity), "tags": .array([.string("security"), .string("mcp")])]),
            ])
        }
        return .object([
            "$schema": .string("https://json.schemastore.org/sarif-2.1.0.json"),
            "version": .string("2.1.0"),
            "runs": .array([
                .object([
                    "tool": .object(["driver": .object([
                        "name": .string("mcp-bouncer probe"), "version": .string(version),
                        "rules": .array(driverRules),
                    ])]),
                    "results": .array(results),
                ]),
            ]),
        ])
    }
}

extension JSONValue {
    /// SARIF's `message` object.
    fileprivate var sarifMessage: JSONValue { .object(["text": self]) }
}
