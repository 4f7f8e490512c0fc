import BouncerCore
import Foundation
import Testing

/// Every example under policies/ must pass the same validation `mcp-bouncer check` runs.
@Suite("Example policies")
struct ExamplePolicyTests {
    static let policiesDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("policies")

    static var examples: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: Self.policiesDirectory.path)) ?? [])
            .filter { $0.hasSuffix(".yaml") }
            .sorted()
    }

    @Test func thereAreExamples() {
        #expect(Self.examples.count >= 3)
    }

    @Test("each example is valid", arguments: Self.examples)
    func valid(name: String) throws {
        let text = try String(contentsOf: Self.policiesDirectory.appendingPathComponent(name), encoding: .utf8)
        // Secrets come from the environment at run time; any value of the right shape will do.
        let values = ["DEMO_GATEWAY_PORT": "8443", "DEMO_ISSUER": "http://127.0.0.1:9000", "DEMO_UPSTREAM": "http://127.0.0.1:9001"]
        let secrets = SecretSource(environment: { values[$0] ?? "example-secret" }, readFile: { _ in .success("example-secret") })
        do {
            let policy = try PolicyLoader.load(yaml: text, secrets: secrets)
            #expect(!policy.resources.isEmpty)
        } catch {
            Issue.record("\(name):\n\(error)")
        }
    }
}

/// policies/README.md documents every `limits:` key with its default and range: it must say
/// what the code does (``GatewayLimits/settings`` and the fields' initial values).
@Suite("The policy reference")
struct PolicyReferenceTests {
    /// The `limits` table's rows: key -> (default, range), as written.
    static func documentedLimits() throws -> [(key: String, defaultValue: String, range: String)] {
        let text = try String(contentsOf: ExamplePolicyTests.policiesDirectory.appendingPathComponent("README.md"), encoding: .utf8)
        guard let start = text.range(of: "## `limits`") else { return [] }
        let section = text[start.upperBound...].prefix { _ in true }
        let end = section.range(of: "\n## ")?.lowerBound ?? section.endIndex
        return section[..<end].split(separator: "\n").compactMap { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 5, cells[1].hasPrefix("`"), cells[1].hasSuffix("`") else { return nil }
            return (String(cells[1].dropFirst().dropLast()), cells[2], cells[3])
        }
    }

    @Test func everyLimitIsDocumentedWithTheDefaultAndRangeTheCodeHas() throws {
        let documented = try Self.documentedLimits()
        let defaults = GatewayLimits()
        #expect(documented.map(\.key) == GatewayLimits.settings.map(\.key), "the README lists every key, in the code's order")
        for setting in GatewayLimits.settings {
            guard let row = documented.first(where: { $0.key == setting.key }) else { continue }
            #expect(row.defaultValue == String(setting.value(in: defaults)), "\(setting.key): the README says \(row.defaultValue)")
            #expect(row.range == "\(setting.range.lowerBound) - \(setting.range.upperBound)", "\(setting.key): the README says \(row.range)")
        }
    }
}
