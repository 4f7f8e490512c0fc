import BouncerCore
import BouncerTestSupport
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// Sender-constrained tokens on loopback (issue 27): a DPoP-bound token goes through with its
/// proof and never as `Bearer`; a replayed proof, a proof for another URL, another key, a
/// plain bearer token where only bound ones are taken, a certificate-bound token without its
/// certificate are refused with the `DPoP` challenge, and nothing reaches the upstream; nonces
/// when the policy asks for them; the metadata says what the resource takes.
@Suite("DPoP and bound tokens on loopback", .serialized)
struct DPoPLoopbackTests {
    let harness: LoopbackHarness
    let key = P256.Signing.PrivateKey()

    init() throws {
        self.harness = try LoopbackHarness()
    }

    var jwk: JSONValue {
        let raw = self.key.publicKey.rawRepresentation
        return .object([
            "kty": .string("EC"), "crv": .string("P-256"),
            "x": .string(Base64URL.encode(Array(raw.prefix(32)))), "y": .string(Base64URL.encode(Array(raw.suffix(32)))),
        ])
    }

    /// A token for /mcp bound by `cnf` (`jkt` of this test's key unless given).
    func token(cnf: String? = nil, jkt: Bool = true) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let binding = cnf ?? (jkt ? #","cnf":{"jkt":"\#(JWKThumbprint.sha256(self.jwk)!)"}"# : "")
        let claims = #"{"iss":"\#(self.harness.issuer)","sub":"alice","aud":"\#(self.harness.publicURL)/mcp","exp":\#(now + 300),"iat":\#(now),"scope":"read"\#(binding)}"#
        return self.harness.signer.sign(claims)
    }

    func proof(token: String, htu: String? = nil, jti: String = UUID().uuidString, nonce: String? = nil, iat: Int64? = nil) -> String {
        var claims: [String: JSONValue] = [
            "jti": .string(jti), "htm": .string("POST"), "htu": .string(htu ?? "\(self.harness.publicURL)/mcp"),
            "iat": .number(String(iat ?? Int64(Date().timeIntervalSince1970))), "ath": .string(DPoPVerifier.tokenHash(token)),
        ]
        if let nonce { claims["nonce"] = .string(nonce) }
        let header = JSONValue.object(["typ": .string("dpop+jwt"), "alg": .string("ES256"), "jwk": self.jwk])
        let input = Base64URL.encode(Array(header.serialized.utf8)) + "." + Base64URL.encode(Array(JSONValue.object(claims).serialized.utf8))
        return input + "." + Base64URL.encode(Array(try! self.key.signature(for: Array(input.utf8)).rawRepresentation))
    }

    static let call = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#

    func send(_ running: LoopbackHarness.Running, _ headers: [(String, String)]) throws -> TestClient.Response {
        try TestClient(group: self.harness.group).send(port: running.port, uri: "/mcp", headers: headers + [("MCP-Protocol-Version", "2025-11-25")], body: Self.call)
    }

