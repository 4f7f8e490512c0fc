import BouncerCore
import NIOCore
import Testing

/// Stage 5b, `Enforcement.admitCall`, as a pure function: the session binding, the pin refusal
/// and the audit slot, in that order, each refusal answering the request's id.
@Suite("Enforcement stage 5b: admission of the call")
struct AdmitCallTests {
    static let now: Int64 = 1_800_000_000
    let clock = WallClock.fixed(milliseconds: AdmitCallTests.now * 1000)
    let sealer = SessionSealer(keys: [try! SessionKey(id: "k1", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")], maxAgeSeconds: 3600, bindClient: false)
    let pinned: ResourcePolicy
    let plain: ResourcePolicy

    init() throws {
        let pins = ToolPins(tools: ["list_issues": String(repeating: "a", count: 64)]).yaml
        let secrets = SecretSource(environment: { _ in nil }, readFile: { $0 == "/pins.yaml" ? .success(pins) : .failure(SecretReadError(reason: "no")) })
        let methods = "tools/call:\n  list_issues: []\n  delete_repo: []"
        self.pinned = try PolicyLoader.load(yaml: responseTestPolicy(resource: "tool_pins: /pins.yaml", methods: methods), secrets: secrets).resources[0]
        self.plain = try PolicyLoader.load(yaml: responseTestPolicy(methods: methods), secrets: noSecrets).resources[0]
    }

    func claims(_ subject: String) -> AccessTokenClaims {
        AccessTokenClaims(issuer: "https://as.example", subject: subject, clientID: "c", audiences: ["https://mcp.example.com/jira/mcp"],
                          expiresAt: Self.now + 60, notBefore: nil, issuedAt: nil, tokenID: nil, scopes: [])
    }

    func authorization(tool: String) throws -> Enforcement.Authorization {
        let body = #"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"\#(tool)"}}"#
        let facts = RequestHeadFacts(target: "/jira/mcp")
        return try Enforcement.authorize(facts, method: "POST", body: ByteBuffer(string: body), scopes: [],
                                         resource: self.plain, limits: GatewayLimits()).decision.get()
    }

    func facts(sessions: [String]) -> RequestHeadFacts {
        var facts = RequestHeadFacts(target: "/jira/mcp")
        for id in sessions { facts.observe(name: "Mcp-Session-Id", value: id) }
        return facts
    }

    final class Slots: AuditSlotReserving, @unchecked Sendable {
        var free: Int
        var asked = 0
        init(free: Int) { self.free = free }
        func reserve() -> Bool {
            self.asked += 1
            guard self.free > 0 else { return false }
            self.free -= 1
            return true
        }
    }

    func admit(_ authorization: Enforcement.Authorization, facts: RequestHeadFacts, resource: ResourcePolicy, subject: String = "alice",
               lastSeen: [String: String] = [:], slots: Slots? = nil) -> Result<Enforcement.CallAdmission, Enforcement.CallRefusal> {
        Enforcement.admitCall(authorization, facts: facts, resource: resource, claims: self.claims(subject), token: "t", sessions: self.sealer,
                              clock: self.clock, lastSeen: { lastSeen[$0] }, auditSlots: slots)
    }

    @Test func aSessionOpensForItsUserOnlyAndNeverAsTwoIDs() throws {
        let call = try self.authorization(tool: "list_issues")
        let binding = SessionBinding(resource: "/jira/mcp", claims: self.claims("alice"), token: "t")
        let sealed = try #require(self.sealer.seal("upstream-7", for: binding, now: Self.now))
        #expect(try self.admit(call, facts: self.facts(sessions: [sealed]), resource: self.plain).get().upstreamSessionID == "upstream-7")
        #expect(try self.admit(call, facts: self.facts(sessions: []), resource: self.plain).get() == Enforcement.CallAdmission())

        guard case .failure(let stranger) = self.admit(call, facts: self.facts(sessions: [sealed]), resource: self.plain, subject: "mallory") else {
            Issue.record("another user's session opened")
            return
        }
        #expect(stranger.sessionMismatch != nil)
        #expect(stranger.rejection.code.hasPrefix("session_mismatch.") && stranger.rejection.response(resource: nil).body.contains(#""id":9"#))

        guard case .failure(let two) = self.admit(call, facts: self.facts(sessions: [sealed, sealed]), resource: self.plain) else {
            Issue.record("two session ids were taken")
            return
        }
        #expect(two == Enforcement.CallRefusal(rejection: .sessionMismatch(.malformed, id: .number("9")), sessionMismatch: .malformed))
    }

    @Test func aToolNotApprovedOrChangedIsRefusedUnderBlock() throws {
        #expect(throws: Never.self) { try self.admit(self.authorization(tool: "list_issues"), facts: self.facts(sessions: []), resource: self.pinned).get() }
        let unpinned = self.admit(try self.authorization(tool: "delete_repo"), facts: self.facts(sessions: []), resource: self.pinned)
        #expect(unpinned == .failure(Enforcement.CallRefusal(rejection: .toolNotApproved(tool: "delete_repo", .neverApproved, id: .number("9")))))
        let changed = self.admit(try self.authorization(tool: "list_issues"), facts: self.facts(sessions: []), resource: self.pinned,
                                 lastSeen: ["list_issues": String(repeating: "b", count: 64)])
        #expect(changed == .failure(Enforcement.CallRefusal(rejection: .toolNotApproved(tool: "list_issues", .changed, id: .number("9")))))
        #expect(throws: Never.self) { try self.admit(self.authorization(tool: "delete_repo"), facts: self.facts(sessions: []), resource: self.plain).get() }
    }

    /// The audit slot is asked for last: a refusal before it never holds one.
    @Test func theAuditSlotIsTakenLastAndOnlyWhenAllElsePasses() throws {
        let slots = Slots(free: 1)
        let refused = self.admit(try self.authorization(tool: "delete_repo"), facts: self.facts(sessions: []), resource: self.pinned, slots: slots)
        #expect(refused.map(\.auditSlot) != .success(true) && slots.asked == 0)
        #expect(try self.admit(self.authorization(tool: "list_issues"), facts: self.facts(sessions: []), resource: self.pinned, slots: slots).get().auditSlot)
        let full = self.admit(try self.authorization(tool: "list_issues"), facts: self.facts(sessions: []), resource: self.pinned, slots: slots)
        #expect(full == .failure(Enforcement.CallRefusal(rejection: .auditUnavailable(id: .number("9")))))
        #expect(slots.asked == 2)
    }
}
