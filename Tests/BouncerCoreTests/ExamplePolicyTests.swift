import BouncerCore
import Foundation
import Testing
import Crypto

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
        let values = [
            "DEMO_GATEWAY_PORT": "8443", "DEMO_ISSUER": "http://127.0.0.1:9000", "DEMO_UPSTREAM": "http://127.0.0.1:9001",
            "CREDENTIALS_DIRECTORY": "/run/credentials/mcp-bouncer.service", "DEMO_TOOL_PINS": "/tmp/demo-pins.yaml",
            "SESSION_KEY_K1": SessionKey.newSecret(),
        ]
        let pins = ToolPins(tools: ["list_issues": String(repeating: "0", count: 64)]).yaml
        let auditKey = AuditSigner(key: .init()).privateKeyPEM
        let secrets = SecretSource(environment: { values[$0] ?? "example-secret" }, readFile: { path in
            .success(path == "/run/credentials/mcp-bouncer.service/audit.key" ? auditKey : path == "/tmp/demo-pins.yaml" ? pins : "example-secret")
        })
        do {
            let policy = try PolicyLoader.load(yaml: text, secrets: secrets)
            #expect(!policy.resources.isEmpty)
        } catch {
            Issue.record("\(name):\n\(error)")
        }
    }
}

/// policies/README.md documents every key with its default: it must say what the code does
/// (the settings tables, and the initial values of the policy types' fields, where each
/// default is written once).
@Suite("The policy reference")
struct PolicyReferenceTests {
    /// The rows of the table under `heading`: key -> cells by column name, as written.
    static func table(_ heading: String) throws -> [(key: String, cells: [String: String])] {
        let text = try String(contentsOf: ExamplePolicyTests.policiesDirectory.appendingPathComponent("README.md"), encoding: .utf8)
        guard let start = text.range(of: "\n## \(heading)\n") else { return [] }
        let section = text[start.upperBound...]
        let end = section.range(of: "\n## ")?.lowerBound ?? section.endIndex
        var columns: [String] = []
        var rows: [(key: String, cells: [String: String])] = []
        for line in section[..<end].split(separator: "\n") where line.hasPrefix("|") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast().map { $0.trimmingCharacters(in: .whitespaces) }
            if columns.isEmpty {
                columns = cells
            } else if cells.first?.hasPrefix("`") == true {
                rows.append((String(cells[0].dropFirst().dropLast()), Dictionary(uniqueKeysWithValues: zip(columns, cells))))
            }
        }
        return rows
    }

    /// A default as the README writes it: `none`, "1.2" and 10 all name the value itself.
    static func plain(_ cell: String?) -> String {
        (cell ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "`\""))
    }

    @Test func everyLimitIsDocumentedWithTheDefaultAndRangeTheCodeHas() throws {
        let documented = try Self.table("`limits`")
        let defaults = GatewayLimits()
        #expect(documented.map(\.key) == GatewayLimits.settings.map(\.key), "the README lists every key, in the code's order")
        for setting in GatewayLimits.settings {
            guard let row = documented.first(where: { $0.key == setting.key })?.cells else { continue }
            #expect(row["default"] == String(setting.value(in: defaults)), "\(setting.key): the README says \(row["default"] ?? "-")")
            #expect(row["range"] == "\(setting.range.lowerBound) - \(setting.range.upperBound)", "\(setting.key): the README says \(row["range"] ?? "-")")
        }
    }

    @Test func auditDefaultsAreTheCodes() throws {
        let rows = Dictionary(try Self.table("`audit`").map { ($0.key, $0.cells) }, uniquingKeysWith: { first, _ in first })
        let defaults = AuditSettings(file: "f")
        for setting in AuditSettings.integerSettings {
            #expect(Self.plain(rows[setting.key]?["default"]) == String(setting.value(in: defaults)), "audit.\(setting.key)")
            #expect(rows[setting.key]?["meaning"]?.contains("(\(setting.range.lowerBound) - \(setting.range.upperBound))") == true, "audit.\(setting.key) range")
        }
        #expect(Self.plain(rows["arguments"]?["default"]) == defaults.arguments.rawValue)
        #expect(Self.plain(rows["fsync"]?["default"]) == defaults.fsync.rawValue)
        #expect(Self.plain(rows["on_overflow"]?["default"]) == defaults.onOverflow.rawValue)
        #expect(Set(rows.keys) == ["file", "arguments", "signing_key", "checkpoint_every", "fsync", "on_overflow", "queue_capacity"])
    }

    @Test func tlsDefaultsAreTheCodes() throws {
        let rows = Dictionary(try Self.table("`tls`").map { ($0.key, $0.cells) }, uniquingKeysWith: { first, _ in first })
        let defaults = ServerTLSSettings(certificate: CertificateFiles(certificate: "c", privateKey: "k"))
        for setting in ServerTLSSettings.integerSettings {
            #expect(Self.plain(rows[setting.key]?["default"]) == String(setting.value(in: defaults)), "tls.\(setting.key)")
        }
        #expect(Self.plain(rows["min_version"]?["default"]) == defaults.minimumVersion.rawValue)
        #expect(Self.plain(rows["client_verify"]?["default"]) == defaults.clientVerification.rawValue)
    }

    @Test func authorizationServerDefaultsAreTheCodes() throws {
        let rows = Dictionary(try Self.table("`authorization_servers.<name>`").map { ($0.key, $0.cells) }, uniquingKeysWith: { first, _ in first })
        let defaults = AuthorizationServerPolicy(name: "n", issuer: "https://issuer.example")
        for setting in AuthorizationServerPolicy.integerSettings {
            #expect(Self.plain(rows[setting.key]?["default"]) == String(setting.value(in: defaults)), "authorization_servers.\(setting.key)")
            // The ranges are in the meaning column where the README gives them.
            if let meaning = rows[setting.key]?["meaning"], meaning.contains(" - ") {
                #expect(meaning.contains("(\(setting.range.lowerBound) - \(setting.range.upperBound))"), "authorization_servers.\(setting.key) range")
            }
        }
        #expect(Self.plain(rows["token_format"]?["default"]) == defaults.tokenFormat.rawValue)
        #expect(Self.plain(rows["require_at_jwt_type"]?["default"]) == String(defaults.requireAccessTokenType))
        #expect(rows["scope_claims"]?["default"] == "`[\(defaults.scopeClaims.map(\.rawValue).joined(separator: ", "))]`")
        #expect(rows["subject_claim"]?["default"] == "`\(defaults.subjectClaim)`")
        #expect(rows["required_claims"]?["default"] == "none" && defaults.requiredClaims.isEmpty)
        #expect(defaults.algorithms == Set(JWSAlgorithm.allCases) && rows["algorithms"]?["default"] == "all below")
    }

    @Test func bridgeDefaultsAreTheCodes() throws {
        let rows = Dictionary(try Self.table("`bridge`").map { ($0.key, $0.cells) }, uniquingKeysWith: { first, _ in first })
        let defaults = BridgeSettings()
        for setting in BridgeSettings.integerSettings {
            #expect(Self.plain(rows[setting.key]?["default"]) == String(setting.value(in: defaults)), "bridge.\(setting.key)")
            #expect(rows[setting.key]?["meaning"]?.contains("(\(setting.range.lowerBound) - \(setting.range.upperBound))") == true, "bridge.\(setting.key) range")
        }
        #expect(Self.plain(rows["enabled"]?["default"]) == String(defaults.enabled))
        #expect(Set(rows.keys) == Set(BridgeSettings.integerSettings.map(\.key) + ["enabled", "replica"]))
    }

    @Test func dpopDefaultsAreTheCodes() throws {
        let rows = Dictionary(try Self.table("`dpop`").map { ($0.key, $0.cells) }, uniquingKeysWith: { first, _ in first })
        let defaults = DPoPSettings()
        for setting in DPoPSettings.integerSettings {
            #expect(Self.plain(rows[setting.key]?["default"]) == String(setting.value(in: defaults)), "dpop.\(setting.key)")
            #expect(rows[setting.key]?["meaning"]?.contains("(\(setting.range.lowerBound) - \(setting.range.upperBound))") == true, "dpop.\(setting.key) range")
        }
        #expect(rows["algorithms"]?["default"] == "`[\(defaults.algorithms.map(\.rawValue).joined(separator: ", "))]`")
        #expect(Self.plain(rows["nonce"]?["default"]) == String(defaults.nonce))
        #expect(Set(rows.keys) == Set(DPoPSettings.integerSettings.map(\.key) + ["algorithms", "nonce"]))
    }
}
