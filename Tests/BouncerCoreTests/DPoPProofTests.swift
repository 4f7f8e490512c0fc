import BouncerCore
import Crypto
import Testing

/// RFC 9449 §4.3, every step and every refusal, with proofs made here (issue 27); the RFC 7638
/// thumbprint against the RFC's own example; the replay cache and the sealed nonces.
@Suite("DPoP proofs")
struct DPoPProofTests {
    static let url = try! CanonicalURI("https://mcp.example.com/jira/mcp")
    static let token = "the-access-token"
    static let now: Int64 = 1_800_000_000

    /// A proof signer: an ES256 key and what it puts in its proofs.
    struct Signer {
        let key = P256.Signing.PrivateKey()

        var jwk: JSONValue {
            let raw = self.key.publicKey.rawRepresentation
            return .object([
                "kty": .string("EC"), "crv": .string("P-256"),
                "x": .string(Base64URL.encode(Array(raw.prefix(32)))), "y": .string(Base64URL.encode(Array(raw.suffix(32)))),
            ])
        }

        var thumbprint: String { JWKThumbprint.sha256(self.jwk)! }

        func proof(
            header: [String: JSONValue] = [:], claims: [String: JSONValue] = [:], dropping: Set<String> = [], tamper: Bool = false
        ) -> String {
            var head: [String: JSONValue] = ["typ": .string("dpop+jwt"), "alg": .string("ES256"), "jwk": self.jwk]
            head.merge(header) { $1 }
            var body: [String: JSONValue] = [
                "jti": .string("j-1"), "htm": .string("POST"), "htu": .string("https://mcp.example.com/jira/mcp"),
                "iat": .number(String(DPoPProofTests.now)), "ath": .string(DPoPVerifier.tokenHash(DPoPProofTests.token)),
            ]
            body.merge(claims) { $1 }
            for name in dropping { head[name] = nil; body[name] = nil }
            let input = Base64URL.encode(Array(JSONValue.object(head).serialized.utf8)) + "." + Base64URL.encode(Array(JSONValue.object(body).serialized.utf8))
            var signature = Array(try! self.key.signature(for: Array(input.utf8)).rawRepresentation)
            if tamper { signature[0] ^= 1 }
            return input + "." + Base64URL.encode(signature)
        }
    }

    func verify(_ proofs: [String], method: String = "POST", bound: String? = nil, requirements: DPoPRequirements = DPoPRequirements()) -> Result<DPoPProof, DPoPRefusal> {
        DPoPVerifier.verify(proof: proofs.first, proofCount: proofs.count, method: method, publicURL: Self.url, accessToken: Self.token, boundThumbprint: bound, requirements: requirements, now: Self.now)
    }

    func refusal(_ result: Result<DPoPProof, DPoPRefusal>) -> DPoPRefusal? {
        if case .failure(let refusal) = result { return refusal }
        return nil
    }

    @Test func aGoodProofPasses() throws {
        let signer = Signer()
        let proof = try self.verify([signer.proof()], bound: signer.thumbprint).get()
        #expect(proof == DPoPProof(thumbprint: signer.thumbprint, jti: "j-1", issuedAt: Self.now, nonce: nil))
        // htu normalised: case, default port, a query and a fragment make no difference.
        #expect(throws: Never.self) { try self.verify([signer.proof(claims: ["htu": .string("HTTPS://MCP.example.com:443/jira/mcp?x=1#y")])]).get() }
        #expect(try self.verify([signer.proof(claims: ["nonce": .string("n")])]).get().nonce == "n")
    }

