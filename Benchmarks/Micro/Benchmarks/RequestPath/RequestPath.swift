import Benchmark
import BouncerCore
import BouncerProxy
import Crypto
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// The decisions on one request through the gateway, measured alone with the functions the
/// gateway's handler calls (``Enforcement``'s stages, the router, ``TokenAuthenticator``'s
/// cache): what a token costs the first time it is seen (cold: JWS parse, ES256 signature,
/// claims, policy) and every time after (warm: head facts, admission, verified-token cache hit,
/// JSON-RPC parse and policy, the upstream head). The socket side (NIO's HTTP/1 codec, the
/// upstream pool) is measured by Benchmarks/run.
///
/// Every benchmark runs `Fixture.operations` operations per sample; the tables print
/// per-sample totals, so divide by that for one request (`Benchmarks/micro` prints both).
struct Fixture: Sendable {
    static let operations = 1000

    let token: String
    let signingKey: P256.Signing.PrivateKey
    let issuer: String
    let keys: JSONWebKeySet
    let requirements: TokenRequirements
    let policy: GatewayPolicy
    let resource: ResourcePolicy
    let router: GatewayRouter<ResourcePolicy>
    let body: [UInt8]
    /// The request as NIO's decoder hands it to the gateway.
    let head: HTTPRequestHead
    let bodyBuffer: ByteBuffer
    /// The request as a client sends it (``wire``), made once.
    private(set) var wireBytes: ByteBuffer
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
        self.policy = policy
        self.resource = policy.resources[0]
        self.router = GatewayRouter(policy: policy)
        self.requirements = TokenRequirements(server: policy.authorizationServers["corp"]!, resource: self.resource)

        let key = P256.Signing.PrivateKey()
        let x963 = Array(key.publicKey.x963Representation)
        let jwks = #"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"\#(Base64URL.encode(x963[1...32]))","y":"\#(Base64URL.encode(x963[33...64]))"}]}"#
        self.keys = try! JSONWebKeySet(json: Array(jwks.utf8))

        self.now = Int64(Date().timeIntervalSince1970)
        self.signingKey = key
        self.issuer = issuer
        self.token = Self.mint(subject: "alice", key: key, issuer: issuer, now: self.now)
        self.body = Array(#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"jql":"project = OPS AND status = Open","limit":50}}}"#.utf8)
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/jira/mcp")
        for (name, value) in [
            ("Host", "mcp.example.com"), ("User-Agent", "mcp-client/1.0"), ("Authorization", "Bearer " + self.token),
            ("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Session-Id", "3f2c1e0a9b8d7c6e"), ("Content-Length", String(self.body.count)),
        ] {
            head.headers.add(name: name, value: value)
        }
        self.head = head
        self.bodyBuffer = ByteBuffer(bytes: self.body)
        self.wireBytes = ByteBuffer()
        self.wireBytes = self.wire
    }

    static func mint(subject: String, key: P256.Signing.PrivateKey, issuer: String, now: Int64) -> String {
        let header = #"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#
        let claims = #"{"iss":"\#(issuer)","sub":"\#(subject)","client_id":"agent","aud":"https://mcp.example.com/jira/mcp","exp":\#(now + 3600),"iat":\#(now),"scope":"openid jira:read jira:write"}"#
        let signingInput = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        let signature = try! key.signature(for: Array(signingInput.utf8)).rawRepresentation
        return signingInput + "." + Base64URL.encode(signature)
    }

    func mint(subject: String) -> String {
        Self.mint(subject: subject, key: self.signingKey, issuer: self.issuer, now: self.now)
    }

    func verify() throws -> AccessTokenClaims {
        let jws = try CompactJWS(self.token)
        try AccessTokenVerifier.verifySignature(jws, keys: self.keys, requirements: self.requirements)
        return try AccessTokenVerifier.validateClaims(jws, requirements: self.requirements, now: self.now)
    }

