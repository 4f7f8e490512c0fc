import BouncerCore
import BouncerTestSupport
import Testing

/// The claim checks a JWT and an introspection answer share (``ClaimChecks``).
@Suite("Claim checks")
struct ClaimChecksTests {
    let requirements = Fixtures.requirements(leeway: 0)
    let now = Fixtures.now

    func jwt(_ payload: String) -> Result<AccessTokenClaims, TokenError> {
        let signer = TestSigner.p256()
        return Result { () throws(TokenError) in
            try AccessTokenVerifier.verify(signer.sign(payload), keys: TestSigner.keySet(signer), requirements: self.requirements, now: self.now)
        }
    }

    func introspect(_ body: String) throws -> Introspection.Outcome {
        try Introspection.parse(body: Array(body.utf8), requirements: self.requirements, now: self.now, maxLifetimeSeconds: 300).get()
    }

    func payload(exp: String, nbf: String? = nil, iat: String? = nil) -> String {
        var extra = ""
        if let nbf { extra += #","nbf":\#(nbf)"# }
        if let iat { extra += #","iat":\#(iat)"# }
        return #"{"iss":"\#(Fixtures.issuer)","sub":"alice","aud":"https://mcp.example.com/jira/mcp","exp":\#(exp)\#(extra)}"#
    }

    @Test("RFC 7519 NumericDate may have a fraction: accepted, rounded the strict way")
    func fractionalNumericDates() throws {
        let claims = try self.jwt(self.payload(exp: "\(self.now + 100).75", nbf: "\(self.now - 10).5", iat: "\(self.now - 20).25")).get()
        #expect(claims.expiresAt == self.now + 100, "exp rounds down")
        #expect(claims.notBefore == self.now - 9, "nbf rounds up")
        #expect(claims.issuedAt == self.now - 19, "iat rounds up")
        // 0.5 s past a fractional exp is expired; 0.5 s before a fractional nbf is not yet valid.
        #expect(throws: TokenError(.expired, "")) { try self.jwt(self.payload(exp: "\(self.now).5")).get() }
        #expect(throws: TokenError(.notYetValid, "")) { try self.jwt(self.payload(exp: "\(self.now + 100)", nbf: "\(self.now).5")).get() }
        #expect(throws: TokenError(.notYetValid, "")) { try self.jwt(self.payload(exp: "\(self.now + 100)", iat: "\(self.now).5")).get() }
        let exponent = try self.jwt(self.payload(exp: "1.8000001e9")).get()
        #expect(exponent.expiresAt == 1_800_000_100)
    }

    @Test("a date claim that is no number is malformed, in a JWT and in introspection alike", arguments: ["exp", "nbf", "iat"])
    func malformedDates(claim: String) throws {
        for bad in [#""soon""#, "true", "1e400", "[1]", "-9.1e15"] {
            let payload = claim == "exp" ? self.payload(exp: bad) : self.payload(exp: "\(self.now + 100)", nbf: claim == "nbf" ? bad : nil, iat: claim == "iat" ? bad : nil)
            guard case .failure(let error) = self.jwt(payload) else {
                Issue.record("\(claim)=\(bad) accepted in a JWT")
                continue
            }
            #expect(error.code == .malformed || (claim == "exp" && error.code == .missingClaim), "\(claim)=\(bad): \(error)")
            let answer = try self.introspect(#"{"active":true,"# + payload.dropFirst())
            guard case .rejected(let rejected) = answer else {
                Issue.record("\(claim)=\(bad) accepted by introspection")
                continue
            }
            #expect(rejected.code == .malformed, "\(claim)=\(bad): \(rejected)")
        }
    }

    @Test("cnf (RFC 7800) binds a token in a JWT and in an introspection answer alike (RFC 9449 §6, RFC 8705 §3); one the gateway cannot check is refused")
    func confirmationClaims() throws {
        func withConfirmation(_ cnf: String) -> String {
            String(self.payload(exp: "\(self.now + 100)").dropLast()) + #","cnf":\#(cnf)}"#
        }
        let bound = [
            #"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#: TokenConfirmation(jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"),
            #"{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}"#: TokenConfirmation(x5tS256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"),
            #"{"jkt":"a","x5t#S256":"b"}"#: TokenConfirmation(jkt: "a", x5tS256: "b"),
        ]
        for (cnf, expected) in bound {
            #expect(try self.jwt(withConfirmation(cnf)).get().confirmation == expected, "\(cnf)")
            guard case .active(let claims) = try self.introspect(#"{"active":true,"# + withConfirmation(cnf).dropFirst()) else {
                Issue.record("introspection refused cnf \(cnf)")
                continue
            }
            #expect(claims.confirmation == expected, "\(cnf)")
        }
        #expect(try self.jwt(self.payload(exp: "\(self.now + 100)")).get().confirmation == nil, "no cnf: a bearer token")
        // A binding the gateway cannot check must not become a bearer token by being ignored.
        for cnf in [#""jkt""#, "[]", "{}", #"{"jkt":1}"#, #"{"jkt":""}"#, #"{"x5t#S256":null}"#, #"{"jwk":{"kty":"EC"}}"#, #"{"jku":"https://x"}"#, #"{"kid":"k"}"#] {
            guard case .failure(let error) = self.jwt(withConfirmation(cnf)) else {
                Issue.record("cnf \(cnf) accepted in a JWT")
                continue
            }
            #expect(error.code == .malformed, "\(cnf): \(error)")
            guard case .rejected(let rejected) = try self.introspect(#"{"active":true,"# + withConfirmation(cnf).dropFirst()) else {
                Issue.record("cnf \(cnf) accepted by introspection")
                continue
            }
            #expect(rejected.code == .malformed, "\(cnf): \(rejected)")
        }
    }

    @Test func introspectionGetsTheSameIssuedAtAndNotBeforeChecksAsAJWT() throws {
        let future = self.payload(exp: "\(self.now + 100)", iat: "\(self.now + 60)")
        guard case .rejected(let issuedLater) = try self.introspect(#"{"active":true,"# + future.dropFirst()) else {
            Issue.record("an introspection answer issued in the future was accepted")
            return
        }
        #expect(issuedLater.code == .notYetValid)
        #expect(throws: TokenError(.notYetValid, "")) { try self.jwt(future).get() }
        let fractional = self.payload(exp: "\(self.now + 100).9", nbf: "\(self.now - 1).2")
        guard case .active(let claims) = try self.introspect(#"{"active":true,"# + fractional.dropFirst()) else {
            Issue.record("a fractional exp was refused by introspection")
            return
        }
        #expect(claims.expiresAt == self.now + 100 && claims.notBefore == self.now)
    }
}