    @Test func everyStepRefuses() {
        let signer = Signer()
        let other = Signer()
        #expect(self.refusal(self.verify([])) == .missingProof)
        #expect(self.refusal(self.verify([signer.proof(), signer.proof()])) == .multipleProofs)
        #expect(self.refusal(self.verify(["not.a.jws.at.all"])).map { if case .malformed = $0 { true } else { false } } == true)
        #expect(self.refusal(self.verify([signer.proof(tamper: true)])) == .badSignature)
        #expect(self.refusal(self.verify([signer.proof(header: ["typ": .string("JWT")])])) == .wrongType)
        #expect(self.refusal(self.verify([signer.proof(dropping: ["typ"])])) == .wrongType)
        for alg in ["none", "HS256", "RS512"] {
            #expect(self.refusal(self.verify([signer.proof(header: ["alg": .string(alg)])])) == .algorithmNotAllowed(alg))
        }
        var withPrivate = signer.jwk.objectValue!
        withPrivate["d"] = .string(Base64URL.encode(Array(signer.key.rawRepresentation)))
        #expect(self.refusal(self.verify([signer.proof(header: ["jwk": .object(withPrivate)])])) == .privateKey)
        #expect(self.refusal(self.verify([signer.proof(header: ["jwk": .object(["kty": .string("oct"), "k": .string("c2VjcmV0")])])])) == .privateKey)
        #expect(self.refusal(self.verify([signer.proof(dropping: ["jwk"])])).map { if case .badKey = $0 { true } else { false } } == true)
        // Another key in the header than the one that signed.
        #expect(self.refusal(self.verify([signer.proof(header: ["jwk": other.jwk])])) == .badSignature)
        for claim in ["jti", "htm", "htu", "iat", "ath"] {
            #expect(self.refusal(self.verify([signer.proof(dropping: [claim])])) == .missingClaim(claim), "\(claim)")
        }
        #expect(self.refusal(self.verify([signer.proof(claims: ["jti": .string(String(repeating: "j", count: 257))])])) == .missingClaim("jti"))
        #expect(self.refusal(self.verify([signer.proof(claims: ["iat": .string("now")])])) == .missingClaim("iat"))
        #expect(self.refusal(self.verify([signer.proof()], method: "GET")) == .wrongMethod)
        #expect(self.refusal(self.verify([signer.proof(claims: ["htm": .string("post")])])) == .wrongMethod)
        for htu in ["https://mcp.example.com/other/mcp", "http://mcp.example.com/jira/mcp", "https://evil.example.com/jira/mcp", "https://mcp.example.com:8443/jira/mcp", "/jira/mcp"] {
            #expect(self.refusal(self.verify([signer.proof(claims: ["htu": .string(htu)])])) == .wrongURI, "\(htu)")
        }
        #expect(self.refusal(self.verify([signer.proof(claims: ["iat": .number(String(Self.now - 300))])])) == .stale, "5 minutes early")
        #expect(self.refusal(self.verify([signer.proof(claims: ["iat": .number(String(Self.now + 300))])])) == .stale, "5 minutes late")
        #expect(throws: Never.self) { try self.verify([signer.proof(claims: ["iat": .number(String(Self.now - 60))])]).get() }
        #expect(self.refusal(self.verify([signer.proof(claims: ["ath": .string(DPoPVerifier.tokenHash("another-token"))])])) == .wrongTokenHash)
        #expect(self.refusal(self.verify([signer.proof()], bound: other.thumbprint)) == .keyMismatch)
        #expect(self.refusal(self.verify([signer.proof(claims: ["nonce": .number("1")])])) == .missingClaim("nonce"))
        #expect(self.refusal(self.verify([signer.proof()], requirements: DPoPRequirements(algorithms: [.rs256]))) == .algorithmNotAllowed("ES256"))
    }

