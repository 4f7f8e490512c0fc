import BouncerCore
import Crypto
import Testing
import Foundation

/// Sealed session ids, the per-user token bucket and trusted proxies: pure values, the time
/// passed in.
@Suite struct SessionSealTests {
    static let secretA = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    static let secretB = SessionKey.newSecret()
    let alice = SessionBinding(resource: "/jira/mcp", issuer: "https://idp.example", subject: "alice", clientID: "cursor")
    let now: Int64 = 1_800_000_000

    func sealer(_ keys: [SessionKey], maxAge: Int64 = 3600, bindClient: Bool = false) -> SessionSealer {
        SessionSealer(keys: keys, maxAgeSeconds: maxAge, bindClient: bindClient)
    }

    @Test func sealedIdsOpenForTheirUserAndHideTheUpstreamID() throws {
        let key = try SessionKey(id: "k1", secret: Self.secretA)
        let sealer = self.sealer([key])
        let sealed = try #require(sealer.seal("upstream-session-42", for: self.alice, now: self.now))
        #expect(sealed.hasPrefix("s1.k1."))
        #expect(!sealed.contains("upstream") && !sealed.contains("alice"), "neither the upstream's id nor the user can be read")
        #expect(sealed.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "a session id is visible ASCII")
        #expect(sealer.open(sealed, expecting: self.alice, now: self.now + 10) == .success("upstream-session-42"))
        // A fresh nonce each time: two seals of the same session differ.
        #expect(sealer.seal("upstream-session-42", for: self.alice, now: self.now) != sealed)
        // A refreshed token of the same user (another client id without bind_client) keeps it.
        var refreshed = self.alice
        refreshed.clientID = "other-client"
        #expect(sealer.open(sealed, expecting: refreshed, now: self.now) == .success("upstream-session-42"))
    }

