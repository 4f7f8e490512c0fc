import BouncerCore
import Crypto

extension FuzzTarget {
    /// DPoP (issue 27): any text as a proof, and the input spliced into a real one: a proof that
    /// verifies says exactly what the real one says (only its signature's unused base64 bits may
    /// differ); any JSON as a JWK has a thumbprint of 43 base64url characters or none, the same
    /// whatever other members it has; any text as a nonce is refused unless sealed; the replay
    /// cache, driven by the input, never admits the same proof twice within its window and never
    /// holds more than its capacity; RFC 9440 `Client-Cert` fields are read strictly.
    static func dpop(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        func verify(_ proof: String) -> DPoPProof? {
            try? DPoPVerifier.verify(
                proof: proof, proofCount: 1, method: "POST", publicURL: Self.dpopURL, accessToken: "token", boundThumbprint: nil,
                requirements: DPoPRequirements(), now: Self.dpopNow
            ).get()
        }
        if let proof = verify(text) { require(proof == Self.realProof, "a proof verified that was never made: \(text)") }
        if !data.isEmpty {
            var mangled = Array(Self.realProofText.utf8)
            let at = Int(data[0]) % mangled.count
            mangled.replaceSubrange(at..<min(mangled.count, at + data.count - 1), with: data.dropFirst())
            let candidate = String(decoding: mangled, as: UTF8.self)
            if let proof = verify(candidate) { require(proof == Self.realProof, "a mangled proof verified with other claims: \(candidate)") }
        }
        require(!Self.dpopNonces.accepts(text, now: Self.dpopNow), "a nonce never issued was accepted: \(text)")
        if let jwk = try? JSONParser(maxDepth: 8).parse(data), let thumbprint = JWKThumbprint.sha256(jwk) {
            require(thumbprint.utf8.count == 43 && thumbprint.utf8.allSatisfy(Base64URL.isAlphabet), "thumbprint \(thumbprint)")
            if case .object(var members) = jwk {
                members["kid"] = .string("another")
                members["use"] = .string("sig")
                require(JWKThumbprint.sha256(.object(members)) == thumbprint, "a member outside RFC 7638's changed the thumbprint")
            }
        }
        Self.replayModel(data)
        // RFC 9440 Client-Cert: a thumbprint only for one byte sequence of a DER SEQUENCE, and
        // then the thumbprint of exactly the bytes it carries.
        if let thumbprint = ClientCertField.thumbprint(text, count: 1) {
            require(text.hasPrefix(":") && text.hasSuffix(":") && thumbprint.utf8.count == 43, "Client-Cert \(text) read as \(thumbprint)")
            let bytes = Base64URL.decodeStandard(text.utf8.dropFirst().dropLast())
            require(bytes.map { Base64URL.encodeStandard($0) } == String(text.dropFirst().dropLast()), "Client-Cert bytes not read back as sent")
            require(bytes.map { CertificateThumbprint.sha256(der: $0) } == thumbprint, "Client-Cert thumbprint of other bytes")
        }
        require(ClientCertField.thumbprint(text, count: 2) == nil, "two Client-Cert fields read")
    }

    /// The replay cache against a plain model: each byte pair is (jti, time step).
    private static func replayModel(_ data: [UInt8]) {
        var cache = DPoPReplayCache(capacity: 8)
        var seen: [String: Int64] = [:]
        var now: Int64 = 0
        var index = 0
        while index + 1 < data.count {
            let jti = String(data[index] % 16)
            now += Int64(data[index + 1] % 4)
            let admission = cache.admit(thumbprint: "k", jti: jti, expiresAt: now + 5, now: now)
            if let until = seen[jti], until > now { require(admission == .replayed, "jti \(jti) admitted twice within its window") }
            if admission == .fresh { seen[jti] = now + 5 }
            require(cache.count <= 8, "the replay cache grew past its capacity")
            index += 2
        }
    }

    static let dpopURL = try! CanonicalURI("https://mcp.example.com/mcp")
    static let dpopNow: Int64 = 1_800_000_000
    static let dpopKey = try! P256.Signing.PrivateKey(rawRepresentation: Array(repeating: 7, count: 32))
    static let dpopNonces = DPoPNonces(keys: [try! SessionKey(id: "k1", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")], lifetimeSeconds: 60)
    static let realProofText: String = {
        let raw = Self.dpopKey.publicKey.rawRepresentation
        let jwk = JSONValue.object([
            "kty": .string("EC"), "crv": .string("P-256"),
            "x": .string(Base64URL.encode(Array(raw.prefix(32)))), "y": .string(Base64URL.encode(Array(raw.suffix(32)))),
        ])
        let header = JSONValue.object(["typ": .string("dpop+jwt"), "alg": .string("ES256"), "jwk": jwk])
        let claims = JSONValue.object([
            "jti": .string("j-1"), "htm": .string("POST"), "htu": .string("https://mcp.example.com/mcp"), "iat": .number(String(Self.dpopNow)),
            "ath": .string(DPoPVerifier.tokenHash("token")),
        ])
        let input = Base64URL.encode(Array(header.serialized.utf8)) + "." + Base64URL.encode(Array(claims.serialized.utf8))
        return input + "." + Base64URL.encode(Array(try! Self.dpopKey.signature(for: Array(input.utf8)).rawRepresentation))
    }()
    static let realProof = try! DPoPVerifier.verify(
        proof: realProofText, proofCount: 1, method: "POST", publicURL: dpopURL, accessToken: "token", boundThumbprint: nil, requirements: DPoPRequirements(), now: dpopNow
    ).get()
}