    /// The audit entry of the fixture's request, as the handler builds it.
    func auditEntry(body: JSONRPCBody, claims: AccessTokenClaims) -> AuditEntry {
        var request = AuditRequest(requestID: "k3x9q-17", httpMethod: "POST", peer: "192.0.2.1")
        request.resource = "/jira/mcp"
        request.subject = claims.subject
        request.clientID = claims.clientID
        request.issuer = claims.issuer
        request.token = AuditDigestSource(self.token)
        request.describe(body)
        request.decision = .allowed
        request.outcome = .forwarded
        request.status = 200
        request.bytesIn = self.body.count
        request.bytesOut = 412
        request.durationNanoseconds = 812_345
        request.upstreamNanoseconds = 601_002
        request.upstreamCredential = .static
        request.protocolVersion = "2025-11-25"
        request.traceID = RequestTrace(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?.traceID
        return .request(request)
    }

    func parse() throws -> JSONRPCBody {
        try JSONRPCBody.parse(self.body, maxDepth: 64)
    }

    /// The fixture's request as a client sends it: head and body.
    var wire: ByteBuffer {
        var wire = ByteBuffer(string: "POST /jira/mcp HTTP/1.1\r\n")
        for (name, value) in self.head.headers { wire.writeString("\(name): \(value)\r\n") }
        wire.writeString("\r\n")
        wire.writeBytes(self.body)
        return wire
    }

    /// One request from its bytes to the head sent upstream, with the token's claims from
    /// `authenticator`'s cache (`nil` when the token is not cached): the gateway's calls, in
    /// its order. The connection's reader and its last request's facts and token are reused
    /// from one request to the next, as on a keep-alive connection; the upstream head is
    /// written into `out` (the client's fields copied from its bytes, then the gateway's).
    func warmRequest(
        _ authenticator: TokenAuthenticator, reader: inout HTTP1RequestReader, previous: inout (facts: RequestHeadFacts?, token: String?), out: inout ByteBuffer
    ) -> Int? {
        reader.append(self.wireBytes)
        guard case .head(let head)? = try? reader.next(), case .body(let body)? = try? reader.next(), case .end? = try? reader.next() else { return nil }
        let facts = RequestHeadFacts(head, reusing: previous.facts)
        previous.facts = facts
        let uri = head.string(head.target)
        guard case .success(let target) = Enforcement.checkHead(facts, method: head.method.name, isHTTP11OrLater: true, target: uri, limits: self.policy.limits),
              case .resource(let resource) = self.router.route(target.path),
              case .success(let token) = Enforcement.admit(facts, method: "POST", query: target.query, body: body, resource: resource, previousToken: previous.token),
              let claims = authenticator.cachedClaims(token: token.value, resource: resource),
              case .success = Enforcement.authorize(facts, method: "POST", body: body, scopes: claims.scopes, resource: resource, limits: self.policy.limits).decision
        else { return nil }
        previous.token = token.value
        out.clear()
        out.writeString("POST ")
        out.writeString(resource.upstream.requestPath)
        out.writeString(" HTTP/1.1\r\n")
        let filter = Enforcement.ClientFieldFilter(facts: facts, resource: resource, replacesTrace: false)
        head.bytes.withUnsafeReadableBytes { bytes in
            for field in head.fields where filter.forwards(UnsafeRawBufferPointer(rebasing: bytes[field.name])) {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
                out.writeString(": ")
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                out.writeString("\r\n")
            }
        }
        Enforcement.gatewayFields(
            facts: facts, resource: resource, peer: "192.0.2.1", publicURL: self.policy.publicURL, bodyLength: body.readableBytes, isPOST: true, upstreamToken: nil
        ) { name, value in
            out.writeString(name)
            out.writeString(": ")
            out.writeString(value)
            out.writeString("\r\n")
        }
        out.writeString("\r\n")
        return out.readableBytes
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

    // DPoP (RFC 9449): a client's proof checked at the gateway (one ES256 verification, the
    // floor of a DPoP request), and the gateway's own proof for a DPoP-bound upstream leg (one
    // ES256 signature per upstream request).
    let dpopSigner = DPoPSigner(key: .p256(P256.Signing.PrivateKey()))
    let dpopURL = try! CanonicalURI("https://mcp.example.com/jira/mcp")
    let dpopProof = try! dpopSigner.proof(method: "POST", url: dpopURL.description, accessToken: fixture.token, nonce: nil, now: fixture.now, jti: "j-1")
    Benchmark("DPoP proof, verified: parse, jwk, ES256 signature, htm/htu/iat/ath, thumbprint") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(DPoPVerifier.verify(
                proof: dpopProof, proofCount: 1, method: "POST", publicURL: dpopURL, accessToken: fixture.token, boundThumbprint: dpopSigner.thumbprint,
                requirements: DPoPRequirements(), now: fixture.now
            ))
        }
    }