    @Test func everyRejectionReason() throws {
        let key = try SessionKey(id: "k1", secret: Self.secretA)
        let sealer = self.sealer([key], bindClient: true)
        let sealed = try #require(sealer.seal("up-1", for: self.alice, now: self.now))
        func open(_ id: String, _ binding: SessionBinding? = nil, at time: Int64? = nil) -> SessionMismatch? {
            guard case .failure(let mismatch) = sealer.open(id, expecting: binding ?? self.alice, now: time ?? self.now) else { return nil }
            return mismatch
        }
        var bob = self.alice
        bob.subject = "bob"
        #expect(open(sealed, bob) == .otherSubject(self.alice))
        var otherIssuer = self.alice
        otherIssuer.issuer = "https://evil.example"
        #expect(open(sealed, otherIssuer)?.code == "other_subject", "the same subject at another issuer is another user")
        var otherResource = self.alice
        otherResource.resource = "/github/mcp"
        #expect(open(sealed, otherResource) == .otherResource(self.alice))
        var otherClient = self.alice
        otherClient.clientID = "evil-client"
        #expect(open(sealed, otherClient) == .otherClient(self.alice))
        #expect(open(sealed, at: self.now + 3601) == .expired(ageSeconds: 3601))
        #expect(open(sealed, at: self.now + 3600) == nil, "max_age itself is still in time")
        #expect(open(sealed, at: self.now - 61)?.code == "expired", "issued in the future")
        #expect(open(sealed, at: self.now - 30) == nil, "a little clock skew between replicas is tolerated")
        // Tampering: every byte of the payload is authenticated.
        let parts = sealed.split(separator: ".")
        var payload = Array(parts[2].utf8)
        payload[payload.count / 2] = payload[payload.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(open("s1.k1.\(String(decoding: payload, as: UTF8.self))") == .forged)
        #expect(open("s1.k2.\(parts[2])") == .unknownKey("k2"))
        let other = self.sealer([try SessionKey(id: "k1", secret: Self.secretB)])
        #expect(other.open(sealed, expecting: self.alice, now: self.now) == .failure(.forged), "same key id, another secret")
        // The key id is authenticated too: relabelled under a key with the same secret, it fails.
        let twin = self.sealer([key, try SessionKey(id: "k9", secret: Self.secretA)])
        #expect(twin.open("s1.k9.\(parts[2])", expecting: self.alice, now: self.now) == .failure(.forged))
        for malformed in ["", "up-1", "s1.k1", "s2.k1.\(parts[2])", "s1..\(parts[2])", "s1.k1.\(parts[2]).x", "s1.k1.!!!!", "s1.k1.AAAA",
                          "s1.k1.\(parts[2])=", "s1.\(String(repeating: "k", count: 40)).\(parts[2])", String(repeating: "a", count: 5000)] {
            #expect(open(malformed) == .malformed, "\(malformed.prefix(40))")
        }
    }

    @Test func rotationSealsWithTheFirstKeyAndOpensWithAll() throws {
        let old = try SessionKey(id: "k1", secret: Self.secretA)
        let new = try SessionKey(id: "k2", secret: Self.secretB)
        let before = self.sealer([old])
        let during = self.sealer([new, old])
        let after = self.sealer([new])
        let oldSession = try #require(before.seal("up-old", for: self.alice, now: self.now))
        #expect(during.open(oldSession, expecting: self.alice, now: self.now) == .success("up-old"), "live sessions survive the rotation")
        let newSession = try #require(during.seal("up-new", for: self.alice, now: self.now))
        #expect(newSession.hasPrefix("s1.k2."))
        #expect(after.open(newSession, expecting: self.alice, now: self.now) == .success("up-new"))
        #expect(after.open(oldSession, expecting: self.alice, now: self.now) == .failure(.unknownKey("k1")), "once the old key is gone, so are its sessions")
    }

    @Test func upstreamIDsTheTransportForbidsAreNotSealed() throws {
        let sealer = self.sealer([try SessionKey(id: "k1", secret: Self.secretA)])
        for bad in ["", "has space", "tab\tid", "new\nline", "caf\u{e9}", String(repeating: "x", count: SessionSealer.maxUpstreamIDLength + 1)] {
            #expect(sealer.seal(bad, for: self.alice, now: self.now) == nil, "\(bad.prefix(20))")
        }
        #expect(sealer.seal(String(repeating: "x", count: SessionSealer.maxUpstreamIDLength), for: self.alice, now: self.now) != nil)
    }

    @Test func aTokenWithoutASubjectIsItsClientsNeverAnyones() {
        func claims(subject: String?, client: String?) -> AccessTokenClaims {
            AccessTokenClaims(issuer: "i", subject: subject, clientID: client, audiences: [], expiresAt: 0, notBefore: nil, issuedAt: nil, tokenID: nil, scopes: [])
        }
        #expect(claims(subject: "alice", client: "c1").user == "sub:alice")
        #expect(claims(subject: nil, client: "c1").user == "client:c1")
        #expect(claims(subject: nil, client: "c1").user != claims(subject: nil, client: "c2").user)
        #expect(claims(subject: "c1", client: nil).user != claims(subject: nil, client: "c1").user, "a subject never passes for a client")
        #expect(claims(subject: nil, client: nil).user == nil, "nobody: the gateway binds to the token itself")
    }

    @Test func keysAreCheckedWhenMade() {
        #expect(throws: SessionKeyError.invalidID("bad id")) { try SessionKey(id: "bad id", secret: Self.secretA) }
        #expect(throws: SessionKeyError.invalidID("")) { try SessionKey(id: "", secret: Self.secretA) }
        #expect(throws: SessionKeyError.notBase64(id: "k")) { try SessionKey(id: "k", secret: "not base64!") }
        #expect(throws: SessionKeyError.wrongLength(id: "k", bytes: 16)) { try SessionKey(id: "k", secret: "AAECAwQFBgcICQoLDA0ODw==") }
        #expect((try? SessionKey(id: "k", secret: " \(Self.secretA)\n")) != nil, "a file's newline is ignored")
        #expect((try? SessionKey(id: "k", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")) != nil, "unpadded, URL-safe alphabet")
        let secret = SessionKey.newSecret()
        #expect(secret.count == 44 && (try? SessionKey(id: "k", secret: secret)) != nil)
        #expect(SessionKey.newSecret() != secret)
    }
}

@Suite struct RateLimiterTests {
    static let second: Int64 = 1_000_000_000

