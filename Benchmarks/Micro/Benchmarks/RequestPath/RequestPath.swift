import Benchmark
import BouncerCore
import Crypto
import Foundation

/// The pure parts of one request through the gateway, measured alone: what a token costs the
/// first time it is seen (cold: JWS parse, ES256 signature, claims, policy) and every time
/// after (warm: bearer extraction, verified-token cache hit, JSON-RPC parse, policy). The
/// socket side (NIO's HTTP/1 codec, the upstream pool) is measured by Benchmarks/run.
///
/// Every benchmark runs `Fixture.operations` operations per sample; the tables print
/// per-sample totals, so divide by that for one request (`Benchmarks/micro` prints both).
struct Fixture: Sendable {
    static let operations = 1000

    let token: String
    let authorization: [String]
    let keys: JSONWebKeySet
    let requirements: TokenRequirements
    let resource: ResourcePolicy
    let body: [UInt8]
    let now: Int64

    init() {
        let issuer = "https://idp.example.com/realms/corp"
        let policy = try! PolicyLoader.load(yaml: """
            listen: 127.0.0.1:8443
            public_url: https://mcp.example.com
            authorization_servers:
              corp:
                issuer: \(issuer)
                jwks_uri: https://idp.example.com/realms/corp/jwks
                algorithms: [ES256]
            resources:
              - path: /jira/mcp
                authorization_server: corp
                scopes_supported: [jira:read, jira:write]
                upstream: http://127.0.0.1:9000/mcp
                methods:
                  initialize: []
                  tools/list: [jira:read]
                  tools/call:
                    search_issues: [jira:read]
                    create_issue: [jira:write]
                    "*": [jira:admin]
            """, secrets: .empty)
        self.resource = policy.resources[0]
        self.requirements = TokenRequirements(server: policy.authorizationServers["corp"]!, resource: self.resource)

        let key = P256.Signing.PrivateKey()
        let x963 = Array(key.publicKey.x963Representation)
        let jwks = #"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"\#(Base64URL.encode(x963[1...32]))","y":"\#(Base64URL.encode(x963[33...64]))"}]}"#
        self.keys = try! JSONWebKeySet(json: Array(jwks.utf8))

        self.now = Int64(Date().timeIntervalSince1970)
        let header = #"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#
        let claims = #"{"iss":"\#(issuer)","sub":"alice","client_id":"agent","aud":"https://mcp.example.com/jira/mcp","exp":\#(self.now + 3600),"iat":\#(self.now),"scope":"openid jira:read jira:write"}"#
        let signingInput = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        let signature = try! key.signature(for: Array(signingInput.utf8)).rawRepresentation
        self.token = signingInput + "." + Base64URL.encode(signature)
        self.authorization = ["Bearer " + self.token]
        self.body = Array(#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"jql":"project = OPS AND status = Open","limit":50}}}"#.utf8)
    }

    func verify() throws -> AccessTokenClaims {
        let jws = try CompactJWS(self.token)
        try AccessTokenVerifier.verifySignature(jws, keys: self.keys, requirements: self.requirements)
        return try AccessTokenVerifier.validateClaims(jws, requirements: self.requirements, now: self.now)
    }

    func parse() throws -> JSONRPCBody {
        try JSONRPCBody.parse(self.body, maxDepth: 64)
    }

    /// The gateway's cache key: resource path and token, as a pair (BouncerProxy's
    /// `VerifiedTokenCache.Key`, which is internal to that module).
    struct CacheKey: Hashable, Sendable {
        let resource: String
        let token: String
    }

    func cacheKey(_ token: String) -> CacheKey {
        CacheKey(resource: self.resource.path, token: token)
    }
}

let benchmarks: @Sendable () -> Void = {
    let fixture = Fixture()
    let claims = try! fixture.verify()
    let body = try! fixture.parse()
    guard case .allow = try! fixture.resource.decide(body, granted: claims.scopes) else {
        fatalError("the fixture's request must be allowed")
    }

    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000
    )

    Benchmark("JWT verifier, cold: parse + ES256 signature + claims") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try fixture.verify())
        }
    }

    Benchmark("JSON-RPC parser: tools/call") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try fixture.parse())
        }
    }

    Benchmark("Policy decision: tools/call with a per-tool scope") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try fixture.resource.decide(body, granted: claims.scopes))
        }
    }

    Benchmark("Cold path: first sight of a token (verify, cache, parse, decide)") { benchmark in
        var cache = ExpiringCache<Fixture.CacheKey, AccessTokenClaims>(capacity: 100_000)
        for _ in benchmark.scaledIterations {
            guard case .token(let token) = BearerTokenExtractor.extract(authorization: fixture.authorization) else { fatalError() }
            let verified = try fixture.verify()
            cache.set(verified, for: fixture.cacheKey(token), expiresAt: verified.expiresAt, now: fixture.now)
            let parsed = try fixture.parse()
            blackHole(try fixture.resource.decide(parsed, granted: verified.scopes))
            cache = ExpiringCache(capacity: 100_000)
        }
    }

    Benchmark("Token cache churning at capacity: insert into a full 10,000-entry cache") { benchmark in
        // More distinct tokens than entries (a busy gateway, or a token spray): every insert
        // evicts. Keys are made outside the measured loop.
        let keys = (0..<(Fixture.operations * 2)).map { fixture.cacheKey("token-\($0)") }
        var cache = ExpiringCache<Fixture.CacheKey, AccessTokenClaims>(capacity: 10_000)
        for index in 0..<10_000 { cache.set(claims, for: fixture.cacheKey("warm-\(index)"), expiresAt: claims.expiresAt, now: fixture.now) }
        var next = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            cache.set(claims, for: keys[next % keys.count], expiresAt: claims.expiresAt, now: fixture.now)
            next += 1
        }
        benchmark.stopMeasurement()
        blackHole(cache.count)
    }

    Benchmark("Warm path: cached token (extract, cache hit, parse, decide)") { benchmark in
        var cache = ExpiringCache<Fixture.CacheKey, AccessTokenClaims>(capacity: 100_000)
        cache.set(claims, for: fixture.cacheKey(fixture.token), expiresAt: claims.expiresAt, now: fixture.now)
        for _ in benchmark.scaledIterations {
            guard case .token(let token) = BearerTokenExtractor.extract(authorization: fixture.authorization),
                  let cached = cache.value(for: fixture.cacheKey(token), now: fixture.now) else { fatalError() }
            let parsed = try fixture.parse()
            blackHole(try fixture.resource.decide(parsed, granted: cached.scopes))
        }
    }
}
