import BouncerCore
import Testing

@Suite("Scope decisions")
struct AccessDecisionTests {
    let resource: ResourcePolicy = {
        let yaml = PolicyLoaderTests.valid + "\n    client_responses: [jira:read]\n"
        return try! PolicyLoader.load(yaml: yaml, secrets: PolicyLoaderTests.secrets).resources[0]
    }()

    func decide(_ text: String, _ granted: Set<String>) throws -> AccessDecision {
        try self.resource.decide(try JSONRPCBody.parse(Array(text.utf8), maxDepth: 64), granted: granted)
    }

    func call(_ name: String) -> String {
        #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\#(name)"}}"#
    }

    @Test func exactToolRule() throws {
        #expect(try self.decide(self.call("list_issues"), ["jira:read"]) == .allow)
        #expect(try self.decide(self.call("list_issues"), []) == .insufficientScope(needed: ["jira:read"]))
    }

    @Test func globToolRule() throws {
        #expect(try self.decide(self.call("admin_purge"), ["jira:read"]) == .insufficientScope(needed: ["jira:admin"]))
        #expect(try self.decide(self.call("admin_purge"), ["jira:admin"]) == .allow)
    }

    @Test func unlistedToolAndMethodAreDenied() throws {
        guard case .denied = try self.decide(self.call("drop_database"), ["jira:read", "jira:admin"]) else { Issue.record("not denied"); return }
        guard case .denied = try self.decide(#"{"jsonrpc":"2.0","id":1,"method":"prompts/list"}"#, ["jira:read"]) else { Issue.record("not denied"); return }
    }

    @Test func emptyScopeListNeedsOnlyAValidToken() throws {
        #expect(try self.decide(#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, []) == .allow)
        #expect(try self.decide(#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#, []) == .allow)
    }

    @Test func resourceURIGlob() throws {
        let read = #"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///docs/a.md"}}"#
        #expect(try self.decide(read, ["docs:read"]) == .allow)
        let other = #"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#
        guard case .denied = try self.decide(other, ["docs:read"]) else { Issue.record("not denied"); return }
    }

    @Test func clientResponsesHaveTheirOwnRule() throws {
        #expect(try self.decide(#"{"jsonrpc":"2.0","id":5,"result":{}}"#, ["jira:read"]) == .allow)
        #expect(try self.decide(#"{"jsonrpc":"2.0","id":5,"result":{}}"#, []) == .insufficientScope(needed: ["jira:read"]))
    }

    @Test func batchNeedsEveryElementsScopes() throws {
        let batch = "[\(self.call("list_issues")),\(self.call("admin_x"))]"
        #expect(try self.decide(batch, ["jira:read"]) == .insufficientScope(needed: ["jira:read", "jira:admin"]))
        let withDenied = "[\(self.call("list_issues")),\(self.call("nope"))]"
        guard case .denied = try self.decide(withDenied, ["jira:read", "jira:admin"]) else { Issue.record("not denied"); return }
    }

    @Test func namePatterns() {
        #expect(NamePattern("notifications/*").matches("notifications/initialized"))
        #expect(!NamePattern("notifications/*").matches("tools/list"))
        #expect(NamePattern("a*b*c").matches("aXXbYYc"))
        #expect(!NamePattern("a*b*c").matches("acb"))
        #expect(NamePattern("*").matches(""))
        #expect(NamePattern("exact").matches("exact"))
        #expect(!NamePattern("exact").matches("exactly"))
    }
}
