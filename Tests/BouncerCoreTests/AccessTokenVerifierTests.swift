import BouncerCore
import BouncerTestSupport
import Testing
import Foundation

@Suite("JWT access token verification")
struct AccessTokenVerifierTests {
    func verify(_ token: String, keys: JSONWebKeySet, requirements: TokenRequirements = Fixtures.requirements(), now: Int64 = Fixtures.now) -> Result<AccessTokenClaims, TokenError> {
        Result { () throws(TokenError) in try AccessTokenVerifier.verify(token, keys: keys, requirements: requirements, now: now) }
    }

    func code(_ result: Result<AccessTokenClaims, TokenError>) -> TokenError.Code? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    @Test("every allow-listed algorithm verifies", arguments: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"])
    func algorithms(alg: String) throws {
        let signer: TestSigner
        switch alg {
        case "ES256": signer = .p256()
        case "ES384": signer = .p384()
        case "EdDSA": signer = .ed25519()
        default: signer = .rsa()
        }
        let token = signer.sign(Fixtures.claims(), alg: alg)
        let claims = try self.verify(token, keys: TestSigner.keySet(signer)).get()
        #expect(claims.subject == "alice")
        #expect(claims.clientID == "agent-1")
        #expect(claims.scopes == ["jira:read", "jira:write"])
    }

    @Test func tamperedPayloadFails() {
        let signer = TestSigner.p256()
        let token = signer.sign(Fixtures.claims())
        let parts = token.split(separator: ".")
        let forged = Base64URL.encode(Array(Fixtures.claims(extra: #","scope":"jira:admin""#).utf8))
        #expect(self.code(self.verify("\(parts[0]).\(forged).\(parts[2])", keys: TestSigner.keySet(signer))) == .badSignature)
    }

    @Test func signatureByAnotherKeyWithTheSameKidFails() {
        let published = TestSigner.p256(kid: "k")
        let attacker = TestSigner.p256(kid: "k")
        #expect(self.code(self.verify(attacker.sign(Fixtures.claims()), keys: TestSigner.keySet(published))) == .badSignature)
    }

    @Test func unknownKidIsReportedSoTheCallerCanRefresh() {
        let signer = TestSigner.p256(kid: "new")
        #expect(self.code(self.verify(signer.sign(Fixtures.claims()), keys: TestSigner.keySet(.p256(kid: "old")))) == .unknownKey)
    }

    @Test("none and HMAC are never accepted", arguments: ["none", "HS256", "HS512", "ES512", "RS1"])
    func refusedAlgorithms(alg: String) {
        let signer = TestSigner.rsa()
        // An HS256 "signature" keyed with the public key is the classic confusion attack;
        // it must fail before any key is consulted.
        #expect(self.code(self.verify(signer.sign(Fixtures.claims(), alg: alg), keys: TestSigner.keySet(signer))) == .unsupportedAlgorithm)
    }

    @Test func algorithmOutsideThePolicyAllowListIsRefused() {
        let signer = TestSigner.rsa()
        let requirements = Fixtures.requirements(algorithms: [.es256])
        #expect(self.code(self.verify(signer.sign(Fixtures.claims()), keys: TestSigner.keySet(signer), requirements: requirements)) == .unsupportedAlgorithm)
    }

    @Test func rsaKeyCannotVerifyAnECAlgorithm() {
        let rsa = TestSigner.rsa(kid: "k")
        #expect(self.code(self.verify(rsa.sign(Fixtures.claims(), alg: "ES256", kid: "k"), keys: TestSigner.keySet(rsa))) == .unknownKey)
    }

    @Test func wrongIssuer() {
        let signer = TestSigner.p256()
        let claims = Fixtures.claims().replacingOccurrences(of: Fixtures.issuer, with: "https://as.example.com/tenant2")
        #expect(self.code(self.verify(signer.sign(claims), keys: TestSigner.keySet(signer))) == .wrongIssuer)
    }

    @Test("audience must name this resource", arguments: [
        (#""https://mcp.example.com/jira/mcp""#, true),
        (#"["https://other.example.com/mcp","https://mcp.example.com/jira/mcp"]"#, true),
        (#""HTTPS://MCP.Example.COM:443/jira/mcp/""#, true),
        (#""https://mcp.example.com/jira""#, false),
        (#""https://mcp.example.com/jira/mcp/extra""#, false),
        (#""https://mcp.example.com:8443/jira/mcp""#, false),
        (#""http://mcp.example.com/jira/mcp""#, false),
        (#"["https://other.example.com/mcp"]"#, false),
        (#"[]"#, false),
    ])
    func audience(aud: String, accepted: Bool) {
        let signer = TestSigner.p256()
        let result = self.verify(signer.sign(Fixtures.claims(aud: aud)), keys: TestSigner.keySet(signer))
        if accepted {
            #expect(self.code(result) == nil)
        } else {
            #expect(self.code(result) == .wrongAudience)
        }
    }

    @Test func expiryWithLeeway() {
        let signer = TestSigner.p256()
        let keys = TestSigner.keySet(signer)
        let token = signer.sign(Fixtures.claims(exp: Fixtures.now))
        #expect(self.code(self.verify(token, keys: keys, now: Fixtures.now + 59)) == nil)
        #expect(self.code(self.verify(token, keys: keys, now: Fixtures.now + 60)) == .expired)
        #expect(self.code(self.verify(token, keys: keys, requirements: Fixtures.requirements(leeway: 0), now: Fixtures.now)) == .expired)
    }

    @Test func notBeforeWithLeeway() {
        let signer = TestSigner.p256()
        let keys = TestSigner.keySet(signer)
        let token = signer.sign(Fixtures.claims(extra: #","nbf":\#(Fixtures.now + 100)"#))
        #expect(self.code(self.verify(token, keys: keys)) == .notYetValid)
        #expect(self.code(self.verify(token, keys: keys, now: Fixtures.now + 41)) == nil)
    }

    @Test func missingExpiryIsRefused() {
        let signer = TestSigner.p256()
        let claims = #"{"iss":"\#(Fixtures.issuer)","aud":"https://mcp.example.com/jira/mcp"}"#
        #expect(self.code(self.verify(signer.sign(claims), keys: TestSigner.keySet(signer))) == .missingClaim)
    }

    @Test func accessTokenTypeWhenRequired() {
        let signer = TestSigner.p256()
        let keys = TestSigner.keySet(signer)
        let strict = Fixtures.requirements(typ: true)
        #expect(self.code(self.verify(signer.sign(Fixtures.claims(), typ: "at+jwt"), keys: keys, requirements: strict)) == nil)
        #expect(self.code(self.verify(signer.sign(Fixtures.claims(), typ: "application/AT+JWT"), keys: keys, requirements: strict)) == nil)
        #expect(self.code(self.verify(signer.sign(Fixtures.claims(), typ: "JWT"), keys: keys, requirements: strict)) == .wrongType)
        #expect(self.code(self.verify(signer.sign(Fixtures.claims(), typ: nil), keys: keys, requirements: strict)) == .wrongType)
        #expect(self.code(self.verify(signer.sign(Fixtures.claims(), typ: "JWT"), keys: keys)) == nil)
    }

    @Test func scpArrayClaim() throws {
        let signer = TestSigner.p256()
        let token = signer.sign(Fixtures.claims(extra: #","scp":["a","b"]"#))
        #expect(try self.verify(token, keys: TestSigner.keySet(signer)).get().scopes == ["a", "b"])
    }

    @Test("malformed tokens", arguments: ["", "abc", "a.b", "a.b.c.d", "a.b.c.d.e", "!!.??.**", "eyJ.eyJ.sig"])
    func malformed(token: String) {
        #expect(self.code(self.verify(token, keys: TestSigner.keySet(.p256()))) == .malformed)
    }

    @Test func jwksSkipsKeysItCannotUse() throws {
        let signer = TestSigner.p256()
        let json = TestSigner.jwks([signer], extra: [
            #"{"kty":"oct","k":"c2VjcmV0"}"#,
            #"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#,
            #"{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}"#,
            #"{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}"#,
        ])
        let keys = try JSONWebKeySet(json: Array(json.utf8))
        #expect(keys.keys.count == 1)
        #expect(keys.skipped.count == 2)
        #expect(throws: AuthorizationServerError(.keySetInvalid, "")) { try JSONWebKeySet(json: Array(#"{"nokeys":[]}"#.utf8)) }
    }
}
