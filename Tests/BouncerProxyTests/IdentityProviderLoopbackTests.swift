import BouncerCore
import BouncerTestSupport
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// `accepted_audiences`, `scope_claims`, `subject_claim` and `required_claims` through a running
/// gateway: what reaches the upstream, what the client is told, what the audit trail says.
@Suite("Identity provider settings on loopback", .serialized)
struct IdentityProviderLoopbackTests {
    let harness = try! LoopbackHarness()
    var backend: LoopbackBackend { self.harness.backend }

    /// Two resources of an Entra-like authorization server: `/mcp` (its `resource` lines) and
    /// `/other/mcp`, which accepts `api://other`.
    func start(server: String..., resource: String..., audit: String? = nil) throws -> LoopbackHarness.Running {
        var policy = LoopbackPolicy(self.harness).server(server).resource(resource).methods("tools/call:", "  echo: [Jira.Read]")
        policy.serverName = "entra"
        if let audit { policy = policy.audit("file: \(audit)") }
        return try self.harness.start(policy.other(path: "/other/mcp", upstream: "\(self.backend.url)/upstream/other", "accepted_audiences: [api://other]"))
    }

    /// A token shaped like Entra's: `aud` the API's id, scopes in `scp` and `roles`, the user in `oid`.
    func token(aud: String, claims: String = #""scp":"Jira.Read""#, oid: String = #""oid-alice""#) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        return self.harness.signer.sign(#"{"iss":"\#(self.harness.issuer)","sub":"pairwise-1","oid":\#(oid),"aud":"\#(aud)","exp":\#(now + 300),"iat":\#(now),\#(claims)}"#, typ: "JWT")
    }

    func forwarded() -> Int { self.backend.requests.filter { $0.uri.hasPrefix("/upstream") }.count }

    @Test func anAcceptedAudienceIsServedAndAnotherResourcesIsNot() throws {
        let running = try self.start(resource: "accepted_audiences: [api://jira-mcp]")
        defer { try? running.server.close().wait() }
        #expect(try self.harness.call(port: running.port, token: self.token(aud: "api://jira-mcp")).status == .ok)
        #expect(self.forwarded() == 1)
        // The audience the other resource accepts, and a near miss, are refused before anything is forwarded.
        for aud in ["api://other", "api://jira-mcp/"] {
            let refused = try self.harness.call(port: running.port, token: self.token(aud: aud))
            #expect(refused.status == .unauthorized, "\(aud)")
            #expect(refused.headers.first(name: "WWW-Authenticate")?.contains("invalid_token") == true)
        }
        #expect(self.forwarded() == 1)
    }

    @Test func scopesFromAnyConfiguredClaim() throws {
        let running = try self.start(server: "scope_claims: [roles]")
        defer { try? running.server.close().wait() }
        let uri = "\(self.harness.publicURL)/mcp"
        #expect(try self.harness.call(port: running.port, token: self.token(aud: uri, claims: #""roles":["Jira.Read"]"#)).status == .ok)
        // scp is no longer read: the same grant there is not enough.
        let refused = try self.harness.call(port: running.port, token: self.token(aud: uri, claims: #""scp":"Jira.Read""#))
        #expect(refused.status == .forbidden)
        #expect(refused.headers.first(name: "WWW-Authenticate")?.contains(#"scope="Jira.Read""#) == true)
        #expect(self.forwarded() == 1)
    }

    @Test func theAuditTrailAndSessionsKnowTheUserByTheSubjectClaim() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("idp-audit-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let running = try self.start(server: "subject_claim: oid", audit: file)
        running.gateway.audit?.start(details: [:])
        let uri = "\(self.harness.publicURL)/mcp"
        #expect(try self.harness.call(port: running.port, token: self.token(aud: uri)).status == .ok)
        // A subject claim that is not a string: refused, never served as nobody.
        #expect(try self.harness.call(port: running.port, token: self.token(aud: uri, oid: "[7]")).status == .unauthorized)
        try? running.server.close().wait()
        running.gateway.audit?.stop()
        let requests = try auditRecords(at: file).filter { $0["event"]?.stringValue == "request" }
        #expect(requests.first?["subject"]?.stringValue == "oid-alice", "\(requests)")
        #expect(requests.contains { $0["reason"]?.stringValue == "invalid_token.malformed" })
    }

    @Test func requiredClaimsRefuseTokensWithoutTheirValue() throws {
        let running = try self.start(server: "required_claims:", "  tid: tenant-1", "  azp: [agent-a, agent-b]")
        defer { try? running.server.close().wait() }
        let uri = "\(self.harness.publicURL)/mcp"
        #expect(try self.harness.call(port: running.port, token: self.token(aud: uri, claims: #""scp":"Jira.Read","tid":"tenant-1","azp":"agent-b""#)).status == .ok)
        for claims in [#""scp":"Jira.Read","tid":"tenant-2","azp":"agent-b""#, #""scp":"Jira.Read","azp":"agent-a""#, #""scp":"Jira.Read","tid":"tenant-1","azp":"agent-c""#] {
            let refused = try self.harness.call(port: running.port, token: self.token(aud: uri, claims: claims))
            #expect(refused.status == .unauthorized, "\(claims)")
            #expect(refused.headers.first(name: "WWW-Authenticate")?.contains("lacks a required claim") == true, "\(refused.headers)")
        }
        #expect(self.forwarded() == 1)
    }
}
