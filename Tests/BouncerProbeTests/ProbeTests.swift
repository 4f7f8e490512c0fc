import BouncerCore
import BouncerProbe
import Foundation
import Testing

/// The pure parts of `mcp-bouncer probe` and `init`: reading challenges and metadata, choosing
/// the tools a probe may call, the report formats, the exit gate, and the policy `init` writes.
@Suite("Probe and init")
struct ProbeTests {
    static let url = try! CanonicalURI("https://mcp.example.com/jira/mcp")

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func json(_ text: String) -> JSONValue { try! JSONParser(maxDepth: 32).parse(text) }

    @Test func everyRuleIsDocumentedWithItsSeverity() throws {
        #expect(Set(ProbeRules.all.map(\.id)).count == ProbeRules.all.count, "rule ids are unique")
        #expect(ProbeRules.all.allSatisfy { $0.severity == .info || !$0.fix.isEmpty }, "every finding that counts says how to fix it")
        let docs = try String(contentsOf: Self.repository.appendingPathComponent("docs/probe.md"), encoding: .utf8)
        let rows = docs.split(separator: "\n").filter { $0.hasPrefix("| `") }.map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        #expect(rows.map { String($0[0].dropFirst().dropLast()) } == ProbeRules.all.map(\.id), "docs/probe.md lists every rule, in the code's order")
        for (row, rule) in zip(rows, ProbeRules.all) {
            #expect(row[1] == rule.severity.rawValue && row[2] == rule.title, "\(rule.id)")
        }
    }

