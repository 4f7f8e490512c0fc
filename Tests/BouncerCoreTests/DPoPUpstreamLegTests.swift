import BouncerCore
import Crypto
import CryptoExtras
import Foundation
import NIOCore
import Testing

/// The DPoP-bound upstream leg's pure parts (issue 27, item 6): the gateway's proofs, checked
/// by the gateway's own verifier; the token endpoint's DPoP answer; `dpop_key` in the policy;
/// the exchange machine's one resend for a nonce.
@Suite("DPoP upstream leg")
struct DPoPUpstreamLegTests {
    static let upstream = try! CanonicalURI("https://jira.internal:8443/mcp")
    static let now: Int64 = 1_800_000_000

    func verify(_ proof: String, method: String = "POST", token: String = "upstream-token", bound: String?, at now: Int64 = Self.now) -> Result<DPoPProof, DPoPRefusal> {
        DPoPVerifier.verify(
            proof: proof, proofCount: 1, method: method, publicURL: Self.upstream, accessToken: token, boundThumbprint: bound, requirements: DPoPRequirements(), now: now
        )
    }

    @Test("a proof the gateway makes passes every RFC 9449 §4.3 check, for its key only", arguments: [
        AssertionSigningKey.p256(P256.Signing.PrivateKey()), AssertionSigningKey.rsa(try! _RSA.Signing.PrivateKey(keySize: .bits2048)),
    ])
    func proofsVerify(key: AssertionSigningKey) throws {
        let signer = DPoPSigner(key: key)
        let proof = try signer.proof(method: "POST", url: "https://jira.internal:8443/mcp", accessToken: "upstream-token", nonce: "n-1", now: Self.now, jti: "j-1")
        let checked = try self.verify(proof, bound: signer.thumbprint).get()
        #expect(checked.thumbprint == signer.thumbprint && checked.jti == "j-1" && checked.nonce == "n-1" && checked.issuedAt == Self.now)
        // Everything it binds is checked: the method, the URL, the token, the key, the time.
        #expect(throws: DPoPRefusal.self) { try self.verify(proof, method: "GET", bound: signer.thumbprint).get() }
        #expect(throws: DPoPRefusal.self) { try self.verify(proof, token: "another-token", bound: signer.thumbprint).get() }
        #expect(throws: DPoPRefusal.self) { try self.verify(proof, bound: DPoPSigner(key: .p256(P256.Signing.PrivateKey())).thumbprint).get() }
        #expect(throws: DPoPRefusal.self) { try self.verify(proof, bound: signer.thumbprint, at: Self.now + 600).get() }
        let elsewhere = try signer.proof(method: "POST", url: "https://other.internal:8443/mcp", accessToken: "upstream-token", nonce: nil, now: Self.now, jti: "j-2")
        #expect(throws: DPoPRefusal.self) { try self.verify(elsewhere, bound: signer.thumbprint).get() }
    }

    @Test func aTokenRequestProofHasNoAthAndNoNonceUnlessGiven() throws {
        let signer = DPoPSigner(key: .p256(P256.Signing.PrivateKey()))
        let proof = try signer.proof(method: "POST", url: "https://as.example/token", accessToken: nil, nonce: nil, now: Self.now, jti: "j")
        let parts = proof.split(separator: ".")
        let header = try JSONParser().parse(Base64URL.decode(String(parts[0]))!)
        let claims = try JSONParser().parse(Base64URL.decode(String(parts[1]))!)
        #expect(header["typ"]?.stringValue == "dpop+jwt" && header["alg"]?.stringValue == "ES256")
        #expect(header["jwk"]?["d"] == nil && header["jwk"]?["kid"] == nil, "the public members only")
        #expect(JWKThumbprint.sha256(header["jwk"]!) == signer.thumbprint)
        #expect(claims["ath"] == nil && claims["nonce"] == nil)
        #expect(claims["htu"]?.stringValue == "https://as.example/token" && claims["htm"]?.stringValue == "POST" && claims["iat"]?.int64Value == Self.now)
    }