    @Test func refusalsSayWhichChallenge() {
        #expect(DPoPRefusal.badSignature.challengeError == "invalid_dpop_proof")
        #expect(DPoPRefusal.keyMismatch.challengeError == "invalid_token")
        #expect(DPoPRefusal.nonceRequired.challengeError == "use_dpop_nonce" && DPoPRefusal.nonceInvalid.challengeError == "use_dpop_nonce")
        #expect(Set([DPoPRefusal.missingProof, .multipleProofs, .wrongType, .privateKey, .badSignature, .wrongMethod, .wrongURI, .stale, .wrongTokenHash,
                     .keyMismatch, .replayed, .replayCacheFull, .nonceRequired, .nonceInvalid].map(\.code)).count == 14, "codes are distinct")
    }

    /// RFC 7638 §3.1's example.
    @Test func theThumbprintIsTheRFCs() {
        let jwk = JSONValue.object([
            "kty": .string("RSA"), "e": .string("AQAB"), "alg": .string("RS256"), "kid": .string("2011-04-29"),
            "n": .string("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"),
        ])
        #expect(JWKThumbprint.sha256(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        #expect(JWKThumbprint.sha256(.object(["kty": .string("oct"), "k": .string("x")])) == nil)
        #expect(JWKThumbprint.sha256(.object(["kty": .string("EC"), "crv": .string("P-256"), "x": .string("a")])) == nil, "y missing")
    }

    @Test func aReplayedProofIsSeenAndAFullCacheFailsClosed() {
        var cache = DPoPReplayCache(capacity: 2)
        #expect(cache.admit(thumbprint: "k", jti: "1", expiresAt: 100, now: 0) == .fresh)
        #expect(cache.admit(thumbprint: "k", jti: "1", expiresAt: 100, now: 50) == .replayed)
        #expect(cache.admit(thumbprint: "other", jti: "1", expiresAt: 100, now: 50) == .fresh, "per key")
        #expect(cache.admit(thumbprint: "k", jti: "2", expiresAt: 100, now: 50) == .full, "never forgets what could still be replayed")
        #expect(cache.admit(thumbprint: "k", jti: "2", expiresAt: 200, now: 100) == .fresh, "expired entries make room")
        #expect(cache.admit(thumbprint: "k", jti: "1", expiresAt: 200, now: 101) == .fresh, "an expired jti's proof could not pass the iat window anyway")
        #expect(cache.count == 2)
    }

    @Test func noncesAreSealedTimesEveryReplicaAccepts() throws {
        let key = try SessionKey(id: "k1", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        let nonces = DPoPNonces(keys: [key], lifetimeSeconds: 60)
        let other = DPoPNonces(keys: [try SessionKey(id: "k2", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), key], lifetimeSeconds: 60)
        let nonce = try #require(nonces.issue(now: 1000))
        #expect(nonces.accepts(nonce, now: 1000) && nonces.accepts(nonce, now: 1060) && other.accepts(nonce, now: 1030))
        #expect(!nonces.accepts(nonce, now: 1061), "expired")
        #expect(!nonces.accepts(nonce, now: 900), "from the future, past the clock skew")
        #expect(!nonces.accepts(String(nonce.dropLast()) + (nonce.hasSuffix("A") ? "B" : "A"), now: 1000), "tampered")
        #expect(!DPoPNonces(keys: [SessionKey.random()], lifetimeSeconds: 60).accepts(nonce, now: 1000), "foreign")
        #expect(!nonces.isAging(nonce, now: 1030) && nonces.isAging(nonce, now: 1031))
        // A requestState or a session id is never a nonce.
        let state = RequestStateSealer(keys: [key]).seal(ParkedCall(
            binding: SessionBinding(resource: "/mcp", issuer: "i", subject: "s", clientID: "c"), replica: "r", parkID: "p", requestDigest: "d", expiresAt: 2000
        ))!
        #expect(!nonces.accepts(state, now: 1000))
    }
}

@Suite("RFC 9440 Client-Cert")
struct ClientCertFieldTests {
    @Test func onlyOneByteSequenceOfADERSequenceCounts() {
        let der: [UInt8] = [0x30, 0x03, 0x02, 0x01, 0x01]
        let thumbprint = CertificateThumbprint.sha256(der: der)
        #expect(ClientCertField.thumbprint(":MAMCAQE=:", count: 1) == thumbprint)
        #expect(ClientCertField.thumbprint(":MAMCAQE=:", count: 2) == nil, "two fields")
        #expect(ClientCertField.thumbprint("MAMCAQE=", count: 1) == nil, "not a byte sequence")
        #expect(ClientCertField.thumbprint(":MAMCAQE:", count: 1) == nil, "unpadded")
        #expect(ClientCertField.thumbprint(":MAMC-QE=:", count: 1) == nil, "the URL-safe alphabet")
        #expect(ClientCertField.thumbprint(":AQID:", count: 1) == nil, "not a DER SEQUENCE")
        #expect(ClientCertField.thumbprint("::", count: 1) == nil && ClientCertField.thumbprint(nil, count: 0) == nil)
    }
}