    Benchmark("DPoP proof, made for the upstream leg: claims, ES256 signature") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try dpopSigner.proof(method: "POST", url: "https://jira.internal/mcp", accessToken: fixture.token, nonce: "n", now: fixture.now, jti: "j"))
        }
    }

    // Issue 28: the gateway's own HTTP/1.1 codec beside NIO's llhttp decoder, on the same bytes:
    // the request an MCP client sends (the Python SDK's 10 fields) with its body.
    let wire = ByteBuffer(string: """
        POST /jira/mcp HTTP/1.1\r
        Host: mcp.example.com\r
        User-Agent: python-httpx/0.28.1\r
        Accept: application/json, text/event-stream\r
        Accept-Encoding: gzip, deflate\r
        Connection: keep-alive\r
        Authorization: Bearer \(fixture.token)\r
        Content-Type: application/json\r
        MCP-Protocol-Version: 2025-11-25\r
        Mcp-Session-Id: 3f2c1e0a9b8d7c6e\r
        Content-Length: \(fixture.body.count)\r
        \r
        \(String(decoding: fixture.body, as: UTF8.self))
        """)
    Benchmark("HTTP/1.1 request, the gateway's codec: 10-field MCP POST head parsed (ranges, facts) and its body framed") { benchmark in
        var parser = HTTP1RequestParser()
        for _ in benchmark.scaledIterations {
            parser.reset()
            let bodyBytes = wire.withUnsafeReadableBytes { bytes -> Int in
                guard case .complete(let length) = parser.parse(bytes) else { fatalError("the benchmark's head must parse") }
                var reader = HTTP1BodyReader(parser.framing)
                guard case .success(let (.data(range), _)) = reader.read(bytes, from: length) else { fatalError("the benchmark's body must frame") }
                return range.count
            }
            blackHole(bodyBytes)
        }
    }

    Benchmark("HTTP/1.1 request, NIO's decoder (llhttp, HTTPHeaders of Strings, parts through a pipeline): the same bytes") { benchmark in
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        for _ in benchmark.scaledIterations {
            try channel.writeInbound(wire)
            blackHole(try channel.readInbound(as: HTTPServerRequestPart.self))
            blackHole(try channel.readInbound(as: HTTPServerRequestPart.self))
            blackHole(try channel.readInbound(as: HTTPServerRequestPart.self))
        }
        _ = try? channel.finish()
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
        var reader = HTTP1RequestReader(maxHeadBytes: 16 * 1024, maxFields: 256)
        var out = ByteBuffer()
        for _ in benchmark.scaledIterations {
            // A new authenticator each time: the token is verified, not found in the cache.
            let authenticator = TokenAuthenticator(cacheCapacity: 100_000, clock: .fixed(milliseconds: fixture.now * 1000))
            blackHole(try authenticator.verify(token: fixture.token, resource: fixture.resource, requirements: fixture.requirements, keySet: fixture.keys))
            var previous: (facts: RequestHeadFacts?, token: String?) = (nil, nil)
            guard let upstream = fixture.warmRequest(authenticator, reader: &reader, previous: &previous, out: &out) else { fatalError("the fixture's request must be forwarded") }
            blackHole(upstream)
        }
    }

    Benchmark("Warm path: cached token (the codec's read and facts, admit, cache hit, parse, decide, upstream head written)") { benchmark in
        let authenticator = TokenAuthenticator(cacheCapacity: 100_000, clock: .fixed(milliseconds: fixture.now * 1000))
        _ = try authenticator.verify(token: fixture.token, resource: fixture.resource, requirements: fixture.requirements, keySet: fixture.keys)
        var reader = HTTP1RequestReader(maxHeadBytes: 16 * 1024, maxFields: 256)
        var out = ByteBuffer()
        out.reserveCapacity(2048)
        var previous: (facts: RequestHeadFacts?, token: String?) = (nil, nil)
        for _ in benchmark.scaledIterations {
            guard let upstream = fixture.warmRequest(authenticator, reader: &reader, previous: &previous, out: &out) else { fatalError("the fixture's request must be forwarded") }
            blackHole(upstream)
        }
    }

    Benchmark("Audit record, writer side: format, digest token and arguments, hash, chain (signed checkpoint every 1000)") { benchmark in
        var chain = AuditChain(formatter: AuditRecordFormatter(arguments: .hash), signer: AuditSigner(key: Curve25519.Signing.PrivateKey()), checkpointEvery: 1000)
        let entry = fixture.auditEntry(body: body, claims: claims)
        var now: Int64 = 1_764_554_888_000
        var line: [UInt8] = []
        for _ in benchmark.scaledIterations {
            now += 1
            line.removeAll(keepingCapacity: true)
            chain.append(entry, now: now, into: &line)
            blackHole(line)
        }
    }

    Benchmark("Audit record, end to end: built and queued on this thread, written by the writer thread to a file (CPU of both)") { benchmark in
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("micro-audit-\(UUID().uuidString).jsonl").path
        var settings = AuditSettings(file: path)
        settings.signingKey = AuditSigner(key: Curve25519.Signing.PrivateKey())
        settings.queueCapacity = 10_000_000
        let trail = try AuditTrail(settings: settings, metrics: GatewayMetrics(), logger: Logger(label: "micro"))
        trail.start(details: [:])
        let entry = fixture.auditEntry(body: body, claims: claims)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            trail.submit(entry)
        }
        // The writer's share is measured too: the sample ends when the queue is written.
        while trail.queueDepth > 0 { usleep(100) }
        benchmark.stopMeasurement()
        trail.stop()
        try? FileManager.default.removeItem(atPath: path)
    }

    // Response inspection, per message, the work the handler adds to relaying: an SSE event
    // split out of its read and checked (skipped unparsed, the common case), an event the
    // guard parses and judges (a harmless elicitation), and a JSON tools/call body checked.
    let inspected = InspectionFixture(resource: fixture.resource)
    Benchmark("Response inspection: SSE notification event, split and skipped unparsed") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(inspected.relay(inspected.notification))
        }
    }

    Benchmark("Response inspection: SSE elicitation event, split, parsed and judged") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(inspected.relay(inspected.elicitation))
        }
    }

    Benchmark("Response inspection: JSON tools/call response, checked and passed") { benchmark in
        for _ in benchmark.scaledIterations {
            var inspector = inspected.inspector
            blackHole(inspected.result.withUnsafeBytes { inspector.inspect($0) })
        }
    }

    Benchmark("Token cache churning at capacity: verify into a full 10,000-entry cache") { benchmark in
        // More distinct tokens than entries (a busy gateway, or a token spray): every insert
        // evicts. Tokens are minted outside the measured loop; each is verified (ES256) too.
        let authenticator = TokenAuthenticator(cacheCapacity: 10_000, clock: .fixed(milliseconds: fixture.now * 1000))
        let tokens = (0..<(Fixture.operations * 2)).map { fixture.mint(subject: "user-\($0)") }
        for index in 0..<10_000 { _ = try authenticator.verify(token: fixture.mint(subject: "warm-\(index)"), resource: fixture.resource, requirements: fixture.requirements, keySet: fixture.keys) }
        var next = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try authenticator.verify(token: tokens[next % tokens.count], resource: fixture.resource, requirements: fixture.requirements, keySet: fixture.keys))
            next += 1
        }
        benchmark.stopMeasurement()
    }
}