    @Test func bearerChallengesAreRead() {
        let header = #"Bearer error="invalid_token", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp", scope="jira:read jira:write""#
        let parameters = ProbeChecks.bearerParameters(header)
        #expect(parameters?["resource_metadata"] == "https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp")
        #expect(parameters?["scope"] == "jira:read jira:write" && parameters?["error"] == "invalid_token")
        // Another scheme first, unquoted values, escapes, odd spacing, case.
        let mixed = ProbeChecks.bearerParameters(#"Basic realm="x", bearer   Scope=read ,error_description="a \"quoted\" word""#)
        #expect(mixed?["scope"] == "read" && mixed?["error_description"] == #"a "quoted" word"#)
        #expect(ProbeChecks.bearerParameters("Basic realm=\"x\"") == nil)
        #expect(ProbeChecks.bearerParameters("Bearerx realm=1") == nil)
        #expect(ProbeChecks.bearerParameters("Bearer")?.isEmpty == true)
        // Hostile input ends, and the first of duplicate parameters counts.
        #expect(ProbeChecks.bearerParameters(#"Bearer a="unterminated"#)?["a"] == "unterminated")
        #expect(ProbeChecks.bearerParameters(#"Bearer scope="a", scope="b""#)?["scope"] == "a")
        #expect(ProbeChecks.bearerParameters(String(repeating: "Bearer ,=", count: 500)) != nil)
    }

    @Test func resourceMetadataIsJudged() {
        var report = ProbeReport(url: Self.url.description)
        let good = Self.json(#"{"resource":"https://mcp.example.com/jira/mcp","authorization_servers":["https://as.example.com"]}"#)
        #expect(ProbeChecks.judgeResourceMetadata(good, url: Self.url, source: "prm", into: &report) == ["https://as.example.com"])
        #expect(report.findings.isEmpty)
        // Another resource, none, no servers, not an object.
        for (document, rules) in [
            (#"{"resource":"https://mcp.example.com","authorization_servers":["https://as"]}"#, ["prm.resource-mismatch"]),
            (#"{"authorization_servers":[]}"#, ["prm.resource-mismatch", "prm.no-authorization-servers"]),
            (#"["https://mcp.example.com/jira/mcp"]"#, ["prm.invalid"]),
        ] {
            var report = ProbeReport(url: Self.url.description)
            _ = ProbeChecks.judgeResourceMetadata(Self.json(document), url: Self.url, source: "prm", into: &report)
            #expect(report.findings.map(\.rule.id) == rules, "\(document)")
        }
        // Case and default ports do not matter; the metadata URLs follow RFC 9728 section 3.1.
        var equivalent = ProbeReport(url: "")
        _ = ProbeChecks.judgeResourceMetadata(Self.json(#"{"resource":"HTTPS://MCP.example.com:443/jira/mcp","authorization_servers":["a"]}"#), url: Self.url, source: "prm", into: &equivalent)
        #expect(equivalent.findings.isEmpty)
        // What a resource says of sender-constrained tokens (mcp-bouncer's metadata says it).
        var bound = ProbeReport(url: "")
        _ = ProbeChecks.judgeResourceMetadata(Self.json("""
            {"resource":"https://mcp.example.com/jira/mcp","authorization_servers":["a"],"dpop_signing_alg_values_supported":["ES256","EdDSA"],
             "dpop_bound_access_tokens_required":true,"tls_client_certificate_bound_access_tokens":true}
            """), url: Self.url, source: "prm", into: &bound)
        #expect(bound.findings.map(\.rule.id) == ["prm.sender-constraint"])
        #expect(bound.findings.first?.detail == "DPoP proofs with ES256, EdDSA; DPoP-bound tokens required; certificate-bound tokens (RFC 8705)")
        #expect(ProbeChecks.metadataURLs(for: Self.url) == ("https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp", "https://mcp.example.com/.well-known/oauth-protected-resource"))
    }

    @Test func authorizationServerMetadataIsJudged() {
        var report = ProbeReport(url: "")
        ProbeChecks.judgeServerMetadata(Self.json(#"{"issuer":"https://as","code_challenge_methods_supported":["S256"],"client_id_metadata_document_supported":true,"token_endpoint_auth_methods_supported":["none","private_key_jwt"]}"#), issuer: "https://as", source: "m", into: &report)
        #expect(report.findings.map(\.rule.id) == ["as.metadata"])
        #expect(report.findings[0].detail.contains("none, private_key_jwt") && report.findings[0].detail.contains("client ID metadata documents"))
        var bad = ProbeReport(url: "")
        ProbeChecks.judgeServerMetadata(Self.json(#"{"issuer":"https://evil","code_challenge_methods_supported":["plain"]}"#), issuer: "https://as", source: "m", into: &bad)
        #expect(bad.findings.map(\.rule.id) == ["as.issuer-mismatch", "as.no-pkce-s256", "as.no-client-registration", "as.metadata"])
        #expect(bad.findings.map(\.severity) == [.high, .high, .low, .info])
    }

    @Test func onlyReadOnlyToolsWithoutRequiredArgumentsAreCalled() {
        let tools = Self.json(#"""
            [{"name":"list","annotations":{"readOnlyHint":true},"inputSchema":{"type":"object","properties":{"q":{}}}},
             {"name":"get","annotations":{"readOnlyHint":true},"inputSchema":{"required":["id"]}},
             {"name":"purge","annotations":{"destructiveHint":true}},
             {"name":"maybe","annotations":{"readOnlyHint":"true"}},
             {"name":"plain"},
             {"annotations":{"readOnlyHint":true}}]
            """#).arrayValue!
        #expect(ProbeChecks.harmlessTools(tools) == ["list"])
    }

    @Test func unverifiedAudiencesAreReadFromJWTsOnly() {
        let payload = Base64URL.encode(Array(#"{"aud":["https://a","https://b"]}"#.utf8))
        let header = Base64URL.encode(Array(#"{"alg":"ES256"}"#.utf8))
        #expect(ProbeChecks.unverifiedAudiences(of: "\(header).\(payload).c2ln") == ["https://a", "https://b"])
        #expect(ProbeChecks.unverifiedAudiences(of: "opaque-token") == nil)
    }

    static func sampleReports() -> [ProbeReport] {
        var open = ProbeReport(url: "http://10.0.0.5/mcp")
        open.transport = "streamable-http"
        open.protocolVersions = ["2025-11-25"]
        open.toolsCalled = ["list"]
        open.add(ProbeRules.transport, "streamable-http")
        open.add(ProbeRules.openInitialize, "answered 200")
        open.add(ProbeRules.plainHTTP, "plain http")
        var clean = ProbeReport(url: "https://mcp.example.com/jira/mcp")
        clean.add(ProbeRules.noChallengeScope, "no scope")
        return [open, clean]
    }

    @Test func theGateFollowsFailOn() {
        let reports = Self.sampleReports()
        #expect(ProbeFailOn.critical.fails(reports) && ProbeFailOn.high.fails(reports) && !ProbeFailOn.never.fails(reports))
        #expect(!ProbeFailOn.medium.fails([reports[1]]), "a low finding passes a medium gate")
        #expect(!ProbeFailOn.critical.fails([]))
        #expect(reports[0].sortedFindings.map(\.rule.id) == ["auth.none.initialize", "tls.plain-http", "mcp.transport"])
    }

    @Test func theReportFormats() {
        let reports = Self.sampleReports()
        let table = ProbeOutput.table(reports)
        #expect(table.contains("CRITICAL auth.none.initialize") && table.contains("fix: Put mcp-bouncer in front"))
        #expect(table.contains("read-only tools called: list") && table.contains("2 servers: 1 critical, 1 high, 0 medium, 1 low"))
        #expect(table.contains(ProbeOutput.readOnlyNote))
        let json = ProbeOutput.json(reports)
        #expect(json["servers"]?.arrayValue?.first?["worst"] == .string("critical"))
        #expect(json["servers"]?.arrayValue?.last?["findings"]?.arrayValue?.first?["id"] == .string("auth.challenge.no-scope"))
        let sarif = ProbeOutput.sarif(reports, version: "1.2.3")
        #expect(sarif["version"] == .string("2.1.0"))
        let run = sarif["runs"]?.arrayValue?.first
        let rules = run?["tool"]?["driver"]?["rules"]?.arrayValue ?? []
        #expect(rules.compactMap { $0["id"]?.stringValue } == ["auth.challenge.no-scope", "auth.none.initialize", "mcp.transport", "tls.plain-http"])
        let results = run?["results"]?.arrayValue ?? []
        #expect(results.count == 4)
        for result in results {
            let index = Int(result["ruleIndex"]?.int64Value ?? -1)
            #expect(rules.indices.contains(index) && rules[index]["id"] == result["ruleId"], "ruleIndex points at its rule")
        }
        #expect(results.first?["level"] == .string("error") && results.last?["level"] == .string("note"))
        // SARIF 3.27.9: a result whose kind is not "fail" has level "none".
        let informational = results.first { $0["ruleId"] == .string("mcp.transport") }
        #expect(informational?["kind"] == .string("informational") && informational?["level"] == .string("none"))
        #expect(rules.first { $0["id"] == .string("auth.none.initialize") }?["properties"]?["security-severity"] == .string("9.5"))
    }

    // MARK: init

    static func tool(_ name: String, _ annotations: String?) -> JSONValue {
        var members: [String: JSONValue] = ["name": .string(name), "inputSchema": .object(["type": .string("object")])]
        if let annotations { members["annotations"] = Self.json(annotations) }
        return .object(members)
    }

    @Test func toolScopesComeFromAnnotations() {
        #expect(PolicyDraft.access(of: Self.tool("a", #"{"readOnlyHint":true}"#)).access == .read)
        #expect(PolicyDraft.access(of: Self.tool("a", #"{"readOnlyHint":true,"destructiveHint":true}"#)).access == .read, "read-only wins: destructiveHint means nothing then")
        #expect(PolicyDraft.access(of: Self.tool("a", #"{"destructiveHint":true}"#)).access == .admin)
        #expect(PolicyDraft.access(of: Self.tool("a", #"{"destructiveHint":false}"#)).access == .write)
        #expect(PolicyDraft.access(of: Self.tool("a", nil)) == (.write, "no annotation: REVIEW"))
        #expect(PolicyDraft.access(of: Self.tool("a", #"{"readOnlyHint":"yes"}"#)).access == .write, "only a JSON true counts")
        #expect(PolicyDraft.defaultPath(serverName: "Legacy Jira!") == "/legacy-jira/mcp")
        #expect(PolicyDraft.defaultPath(serverName: nil) == "/mcp" && PolicyDraft.defaultPath(serverName: "---") == "/mcp")
    }

    /// Found by the `probe` fuzz target: a server whose only tool had an empty name got
    /// `tools/call:` with nothing under it, a policy that does not load.
    @Test func namesAPolicyCannotHoldAreLeftForReview() throws {
        var draft = PolicyDraft(upstream: "http://10.0.0.5:8080/mcp", path: "/jira/mcp", publicURL: try CanonicalURI("http://127.0.0.1:8443"),
                                issuer: "https://as", pinsFile: nil, date: "today\nlisten: 0.0.0.0:1")
        for tools in [[""], ["get_*"], ["", "*"], ["\u{FEFF}e"]] {
            draft.tools = tools.map { Self.tool($0, nil) }
            draft.prompts = [Self.json(#"{"name":"*"}"#)]
            draft.resources = [Self.json(#"{"uri":"*"}"#)]
            draft.resourceTemplates = [Self.json(#"{"uriTemplate":"{all}"}"#), Self.json(#"{"uriTemplate":"x://*/{id}"}"#)]
            let policy = try PolicyLoader.load(yaml: draft.yaml, secrets: .empty)
            let methods = try #require(policy.resources.first?.methods.rules)
            #expect(methods.lookup("tools/call") == nil && methods.lookup("prompts/get") == nil && methods.lookup("resources/read") == nil, "\(tools)")
            #expect(draft.yaml.contains("is not listed: a policy reads '*' as a wildcard"), "\(tools)")
        }
        // Found by the fuzz target too: a character outside the BMP made the alignment (in UTF-16
        // units) cut the key's colon; and characters YAML does not allow unescaped (C1 controls,
        // NEL and the Unicode line separators, BOM, NUL) in a tool name.
        let odd = ["x\u{8B69C}\u{FFFD}y", "a\u{85}b", "c\u{2028}d", "f\u{0}g", "h\u{9B}i\u{FFFD}", "j\u{1F600}\"k\\"]
        draft.tools = odd.map { Self.tool($0, #"{"readOnlyHint":true}"#) }
        guard case .byTarget(let rules)? = try PolicyLoader.load(yaml: draft.yaml, secrets: .empty).resources.first?.methods.rules.lookup("tools/call")?.value else {
            Issue.record("no tools/call rules")
            return
        }
        for name in odd { #expect(rules.lookup(name)?.value == ["jira:read"], "\(name.debugDescription)") }
        // The path is written as given (quoted where YAML needs it) and read back the same.
        var otherPath = draft
        otherPath.path = "/jïra,[x]/mcp"
        #expect(try PolicyLoader.load(yaml: otherPath.yaml, secrets: .empty).resources.first?.path == "/jïra,[x]/mcp")
        // Found by the fuzz target after the `${` fix: a name that, escaped, is over YAML's
        // 1024-character bound for a key wrote a policy that does not load; it is left for
        // review like the others, and so is a template that long.
        let long = "\u{92}" + String(repeating: "\u{0}", count: 170) + "I${"
        draft.tools = [Self.tool(long, #"{"readOnlyHint":true}"#), Self.tool("ok", #"{"readOnlyHint":true}"#)]
        draft.prompts = [Self.json(#"{"name":"\#(String(repeating: "p", count: 1100))"}"#)]
        draft.resourceTemplates = [Self.json(#"{"uriTemplate":"x://\#(String(repeating: "t", count: 1100))/{id}"}"#)]
        let loaded = try PolicyLoader.load(yaml: draft.yaml, secrets: .empty)
        guard case .byTarget(let loadedTools)? = loaded.resources.first?.methods.rules.lookup("tools/call")?.value else {
            Issue.record("no tools/call rules")
            return
        }
        #expect(loadedTools.lookup("ok")?.value == ["jira:read"] && loadedTools.lookup(long) == nil)
        #expect(!PolicyDraft.isLiteral(long) && draft.yaml.contains("takes no key over 1024 characters"))
        // A newline in what a comment shows stays inside the comment.
        #expect(try PolicyLoader.load(yaml: draft.yaml, secrets: .empty).listen.port == 8443)
    }

    @Test func theDraftPassesTheSameValidationAsCheck() throws {
        var draft = PolicyDraft(upstream: "http://10.0.0.5:8080/mcp", path: "/jira/mcp", publicURL: try CanonicalURI("https://mcp.example.com"),
                                issuer: nil, pinsFile: "/etc/mcp-bouncer/jira.pins.yaml", date: "2026-12-01T00:00:00Z")
        draft.serverName = "Jira: \"legacy\""
        draft.tools = [Self.tool("list_issues", #"{"readOnlyHint":true}"#), Self.tool("delete issue", #"{"destructiveHint":true}"#),
                       Self.tool("true", nil), Self.tool("-x: y", nil)]
        draft.prompts = [Self.json(#"{"name":"summarize"}"#)]
        draft.resources = [Self.json(#"{"uri":"jira://projects/OPS"}"#)]
        draft.resourceTemplates = [Self.json(#"{"uriTemplate":"jira://issues/{key}"}"#)]
        let pins = ToolPins(tools: ["list_issues": String(repeating: "0", count: 64)]).yaml
        let secrets = SecretSource(environment: { _ in nil }, readFile: { _ in .success(pins) })
        let policy = try PolicyLoader.load(yaml: draft.yaml, secrets: secrets)
        let resource = try #require(policy.resources.first)
        #expect(resource.uri.description == "https://mcp.example.com/jira/mcp" && resource.name == "Jira: \"legacy\"")
        #expect(policy.authorizationServers["idp"]?.issuer == "https://login.example.com")
        #expect(draft.yaml.contains("# REVIEW: your identity provider's issuer"))
        #expect(policy.listen == ListenAddress(host: "0.0.0.0", port: 8080) && resource.toolPinning != nil)
        func required(_ method: String, _ target: String?) -> [String]? {
            switch resource.methods.rules.lookup(method)?.value {
            case .scopes(let scopes)?: return target == nil ? scopes : nil
            case .byTarget(let targets)?: return target.flatMap { targets.lookup($0)?.value }
            case nil: return nil
            }
        }
        #expect(required("tools/call", "list_issues") == ["jira:read"])
        #expect(required("tools/call", "delete issue") == ["jira:admin"])
        #expect(required("tools/call", "true") == ["jira:write"] && required("tools/call", "-x: y") == ["jira:write"])
        #expect(required("tools/call", "added_later") == nil, "a tool not listed is denied")
        #expect(required("prompts/get", "summarize") == ["jira:read"] && required("resources/read", "jira://projects/OPS") == ["jira:read"])
        #expect(required("resources/read", "jira://issues/OPS-1") == ["jira:read"])
        #expect(required("initialize", nil) == [] && required("tools/list", nil) == ["jira:read"])
    }

    /// `init` copies names a server chose into the policy; the loader substitutes `${file:...}`
    /// and `${env:...}` in every value. A hostile server named `${file:/etc/...}` used to get
    /// that file into the policy (and the resource name into the published metadata); one with
    /// an unterminated `${` wrote a policy that did not load (the `probe` fuzz target). Every
    /// value init did not write itself is escaped (`$${`), and loads as the server gave it.
    @Test func aHostileServerCannotWriteIntoThePolicysSubstitutions() throws {
        let hostile = [
            "${file:/etc/mcp-bouncer/client-secret}", "${env:HOME}", "${", "x${y", "$${file:/etc/hostname}", "$$${env:A}}", "${}",
            "a\"b: ${file:/x}\n- c", "name\nlisten: 0.0.0.0:1", "{ ${file:/x} }", "# ${env:X}", "'${file:/x}'",
        ]
        var read: [String] = []
        let secrets = SecretSource(environment: { name in Issue.record("environment read: \(name)"); return "LEAKED" }, readFile: { path in
            Issue.record("file read: \(path)")
            return .success("LEAKED")
        })
        for name in hostile {
            var draft = PolicyDraft(upstream: "http://10.0.0.5:8080/mcp", path: "/jira/mcp", publicURL: try CanonicalURI("http://127.0.0.1:8443"),
                                    issuer: "https://as", pinsFile: nil, date: name)
            draft.serverName = name
            draft.tools = [Self.tool(name, #"{"readOnlyHint":true}"#)]
            draft.prompts = [Self.json(#"{"name":"p${env:P}"}"#)]
            let policy = try PolicyLoader.load(yaml: draft.yaml, secrets: secrets)
            let resource = try #require(policy.resources.first)
            #expect(resource.name == name, "\(name.debugDescription)")
            #expect(!draft.yaml.contains("LEAKED"))
            guard case .byTarget(let tools)? = resource.methods.rules.lookup("tools/call")?.value else {
                Issue.record("no tools/call rules for \(name.debugDescription)")
                continue
            }
            #expect(tools.lookup(name)?.value == ["jira:read"] || !PolicyDraft.isLiteral(name), "\(name.debugDescription)")
            read.append(resource.name ?? "")
        }
        #expect(read == hostile)
        // The values init takes from flags are escaped the same way.
        #expect(PolicyDraft.value("https://as/${env:X}") == #""https://as/$${env:X}""#)
        #expect(PolicyDraft.value("/etc/pins$${a}.yaml") == #""/etc/pins$$${a}.yaml""#)
        #expect(PolicyDraft.value("plain") == "plain")
    }
}
