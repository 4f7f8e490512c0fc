import BouncerCore
import Foundation

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