/// One protected exchange's inspector and the messages an upstream sends on it.
struct InspectionFixture: Sendable {
    let inspector: ResponseInspector
    let notification: [UInt8]
    let elicitation: [UInt8]
    let result: [UInt8]

    init(resource: ResourcePolicy) {
        let call = try! JSONRPCBody.parse(Array(#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues"}}"#.utf8), maxDepth: 16)
        self.inspector = ResponseInspector(for: call, policy: resource, granted: ["jira:read"], protocolVersion: "2025-11-25")
        self.notification = Array("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":7,\"progress\":3,\"total\":10}}\n\n".utf8)
        self.elicitation = Array(#"event: message\#ndata: {"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"Which project?","requestedSchema":{"type":"object","properties":{"project":{"type":"string"}}}}}\#n\#n"#.utf8)
        self.result = Array(#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"OPS-1: printer on fire; OPS-2: coffee machine empty"}],"isError":false}}"#.utf8)
    }

    /// What the handler does with one read holding one event: split it out, skip it when
    /// nothing in it can matter, else parse the event and inspect its data.
    func relay(_ bytes: [UInt8]) -> ResponseInspector.Verdict {
        var splitter = ServerSentEventSplitter(maxEventBytes: 1 << 20)
        var end = 0
        bytes.withUnsafeBytes { buffer in
            try? splitter.scan(buffer) { piece, at in if piece == .eventEnd { end = at } }
        }
        var inspector = self.inspector
        let event = bytes[..<end]
        guard event.withUnsafeBytes({ inspector.mayNeed($0) }) else { return .pass }
        guard var data = ServerSentEvent(parsing: event).data else { return .pass }
        return data.withUTF8 { inspector.inspect(UnsafeRawBufferPointer($0)) }
    }
}