    @Test("the token endpoint's answer: DPoP when the gateway proved its key, Bearer otherwise; a Bearer answer to a proof is refused")
    func tokenTypes() throws {
        func parse(_ body: String, dpop: Bool) -> Result<IssuedToken, TokenEndpointError> {
            IssuedToken.parse(status: 200, body: Array(body.utf8), dpopBound: dpop)
        }
        #expect(try parse(#"{"access_token":"x","token_type":"DPoP","expires_in":300}"#, dpop: true).get().tokenType == "DPoP")
        #expect(try parse(#"{"access_token":"x","token_type":"dpop"}"#, dpop: true).get().accessToken == "x")
        guard case .failure(let unbound) = parse(#"{"access_token":"x","token_type":"Bearer"}"#, dpop: true) else {
            Issue.record("an unbound token accepted for the bound leg")
            return
        }
        #expect(unbound.code == "invalid_response" && unbound.description.contains("did not bind"))
        #expect(throws: TokenEndpointError.self) { try parse(#"{"access_token":"x","token_type":"DPoP"}"#, dpop: false).get() }
        guard case .failure(let nonce) = IssuedToken.parse(status: 400, body: Array(#"{"error":"use_dpop_nonce"}"#.utf8), dpopBound: true) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(nonce.code == "use_dpop_nonce")
    }

    @Test func dpopKeyInThePolicy() throws {
        let pem = P256.Signing.PrivateKey().pemRepresentation
        func policy(_ key: String) -> String {
            """
            listen: 127.0.0.1:8080
            public_url: https://mcp.example.com
            authorization_servers:
              corp:
                issuer: https://as.example
                client: { id: gw, secret: s }
            resources:
              - path: /jira/mcp
                authorization_server: corp
                upstream: https://jira.internal/mcp
                upstream_credentials:
                  token_exchange: { resource: https://jira.internal/mcp, dpop_key: \(key) }
                methods: { initialize: [] }
            """
        }
        func exchange(_ yaml: String) throws -> TokenExchangePolicy? {
            guard case .tokenExchange(let exchange) = try PolicyLoader.load(yaml: yaml, secrets: .empty).resources[0].credentials else { return nil }
            return exchange
        }
        #expect(try exchange(policy("generate"))?.dpopKey == .generate)
        let secrets = SecretSource(environment: { _ in nil }, readFile: { $0 == "/run/dpop.pem" ? .success(pem) : .failure(SecretReadError(reason: "no")) })
        guard case .tokenExchange(let loaded) = try PolicyLoader.load(yaml: policy("\"${file:/run/dpop.pem}\""), secrets: secrets).resources[0].credentials else {
            Issue.record("expected token exchange")
            return
        }
        #expect(loaded.dpopKey == .pem(try AssertionSigningKey(pem: pem)))
        #expect(try exchange(policy("generate").replacingOccurrences(of: ", dpop_key: generate", with: ""))?.dpopKey == nil)
        do {
            _ = try PolicyLoader.load(yaml: policy("not-a-key"), secrets: .empty)
            Issue.record("a dpop_key that is no key was accepted")
        } catch {
            #expect(error.problems.contains { $0.keyPath.hasSuffix("token_exchange.dpop_key") && $0.message.contains("generate") })
        }
    }

    @Test("a 401 asking for a nonce: its body dropped, the request sent once more; a second one reaches the client")
    func oneResendForANonce() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var exchange = UpstreamExchangeStateMachine(responseTimeout: .seconds(60), errorID: nil, clientTakesInterim: true)
        _ = exchange.leased(reused: true, now: start)
        exchange.requestWritten()
        let asked = exchange.nonceRequested()
        #expect(asked)
        #expect(exchange.isDiscarding && !exchange.responseStarted)
        let interim = exchange.interimReceived(status: 100)
        #expect(interim == .none, "nothing of the dropped answer reaches the client")
        #expect(exchange.responseEnded(keepAlive: true) == .resendWithNonce(reusable: true))
        #expect(exchange.leased(reused: true, now: start + .seconds(1)) == .sendRequest(deadline: start + .seconds(61)))
        exchange.requestWritten()
        let again = exchange.nonceRequested()
        #expect(!again, "only once")
        #expect(exchange.headReceived() == .relayHead)
        #expect(exchange.responseEnded(keepAlive: false) == .finish(reusable: false))

        var failing = UpstreamExchangeStateMachine(responseTimeout: .seconds(60), errorID: nil, clientTakesInterim: true)
        _ = failing.leased(reused: false, now: start)
        let failingAsked = failing.nonceRequested()
        #expect(failingAsked)
        #expect(failing.upstreamFailed("reset") == .fail(.upstreamUnavailable("reset", id: nil)), "cut while dropped: a clean 502")
        var slow = UpstreamExchangeStateMachine(responseTimeout: .seconds(60), errorID: nil, clientTakesInterim: true)
        _ = slow.leased(reused: false, now: start)
        let slowAsked = slow.nonceRequested()
        #expect(slowAsked)
        #expect(slow.timerFired(now: start + .seconds(61)) == .fail(.upstreamTimeout(id: nil)), "the dropped answer is still due in time")
    }
}
