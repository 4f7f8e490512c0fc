import BouncerCore
import NIOCore
import Testing

/// The enforcement stages as pure functions: each test reads like the README's steps, with
/// no channel, socket or clock.
@Suite("Enforcement stages")
struct EnforcementTests {
    let policy = try! PolicyLoader.load(yaml: PolicyLoaderTests.valid + "\n    allowed_origins: [https://app.example.com]\n", secrets: PolicyLoaderTests.secrets)
    var resource: ResourcePolicy { self.policy.resources[0] }

    func facts(_ fields: [(String, String)], target: String = "/jira/mcp") -> RequestHeadFacts {
        var facts = RequestHeadFacts(target: target)
        for (name, value) in fields { facts.observe(name: name, value: value) }
        return facts
    }

    func rejection<T>(_ result: Result<T, GatewayRejection>) -> GatewayRejection? {
        if case .failure(let rejection) = result { return rejection }
        return nil
    }

    @Test("0: the head, in the order of its checks")
    func head() throws {
        let limits = self.policy.limits
        let ok = Enforcement.checkHead(self.facts([("Host", "gw")]), method: "POST", isHTTP11OrLater: true, target: "http://gw/jira/mcp?x=1", limits: limits)
        let target = try ok.get()
        #expect(target.path == "/jira/mcp" && target.query == "x=1")
        let big = self.facts([("Host", "gw"), ("X-Pad", String(repeating: "a", count: limits.maxHeaderBytes))])
        #expect(self.rejection(Enforcement.checkHead(big, method: "POST", isHTTP11OrLater: true, target: "/", limits: limits)) == .headersTooLarge)
        #expect(self.rejection(Enforcement.checkHead(self.facts([]), method: "POST", isHTTP11OrLater: true, target: "/", limits: limits)) == .malformedHead(.missingHost))
        #expect(self.rejection(Enforcement.checkHead(self.facts([("Host", "gw")]), method: "GET", isHTTP11OrLater: true, target: "x", limits: limits)) == .malformedHead(.invalidTarget))
        let declared = self.facts([("Host", "gw"), ("Content-Length", String(limits.maxBodyBytes + 1))])
        #expect(self.rejection(Enforcement.checkHead(declared, method: "POST", isHTTP11OrLater: true, target: "/", limits: limits)) == .bodyTooLarge(limit: limits.maxBodyBytes))
        #expect(try Enforcement.checkHead(self.facts([("Host", "gw")]), method: "OPTIONS", isHTTP11OrLater: true, target: "*", limits: limits).get().path == "*")
        #expect(Enforcement.answersContinue(self.facts([("Expect", "100-continue")]), isHTTP11OrLater: true))
        #expect(!Enforcement.answersContinue(self.facts([("Expect", "100-continue")]), isHTTP11OrLater: false))
    }