    @Test func aBucketAllowsItsBurstThenItsRate() {
        var limiter = RateLimiter(rate: RateLimit(requestsPerSecond: 2, burst: 3))
        let start: Int64 = 5 * Self.second
        for _ in 0..<3 { #expect(limiter.take("alice", now: start) == .allowed) }
        #expect(limiter.take("alice", now: start) == .limited(retryAfterSeconds: 1))
        #expect(limiter.take("bob", now: start) == .allowed, "each user has a bucket")
        #expect(limiter.take("alice", now: start + Self.second / 2) == .allowed, "one token back after half a second")
        #expect(limiter.take("alice", now: start + Self.second / 2) == .limited(retryAfterSeconds: 1))
        // A long pause refills to the burst, never beyond.
        let later = start + 100 * Self.second
        for _ in 0..<3 { #expect(limiter.take("alice", now: later) == .allowed) }
        #expect(limiter.take("alice", now: later) != .allowed)
    }

    @Test func retryAfterSaysWhenATokenIsBack() {
        var limiter = RateLimiter(rate: RateLimit(requestsPerSecond: 0.1, burst: 1))
        #expect(limiter.take("alice", now: 0) == .allowed)
        #expect(limiter.take("alice", now: 0) == .limited(retryAfterSeconds: 10))
        #expect(limiter.take("alice", now: 4 * Self.second) == .limited(retryAfterSeconds: 6))
        #expect(limiter.take("alice", now: 10 * Self.second) == .allowed)
    }

    @Test func memoryIsBoundedAndActiveUsersKeepTheirBuckets() {
        var limiter = RateLimiter(rate: RateLimit(requestsPerSecond: 1, burst: 1), capacity: 100)
        #expect(limiter.take("noisy", now: 0) == .allowed)
        // Many users come and go; "noisy" stays empty as long as it keeps asking.
        for index in 0..<1000 {
            let now = Int64(index) * Self.second / 1000
            _ = limiter.take("user-\(index)", now: now)
            if index % 50 == 0 { #expect(limiter.take("noisy", now: now) != .allowed, "at \(index)") }
            #expect(limiter.count <= 100)
        }
        // Refilled buckets are the first to go: once the table is full again, all of them at once.
        var added = 0
        while limiter.count < 100 {
            _ = limiter.take("late-\(added)", now: 10 * Self.second)
            added += 1
        }
        #expect(limiter.take("one-more", now: 10 * Self.second) == .allowed)
        #expect(limiter.count == added + 1, "only the buckets taken from at 10 s are left")
    }
}

@Suite struct TrustedProxyTests {
    @Test func addressesAndBlocksParse() throws {
        #expect(IPAddress("192.0.2.1")?.description == "192.0.2.1")
        #expect(IPAddress("::ffff:192.0.2.1")?.description == "192.0.2.1", "IPv4-mapped is IPv4")
        #expect(IPAddress("2001:db8::1")?.isIPv4 == false)
        #expect(IPAddress("fe80::1%eth0") != nil)
        #expect(IPAddress("::") != nil && IPAddress("::1") != nil)
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", "2001:db8:::1", "1::2::3", "12345::1", "::g", "1:2:3:4:5:6:7:8:9", "example.com"] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
        let block = try #require(CIDRBlock("10.1.2.3/8"))
        #expect(block.description == "10.0.0.0/8")
        #expect(block.contains(IPAddress("10.255.0.1")!) && !block.contains(IPAddress("11.0.0.1")!))
        #expect(!block.contains(IPAddress("::a01:203")!), "an IPv6 address is never in an IPv4 block")
        let v6 = try #require(CIDRBlock("2001:db8::/32"))
        #expect(v6.contains(IPAddress("2001:db8:ffff::1")!) && !v6.contains(IPAddress("2001:db9::1")!))
        #expect(CIDRBlock("192.0.2.7")?.contains(IPAddress("192.0.2.7")!) == true)
        #expect(CIDRBlock("0.0.0.0/0")?.contains(IPAddress("203.0.113.9")!) == true)
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "2001:db8::/129", "nonsense/8", "10.0.0.0/ 8"] {
            #expect(CIDRBlock(bad) == nil, "\(bad)")
        }
    }

    @Test func theClientIsTheNearestUntrustedHop() throws {
        let proxies = TrustedProxies([try #require(CIDRBlock("10.0.0.0/8")), try #require(CIDRBlock("fd00::/8"))])
        // From a client directly: its headers say nothing.
        #expect(proxies.clientAddress(peer: "203.0.113.9", forwardedFor: ["1.1.1.1"], forwarded: []) == "203.0.113.9")
        // From the load balancer: the last address it appended.
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: ["198.51.100.7"], forwarded: []) == "198.51.100.7")
        // A client that forges a chain only adds entries left of the one the proxy wrote.
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: ["6.6.6.6, 10.0.0.9", "198.51.100.7"], forwarded: []) == "198.51.100.7")
        // Trusted hops are skipped, right to left.
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: ["198.51.100.7, 10.0.0.5"], forwarded: []) == "198.51.100.7")
        // A malformed entry ends the walk at the last good hop.
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: ["198.51.100.7, garbage, 10.0.0.5"], forwarded: []) == "10.0.0.5")
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: [], forwarded: []) == "10.0.0.2")
        // RFC 7239, with ports, quotes and IPv6.
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: [], forwarded: [#"for=192.0.2.60;proto=http;by=203.0.113.43"#]) == "192.0.2.60")
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: [], forwarded: [#"For="[2001:db8:cafe::17]:4711""#]) == "2001:db8:cafe:0:0:0:0:17")
        #expect(proxies.clientAddress(peer: "fd00::1", forwardedFor: ["192.0.2.43:47011"], forwarded: []) == "192.0.2.43")
        #expect(proxies.clientAddress(peer: "10.0.0.2", forwardedFor: [], forwarded: ["for=unknown"]) == "10.0.0.2")
        #expect(!TrustedProxies().trusts(peer: "10.0.0.2"))
    }
}

