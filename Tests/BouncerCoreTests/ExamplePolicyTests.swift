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