    @Test("2-3: Origin, then protocol version, then method, then where the token travels")
    func admission() throws {
        func admit(_ fields: [(String, String)], method: String = "POST", query: Substring? = nil, body: String? = nil) -> Result<String, GatewayRejection> {
            Enforcement.admit(self.facts(fields), method: method, query: query, body: body.map { ByteBuffer(string: $0) }, resource: self.resource).map(\.value)
        }
        #expect(try admit([("Authorization", "Bearer abc")]).get() == "abc")
        #expect(try Enforcement.admit(self.facts([("Authorization", "DPoP abc")]), method: "POST", query: nil, body: nil, resource: self.resource).get()
                == Enforcement.PresentedToken(value: "abc", isDPoP: true))
        #expect(try admit([("Origin", "HTTPS://app.example.com:443"), ("Authorization", "Bearer abc")]).get() == "abc")
        #expect(self.rejection(admit([("Origin", "https://evil.example"), ("MCP-Protocol-Version", "1999-01-01")]))?.code == "forbidden_origin")
        #expect(self.rejection(admit([("MCP-Protocol-Version", "1999-01-01")], method: "PUT"))?.code == "jsonrpc.-32600")
        #expect(self.rejection(admit([("MCP-Protocol-Version", "2026-07-28")], method: "GET")) == .jsonRPC(JSONRPCFailure(status: 405, code: -32600, message: "Method Not Allowed", id: nil)))
        #expect(try admit([("MCP-Protocol-Version", "2025-11-25"), ("Authorization", "Bearer abc")], method: "GET").get() == "abc")
        #expect(self.rejection(admit([("Authorization", "Bearer abc")], query: "access_token=abc"))?.code == "invalid_request")
        #expect(self.rejection(admit([("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Bearer abc")], body: "access_token=abc"))?.code == "invalid_request")
        #expect(self.rejection(admit([])) == .missingToken)
        #expect(self.rejection(admit([("Authorization", "Bearer a"), ("authorization", "Bearer b")]))?.code == "invalid_request")
        #expect(self.rejection(admit([("Authorization", "Basic dTpw")])) == .missingToken)
    }

    @Test("5: the body parsed once, the mirrored headers, the policy")
    func authorisation() throws {
        func authorize(_ body: String, _ fields: [(String, String)] = [], scopes: Set<String> = ["jira:read"], method: String = "POST") -> (JSONRPCBody?, Result<Enforcement.Authorization, GatewayRejection>) {
            Enforcement.authorize(self.facts(fields), method: method, body: ByteBuffer(string: body), scopes: scopes, resource: self.resource, limits: self.policy.limits)
        }
        let call = #"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_issues"}}"#
        let (body, allowed) = authorize(call)
        let authorization = try allowed.get()
        #expect(authorization.tool == "list_issues" && authorization.errorID == .number("7") && body != nil)
        let (refusedBody, refused) = authorize(call, scopes: [])
        #expect(self.rejection(refused) == .insufficientScope(needed: ["jira:read"], id: .number("7")))
        #expect(refusedBody != nil, "a refusal is logged with the operation it refused")
        #expect(self.rejection(authorize(call, [("Mcp-Method", "tools/list")]).1)?.code == "jsonrpc.\(JSONRPCErrorCode.headerMismatch)")
        #expect(self.rejection(authorize("[\(call)]").1)?.code == "jsonrpc.-32600", "no batches outside 2025-03-26")
        #expect(self.rejection(authorize(#"{"jsonrpc":"2.0","id":1,"method":"prompts/list"}"#).1)?.code == "policy_denied")
        let stateless = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_issues","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#
        #expect(self.rejection(authorize(stateless, [("MCP-Protocol-Version", "2026-07-28")]).1)?.code == "jsonrpc.\(JSONRPCErrorCode.headerMismatch)")
        let (none, stream) = authorize("", method: "GET")
        let streamAuthorization = try stream.get()
        #expect(none == nil && streamAuthorization.tool == nil)
    }

    @Test("6: what the upstream gets: no client credentials, no hop-by-hop fields, the gateway's own")
    func upstreamHead() {
        let fields: [(name: String, value: String)] = [
            ("Host", "gw.example"), ("Authorization", "Bearer client-token"), ("Connection", "keep-alive, X-Hop, X-Forwarded-For"),
            ("X-Hop", "1"), ("X-Forwarded-For", "10.9.9.9"), ("X-Api-Key", "forged"), ("Mcp-Session-Id", "s1"), ("Content-Length", "99"),
            ("Expect", "100-continue"), ("Forwarded", "for=1.2.3.4"),
        ]
        func sent(trusted: Bool, connection: String = "keep-alive, X-Hop") -> [String] {
            let fields = fields.map { $0.name == "Connection" ? (name: $0.name, value: connection) : $0 }
            var facts = RequestHeadFacts(target: "/jira/mcp")
            for (name, value) in fields { facts.observe(name: name, value: value) }
            var sent: [String] = []
            Enforcement.upstreamHeaders(
                from: fields, facts: facts, resource: self.resource, peer: "192.0.2.7", peerIsTrustedProxy: trusted, publicURL: self.policy.publicURL,
                bodyLength: 12, isPOST: true, upstreamToken: "exchanged", upstreamSessionID: "upstream-session"
            ) { name, value in sent.append("\(name): \(value)") }
            return sent
        }
        // From a client: its forwarding headers are dropped, its sealed session id replaced.
        #expect(sent(trusted: false) == [
            "Mcp-Session-Id: upstream-session", "Host: 10.0.0.5:8080", "Content-Length: 12", "X-Forwarded-For: 192.0.2.7",
            "X-Forwarded-Proto: https", "X-Forwarded-Host: gw.example", "X-Api-Key: k-123", "Authorization: Bearer exchanged",
        ])
        // From a trusted proxy: the chains go on with the proxy appended...
        #expect(sent(trusted: true) == [
            "Mcp-Session-Id: upstream-session", "Host: 10.0.0.5:8080", "Content-Length: 12", "X-Forwarded-For: 10.9.9.9, 192.0.2.7",
            "Forwarded: for=1.2.3.4, for=192.0.2.7",
            "X-Forwarded-Proto: https", "X-Forwarded-Host: gw.example", "X-Api-Key: k-123", "Authorization: Bearer exchanged",
        ])
        // ...unless the proxy's own Connection header names them (hop-by-hop).
        #expect(sent(trusted: true, connection: "keep-alive, X-Hop, X-Forwarded-For")[3] == "X-Forwarded-For: 192.0.2.7")
    }
}