@Suite struct SessionPolicyTests {
    func load(_ extra: String, resource: String = "") throws -> GatewayPolicy {
        try PolicyLoader.load(yaml: PolicyLoaderTests.valid.replacingOccurrences(of: "authorization_servers:", with: "\(extra)\nauthorization_servers:")
            .replacingOccurrences(of: "    upstream: http://10.0.0.5:8080/mcp", with: "    upstream: http://10.0.0.5:8080/mcp\n\(resource)"), secrets: PolicyLoaderTests.secrets)
    }

    func problems(_ extra: String, resource: String = "") -> [String] {
        do {
            _ = try self.load(extra, resource: resource)
            return []
        } catch let error as PolicyValidationError {
            return error.problems.map { "\($0.keyPath): \($0.message)" }
        } catch {
            return ["\(error)"]
        }
    }

    @Test func sessionsTrustedProxiesAndRateLimitsLoad() throws {
        let policy = try self.load("""
            sessions:
              keys:
                - { id: k2, secret: "\(SessionSealTests.secretB)" }
                - { id: k1, secret: "${file:/run/secret-key}" }
              max_age: 600
              bind_client: true
            trusted_proxies: [10.0.0.0/8, "2001:db8::/32", 192.0.2.1]
            """, resource: "    rate_limit: { requests_per_second: 2.5 }")
        #expect(policy.sessions.keys.map(\.id) == ["k2", "k1"] && policy.sessions.maxAgeSeconds == 600 && policy.sessions.bindClient)
        #expect(policy.trustedProxies.blocks.map(\.description) == ["10.0.0.0/8", "2001:db8:0:0:0:0:0:0/32", "192.0.2.1/32"])
        #expect(policy.resources[0].rateLimit == RateLimit(requestsPerSecond: 2.5, burst: 3))
        let defaults = try self.load("")
        #expect(defaults.sessions.keys.isEmpty && defaults.sessions.maxAgeSeconds == 86_400 && !defaults.sessions.bindClient)
        #expect(defaults.trustedProxies.isEmpty && defaults.resources[0].rateLimit == nil)
    }

    @Test func badSessionsTrustedProxiesAndRateLimitsAreProblems() {
        #expect(self.problems("sessions:\n  keys: []") == ["sessions.keys: expected a list of {id, secret}, the sealing key first"])
        #expect(self.problems("sessions:\n  keys:\n    - { id: k1, secret: c2hvcnQ= }").first?.contains("sessions.keys[0].secret: the secret of key 'k1' is 5 bytes") == true)
        #expect(self.problems("sessions:\n  keys:\n    - { id: 'a b', secret: \(SessionSealTests.secretA) }").first?.hasPrefix("sessions.keys[0].id:") == true)
        #expect(self.problems("sessions:\n  keys:\n    - { id: k1, secret: \(SessionSealTests.secretA) }\n    - { id: k1, secret: \(SessionSealTests.secretA) }") == ["sessions.keys[1].id: key id 'k1' appears twice"])
        #expect(self.problems("sessions:\n  keys:\n    - { id: k1 }").first?.contains("secret") == true)
        #expect(self.problems("sessions:\n  max_age: 5").first?.hasPrefix("sessions.max_age:") == true)
        #expect(self.problems("sessions:\n  ttl: 5").first?.contains("unknown key 'ttl'") == true)
        #expect(self.problems("trusted_proxies: [10.0.0.0/33]") == ["trusted_proxies[0]: '10.0.0.0/33' is not an IP address or a CIDR block (10.0.0.0/8, 2001:db8::/32)"])
        #expect(self.problems("trusted_proxies: 10.0.0.0/8").first?.hasPrefix("trusted_proxies:") == true)
        #expect(self.problems("", resource: "    rate_limit: { requests_per_second: 0 }").first?.hasPrefix("resources[0].rate_limit.requests_per_second: must be a number") == true)
        #expect(self.problems("", resource: "    rate_limit: { requests_per_second: lots }").count == 1)
        #expect(self.problems("", resource: "    rate_limit: { burst: 5 }").first?.contains("requests_per_second") == true)
        #expect(self.problems("", resource: "    rate_limit: { requests_per_second: 5, burst: 0 }").first?.hasPrefix("resources[0].rate_limit.burst") == true)
        #expect(self.problems("limits:\n  max_connections: 0").first?.hasPrefix("limits.max_connections") == true)
    }
}
