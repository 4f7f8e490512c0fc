import BouncerCore
import BouncerTestSupport
import Crypto
import Foundation
import Testing
import CryptoExtras

@Suite("OAuth client side: token exchange, client authentication, introspection")
struct OAuthClientTests {
    @Test func formEncoding() {
        #expect(FormEncoding.encode("a b&c=d/é~") == "a+b%26c%3Dd%2F%C3%A9%7E")
        #expect(FormEncoding.body([("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), ("scope", "a b")])
            == "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&scope=a+b")
    }

    @Test func clientSecretBasicEncodesBeforeBase64() throws {
        // RFC 6749 2.3.1: "id:x" and "p@ss w" are form-encoded, then joined and Base64'd.
        let credentials = OAuthClientCredentials(clientID: "id:x", method: .clientSecretBasic, secret: "p@ss w")
        let (headers, fields) = try credentials.authenticate(endpoint: "https://as/token", now: 0, jti: "j")
        #expect(fields.isEmpty)
        let expected = "Basic " + Data("id%3Ax:p%40ss+w".utf8).base64EncodedString()
        #expect(headers.first?.1 == expected)
    }

    @Test func clientSecretPost() throws {
        let (headers, fields) = try OAuthClientCredentials(clientID: "c", method: .clientSecretPost, secret: "s").authenticate(endpoint: "e", now: 0, jti: "j")
        #expect(headers.isEmpty)
        #expect(fields.map { "\($0.0)=\($0.1)" } == ["client_id=c", "client_secret=s"])
    }

    @Test("private_key_jwt assertion contents and signature", arguments: ["ES256", "RS256"])
    func privateKeyJWT(algorithm: String) throws {
        let signer = algorithm == "ES256" ? TestSigner.p256(kid: "k") : TestSigner.rsa(kid: "k")
        let pem: String
        switch signer.key {
        case .p256(let key): pem = key.pemRepresentation
        case .rsa(let key): pem = key.pemRepresentation
        default: pem = ""
        }
        let credentials = OAuthClientCredentials(clientID: "mcp-bouncer", method: .privateKeyJWT, key: try AssertionSigningKey(pem: pem))
        let (_, fields) = try credentials.authenticate(endpoint: "https://as.example.com/token", now: 1_000, jti: "unique-1")
        let values = Dictionary(uniqueKeysWithValues: fields)
        #expect(values["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        let assertion = try #require(values["client_assertion"])
        let jws = try CompactJWS(assertion)
        #expect(jws.algorithmName == algorithm)
        #expect(jws.payload["iss"] == .string("mcp-bouncer"))
        #expect(jws.payload["sub"] == .string("mcp-bouncer"))
        #expect(jws.payload["aud"] == .string("https://as.example.com/token"))
        #expect(jws.payload["jti"] == .string("unique-1"))
        #expect(jws.payload["exp"]?.int64Value == 1_000 + ClientAssertion.lifetimeSeconds)
        // The assertion verifies with the public half, as the authorization server would check it.
        let requirements = TokenRequirements(issuer: "mcp-bouncer", audience: try CanonicalURI("https://as.example.com/token"),
                                             algorithms: Set(JWSAlgorithm.allCases), leewaySeconds: 0, requireAccessTokenType: false, scopeClaims: [])
        try AccessTokenVerifier.verifySignature(jws, keys: TestSigner.keySet(signer), requirements: requirements)
    }

    @Test func exchangeRequestFields() {
        let target = TokenExchangeTarget(resources: ["https://jira.internal/mcp"], audiences: ["jira"], scope: "jira.read", requestedTokenType: TokenType.accessToken)
        let fields = TokenExchange.formFields(subjectToken: "subj", target: target, actorToken: "act")
        #expect(fields.map { "\($0.0)=\($0.1)" } == [
            "grant_type=urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token=subj",
            "subject_token_type=urn:ietf:params:oauth:token-type:access_token",
            "resource=https://jira.internal/mcp",
            "audience=jira",
            "scope=jira.read",
            "requested_token_type=urn:ietf:params:oauth:token-type:access_token",
            "actor_token=act",
            "actor_token_type=urn:ietf:params:oauth:token-type:access_token",
        ])
        #expect(!TokenExchange.formFields(subjectToken: "s", target: target, actorToken: nil).contains { $0.0.hasPrefix("actor") })
    }

    @Test func exchangeResponses() throws {
        func parse(_ status: Int, _ body: String) -> Result<IssuedToken, TokenEndpointError> {
            IssuedToken.parse(status: status, body: Array(body.utf8))
        }
        let ok = try parse(200, #"{"access_token":"new","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"bearer","expires_in":300,"scope":"a"}"#).get()
        #expect(ok.accessToken == "new" && ok.expiresIn == 300 && ok.scope == "a")
        let nulls = try parse(200, #"{"access_token":"new","token_type":"Bearer","expires_in":null,"scope":null,"refresh_token":null,"issued_token_type":null}"#).get()
        #expect(nulls.expiresIn == nil && nulls.scope == nil && nulls.issuedTokenType == nil)
        #expect(throws: TokenEndpointError.self) { try parse(200, #"{"token_type":"Bearer"}"#).get() }
        #expect(throws: TokenEndpointError.self) { try parse(200, #"{"access_token":"x","token_type":"DPoP"}"#).get() }
        #expect(throws: TokenEndpointError.self) { try parse(200, #"{"access_token":"x","token_type":"Bearer","expires_in":"soon"}"#).get() }
        #expect(throws: TokenEndpointError.self) { try parse(200, "not json").get() }
        // The token becomes an upstream header: anything that could end or split it is refused.
        for hostile in [#"x\r\nX-Admin: 1"#, "two words", #"quote\"d"#, "a,b", "\u{7f}"] {
            let body = #"{"access_token":"\#(hostile)","token_type":"Bearer"}"#
            guard case .failure(let refused) = parse(200, body) else { Issue.record("accepted \(hostile.debugDescription)"); continue }
            #expect(refused.code == "invalid_response")
        }
        #expect(try parse(200, #"{"access_token":"eyJ.a-b_c~d+e/f==","token_type":"Bearer"}"#).get().accessToken == "eyJ.a-b_c~d+e/f==")
        guard case .failure(let refused) = parse(400, #"{"error":"invalid_target","error_description":"unknown audience"}"#) else { Issue.record("expected a failure"); return }
        #expect(refused.code == "invalid_target" && refused.status == 400)
        guard case .failure(let odd) = parse(400, #"{"error":"made_up"}"#) else { Issue.record("expected a failure"); return }
        #expect(odd.code == "unknown_error")
        guard case .failure(let html) = parse(502, "<html>") else { Issue.record("expected a failure"); return }
        #expect(html.code == "http_502")
    }

    @Test func cacheLifetimeNeverOutlivesTheSubjectToken() {
        #expect(ExchangedTokenLifetime.cacheUntil(now: 1_000, expiresIn: 300, subjectExpiresAt: 5_000, marginSeconds: 30) == 1_270)
        #expect(ExchangedTokenLifetime.cacheUntil(now: 1_000, expiresIn: 3_600, subjectExpiresAt: 1_500, marginSeconds: 30) == 1_500)
        #expect(ExchangedTokenLifetime.cacheUntil(now: 1_000, expiresIn: nil, subjectExpiresAt: 5_000, marginSeconds: 30) == 1_000)
    }

    @Test func expiringCache() {
        var cache = ExpiringCache<String, String>(capacity: 2)
        cache.set("a", for: "1", expiresAt: 100, now: 0)
        cache.set("b", for: "2", expiresAt: 100, now: 0)
        var value = cache.value(for: "1", now: 10)  // 1 is now the most recently used
        #expect(value == "a")
        cache.set("c", for: "3", expiresAt: 100, now: 20)  // full: the least recently used (2) goes
        value = cache.value(for: "2", now: 20)
        #expect(value == nil)
        value = cache.value(for: "1", now: 20)
        #expect(value == "a")
        value = cache.value(for: "1", now: 100)
        #expect(value == nil, "expiry is exclusive")
        cache.set("d", for: "4", expiresAt: 5, now: 10)
        value = cache.value(for: "4", now: 10)
        #expect(value == nil, "already expired values are not stored")
        #expect(ExpiringCache<String, String>(capacity: 0).count == 0)
    }

    @Test func aFullCacheEvictsTheLeastRecentlyUsedEighthAtOnce() {
        var cache = ExpiringCache<String, Int>(capacity: 16)
        for index in 0..<16 { cache.set(index, for: "k\(index)", expiresAt: 100, now: 0) }
        for index in 0..<4 { _ = cache.value(for: "k\(index)", now: 1) }  // the oldest four, used again
        cache.set(16, for: "k16", expiresAt: 100, now: 2)
        // Two (16 / 8) went in one pass, the least recently used: k4 and k5.
        #expect(cache.count == 15)
        #expect(cache.value(for: "k4", now: 3) == nil && cache.value(for: "k5", now: 3) == nil)
        for index in [0, 1, 2, 3, 6, 15, 16] { #expect(cache.value(for: "k\(index)", now: 3) == index) }
        // The next insert fits without evicting anything.
        cache.set(17, for: "k17", expiresAt: 100, now: 4)
        #expect(cache.count == 16)
        // Expired entries go first: when they make room, nothing still valid is evicted (k7
        // and k8 are the least recently used and would be next).
        cache.remove("k17")
        cache.set(18, for: "short", expiresAt: 5, now: 4)
        #expect(cache.count == 16)
        cache.set(19, for: "k19", expiresAt: 100, now: 6)
        #expect(cache.count == 16)
        for index in [0, 1, 2, 3, 6, 7, 8, 15, 16, 19] { #expect(cache.value(for: "k\(index)", now: 7) == index) }
    }

    @Test func circuitBreaker() {
        var breaker = CircuitBreaker(threshold: 2, openSeconds: 2, maxOpenSeconds: 8)
        var allowed = breaker.allow(now: 0)
        #expect(allowed)
        breaker.recordFailure(now: 0)
        allowed = breaker.allow(now: 0)
        #expect(allowed)
        breaker.recordFailure(now: 0)
        allowed = breaker.allow(now: 1)
        #expect(!allowed, "open: fail fast")
        allowed = breaker.allow(now: 2)
        #expect(allowed, "one trial call after the open period")
        allowed = breaker.allow(now: 2)
        #expect(!allowed, "only one trial at a time")
        breaker.recordFailure(now: 2)
        allowed = breaker.allow(now: 5)
        #expect(!allowed, "backoff doubled to 4 s")
        allowed = breaker.allow(now: 6)
        #expect(allowed)
        breaker.recordSuccess()
        allowed = breaker.allow(now: 6)
        #expect(allowed)
        allowed = breaker.allow(now: 6)
        #expect(allowed)
    }

    /// A call that failed on this side (a client assertion that could not be signed) neither
    /// closes an open breaker (it used to, as a success) nor counts against the server.
    @Test func aCallNeverMadeTeachesTheBreakerNothing() {
        var breaker = CircuitBreaker(threshold: 2, openSeconds: 2, maxOpenSeconds: 8)
        breaker.recordFailure(now: 0)
        breaker.callNotMade()
        #expect(breaker.state == .closed(failures: 1), "failures neither forgiven nor added")
        breaker.recordFailure(now: 0)
        var allowed = breaker.allow(now: 2)
        #expect(allowed, "the trial call")
        breaker.callNotMade()
        #expect(breaker.state != .closed(failures: 0), "still open: the server was never asked")
        allowed = breaker.allow(now: 2)
        #expect(allowed, "the trial slot is given back")
        allowed = breaker.allow(now: 2)
        #expect(!allowed)
    }

    @Test func introspectionAnswers() throws {
        let requirements = TokenRequirements(issuer: "https://as", audience: try CanonicalURI("https://mcp.example.com/mcp"),
                                             algorithms: [], leewaySeconds: 0, requireAccessTokenType: false, scopeClaims: [.scope])
        func parse(_ body: String) throws -> Introspection.Outcome {
            try Introspection.parse(body: Array(body.utf8), requirements: requirements, now: 1_000, maxLifetimeSeconds: 300).get()
        }
        guard case .active(let claims) = try parse(#"{"active":true,"scope":"a b","client_id":"c","sub":"u","aud":"https://mcp.example.com/mcp","iss":"https://as","exp":2000}"#) else {
            Issue.record("expected active")
            return
        }
        #expect(claims.scopes == ["a", "b"] && claims.expiresAt == 2_000 && claims.clientID == "c")
        guard case .active(let noExp) = try parse(#"{"active":true,"aud":["https://mcp.example.com/mcp"]}"#) else { Issue.record("expected active"); return }
        #expect(noExp.expiresAt == 1_300, "no exp: bounded by the max lifetime")
        guard case .rejected(let inactive) = try parse(#"{"active":false}"#) else { Issue.record("expected rejected"); return }
        #expect(inactive.code == .inactive)
        guard case .rejected(let foreign) = try parse(#"{"active":true,"aud":"https://other/mcp"}"#) else { Issue.record("expected rejected"); return }
        #expect(foreign.code == .wrongAudience)
        guard case .rejected(let noAud) = try parse(#"{"active":true}"#) else { Issue.record("expected rejected"); return }
        #expect(noAud.code == .wrongAudience)
        guard case .rejected(let otherIssuer) = try parse(#"{"active":true,"iss":"https://evil","aud":"https://mcp.example.com/mcp"}"#) else { Issue.record("expected rejected"); return }
        #expect(otherIssuer.code == .wrongIssuer)
        #expect(throws: TokenEndpointError.self) { try parse(#"{"active":"yes"}"#) }
    }
}