    @Test func aBoundTokenGoesThroughWithItsProofAndNeverAsBearer() async throws {
        let running = try self.harness.start(LoopbackPolicy(self.harness).audit("file: /dev/null").methods("tools/call: { echo: [read], delete_repo: [admin] }"))
        defer { running.stop() }
        let token = self.token()
        let before = self.harness.backend.requests.count
        let ok = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token))])
        #expect(ok.status == .ok, "\(ok.body)")
        let forwarded = try #require(self.harness.backend.requests.last)
        #expect(self.harness.backend.requests.count == before + 1)
        #expect(forwarded.headers["DPoP"].isEmpty && forwarded.headers["Authorization"].isEmpty, "neither the proof nor the token goes upstream")

        // The downgrade: the same token as Bearer (RFC 9449 §7.2).
        let downgraded = try self.send(running, [("Authorization", "Bearer \(token)")])
        #expect(downgraded.status == .unauthorized)
        let challenges = downgraded.headers["WWW-Authenticate"]
        #expect(challenges.first?.hasPrefix(#"DPoP error="invalid_token""#) == true && challenges.first?.contains(#"algs="ES256 ES384 EdDSA PS256 RS256""#) == true, "\(challenges)")
        #expect(challenges.contains { $0.hasPrefix("Bearer resource_metadata=") }, "bearer tokens are accepted here too")

        let replayed = self.proof(token: token, jti: "once")
        #expect(try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", replayed)]).status == .ok)
        let again = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", replayed)])
        #expect(again.status == .unauthorized && again.body.contains("used before"), "\(again.body)")
        // Another URL (the Host header does not make it right), a stale iat, two proofs, no proof.
        let otherURL = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token, htu: "http://127.0.0.1:\(running.port)/mcp"))])
        #expect(otherURL.status == .unauthorized && otherURL.headers["WWW-Authenticate"].first?.contains(#"error="invalid_dpop_proof""#) == true)
        let stale = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token, iat: Int64(Date().timeIntervalSince1970) - 300))])
        #expect(stale.status == .unauthorized)
        let twice = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token)), ("DPoP", self.proof(token: token))])
        #expect(twice.status == .unauthorized)
        #expect(try self.send(running, [("Authorization", "DPoP \(token)")]).status == .unauthorized)
        // A proof made for another token.
        let foreign = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: self.token(jkt: false)))])
        #expect(foreign.status == .unauthorized && foreign.body.contains("hash of the access token"))
        // An unbound token presented as DPoP.
        let unbound = self.token(jkt: false)
        #expect(try self.send(running, [("Authorization", "DPoP \(unbound)"), ("DPoP", self.proof(token: unbound))]).status == .unauthorized)
        #expect(self.harness.backend.requests.count == before + 2, "only the two good proofs were forwarded")
        // A 403 challenges in the scheme the client used (RFC 9449 §7.1).
        let narrow = try TestClient(group: self.harness.group).send(port: running.port, uri: "/mcp", headers: [
            ("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token)), ("MCP-Protocol-Version", "2025-11-25"),
        ], body: #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}"#)
        #expect(narrow.status == .forbidden)
        #expect(narrow.headers["WWW-Authenticate"].first?.hasPrefix(#"DPoP resource_metadata="http://127.0.0.1:8443/.well-known/oauth-protected-resource/mcp", scope="admin", error="insufficient_scope""#) == true, "\(narrow.headers)")
        // Plain bearer tokens still work where they are optional.
        #expect(try self.send(running, [("Authorization", "Bearer \(unbound)")]).status == .ok)
        let metrics = String(decoding: running.gateway.metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(metrics, "mcp_bouncer_token_bindings_total", ["result": "dpop.replayed"]) == 1)
        #expect(PrometheusText.value(metrics, "mcp_bouncer_token_bindings_total", ["result": "bound_token_as_bearer"]) == 1)
    }

    @Test func requiredTakesOnlyBoundTokensAndTheMetadataSaysSo() async throws {
        let running = try self.harness.start(LoopbackPolicy(self.harness).resource("sender_constraint: required"))
        defer { running.stop() }
        let bearer = try self.send(running, [("Authorization", "Bearer \(self.token(jkt: false))")])
        #expect(bearer.status == .unauthorized)
        #expect(bearer.headers["WWW-Authenticate"] == [#"DPoP error_description="this resource accepts only sender-constrained (DPoP or certificate-bound) tokens", algs="ES256 ES384 EdDSA PS256 RS256""#])
        // No token at all: the challenge says how to come, and where to start.
        let none = try self.send(running, [])
        #expect(none.status == .unauthorized)
        #expect(none.headers["WWW-Authenticate"] == [#"DPoP resource_metadata="http://127.0.0.1:8443/.well-known/oauth-protected-resource/mcp", algs="ES256 ES384 EdDSA PS256 RS256""#], "no scopes_supported here: no scope")
        let certificateBound = self.token(cnf: #","cnf":{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}"#)
        let noCertificate = try self.send(running, [("Authorization", "Bearer \(certificateBound)")])
        #expect(noCertificate.status == .unauthorized && noCertificate.body.contains("another client certificate"))
        let token = self.token()
        #expect(try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token))]).status == .ok)
        let metadata = try TestClient(group: self.harness.group).send(port: running.port, method: .GET, uri: "/.well-known/oauth-protected-resource/mcp")
        let document = try JSONParser().parse(Array(metadata.body.utf8))
        #expect(document["dpop_bound_access_tokens_required"] == .bool(true))
        #expect(document["dpop_signing_alg_values_supported"] == .array(["ES256", "ES384", "EdDSA", "PS256", "RS256"].map(JSONValue.string)))
        #expect(document["tls_client_certificate_bound_access_tokens"] == .bool(false))
        // A cnf the gateway cannot check is not ignored.
        let unknown = self.token(cnf: #","cnf":{"jwk":{"kty":"EC"}}"#)
        #expect(try self.send(running, [("Authorization", "Bearer \(unknown)")]).status == .unauthorized)
    }

    @Test func noncesAreAskedForAndHandedOut() async throws {
        let running = try self.harness.start(LoopbackPolicy(self.harness).top("dpop: { nonce: true, nonce_lifetime_seconds: 10 }"))
        defer { running.stop() }
        let token = self.token()
        let first = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token))])
        #expect(first.status == .unauthorized && first.headers["WWW-Authenticate"].first?.contains(#"error="use_dpop_nonce""#) == true)
        let nonce = try #require(first.headers["DPoP-Nonce"].first)
        let forged = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token, nonce: nonce + "x"))])
        #expect(forged.status == .unauthorized && forged.headers["DPoP-Nonce"].count == 1)
        let ok = try self.send(running, [("Authorization", "DPoP \(token)"), ("DPoP", self.proof(token: token, nonce: nonce))])
        #expect(ok.status == .ok, "\(ok.body)")
    }

    /// Behind a TLS-terminating proxy: a certificate-bound token goes through with the proxy's
    /// RFC 9440 `Client-Cert` naming its certificate, not with another one, not when the header
    /// comes from a peer that is not a trusted proxy; the header never reaches the upstream.
    @Test func aCertificateBoundTokenMeetsTheProxysClientCert() async throws {
        let der: [UInt8] = [0x30, 0x05, 0x02, 0x01, 0x01, 0x05, 0x00]
        let other: [UInt8] = [0x30, 0x05, 0x02, 0x01, 0x02, 0x05, 0x00]
        // Standard base64 with padding, as RFC 8941 byte sequences are.
        func field(_ bytes: [UInt8]) -> String { ":" + Base64URL.encodeStandard(bytes) + ":" }
        let token = self.token(cnf: #","cnf":{"x5t#S256":"\#(CertificateThumbprint.sha256(der: der))"}"#)
        let trusted = try self.harness.start(LoopbackPolicy(self.harness).top("trusted_proxies: [127.0.0.1/32]", "client_certificate_header: Client-Cert"))
        defer { trusted.stop() }
        let before = self.harness.backend.requests.count
        let ok = try self.send(trusted, [("Authorization", "Bearer \(token)"), ("Client-Cert", field(der))])
        #expect(ok.status == .ok, "\(ok.body)")
        #expect(self.harness.backend.requests.last?.headers["Client-Cert"].isEmpty == true, "never forwarded")
        #expect(try self.send(trusted, [("Authorization", "Bearer \(token)"), ("Client-Cert", field(other))]).status == .unauthorized)
        #expect(try self.send(trusted, [("Authorization", "Bearer \(token)"), ("Client-Cert", field(der)), ("Client-Cert", field(der))]).status == .unauthorized)
        #expect(try self.send(trusted, [("Authorization", "Bearer \(token)"), ("Client-Cert", "not-a-byte-sequence")]).status == .unauthorized)
        #expect(self.harness.backend.requests.count == before + 1)
        // From a peer that is no trusted proxy the header means nothing (and is still not forwarded).
        let untrusted = try self.harness.start(LoopbackPolicy(self.harness))
        defer { untrusted.stop() }
        #expect(try self.send(untrusted, [("Authorization", "Bearer \(token)"), ("Client-Cert", field(der))]).status == .unauthorized)
    }
}
