import BouncerCore
import BouncerProbe
import CFuzzerDriver
#if canImport(Glibc)
import Glibc
#endif

/// The fuzz targets. Each takes the raw input, feeds it to one parser the gateway exposes to
/// untrusted bytes, and checks properties that must hold for every input: no crash, no
/// hang, and where a parser promises something about its output (idempotent normalisation,
/// a header value without control characters), that promise. A broken property traps, so
/// libFuzzer reports it as a crash with the input.
enum FuzzTarget: String, CaseIterable {
    case json
    case jsonrpc
    case jws
    case jwks
    case head
    case uri
    case headers
    case policy
    case oauth
    case audit
    case sse
    case session
    case probe
    case bridge
    case dpop
    case http1
    case writer

    func run(_ bytes: UnsafeRawBufferPointer) {
        let data = Array(bytes)
        switch self {
        case .json: Self.json(data)
        case .jsonrpc: Self.jsonRPC(data)
        case .jws: Self.jws(data)
        case .jwks: Self.jwks(data)
        case .head: Self.head(data)
        case .uri: Self.uri(data)
        case .headers: Self.headers(data)
        case .policy: Self.policy(data)
        case .oauth: Self.oauth(data)
        case .audit: Self.audit(data)
        case .sse: Self.sse(data)
        case .session: Self.session(data)
        case .probe: Self.probe(data)
        case .bridge: Self.bridge(data)
        case .dpop: Self.dpop(data)
        case .http1: Self.http1(data)
        case .writer: Self.writer(data)
        }
    }

    static func require(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("property broken: \(message())") }
    }

    /// Audit files as `mcp-bouncer audit verify` reads them (an attacker may have written
    /// them): no crash, a failure names a line that exists; and RFC 8785 canonical JSON is a
    /// fixed point (canonicalising its own output changes no byte), which the chain's hashes
    /// rely on, with every number written as its round trip through Double writes it.
    static func audit(_ data: [UInt8]) {
        var verifier = AuditVerifier(publicKey: nil)
        verifier.beginFile("fuzz")
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            if let failure = verifier.verify(line: line, number: index + 1) {
                require(failure.line == index + 1, "failure at line \(failure.line), reading line \(index + 1)")
                break
            }
        }
        _ = verifier.finish()
        guard let value = try? JSONParser(maxDepth: 32).parse(data) else { return }
        let canonical = Array(CanonicalJSON.serialize(value).utf8)
        guard let reparsed = try? JSONParser(maxDepth: 40).parse(canonical) else {
            return require(false, "canonical JSON does not parse: \(String(decoding: canonical, as: UTF8.self))")
        }
        let again = Array(CanonicalJSON.serialize(reparsed).utf8)
        require(again == canonical, "canonical JSON is not a fixed point: \(String(decoding: canonical, as: UTF8.self)) -> \(String(decoding: again, as: UTF8.self))")
        // Every number as the round trip through Double writes it (short integers skip it).
        func numbers(_ value: JSONValue) {
            switch value {
            case .number(let text):
                var written: [UInt8] = []
                CanonicalJSON.append(value, to: &written)
                require(String(decoding: written, as: UTF8.self) == CanonicalJSON.number(text), "\(text) written as \(String(decoding: written, as: UTF8.self))")
            case .array(let elements): elements.forEach(numbers)
            case .object(let members): members.values.forEach(numbers)
            default: break
            }
        }
        numbers(value)
    }

    /// JSON: whatever parses serialises to text that parses to the same value.
    static func json(_ data: [UInt8]) {
        guard let value = try? JSONParser(maxDepth: 32).parse(data) else { return }
        let text = value.serialized
        let again = try? JSONParser(maxDepth: 40).parse(text)
        require(again == value, "serialised JSON does not parse back: \(text)")
    }

    static let resource: ResourcePolicy = {
        let yaml = """
            listen: 127.0.0.1:0
            public_url: https://mcp.example.com
            authorization_servers:
              corp: { issuer: https://as.example.com }
            resources:
              - path: /mcp
                authorization_server: corp
                upstream: http://127.0.0.1:1/mcp
                protocol_versions: ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
                client_responses: [a]
                methods:
                  initialize: []
                  notifications/*: []
                  tools/call: { "*": [a], "admin_*": [b], "exact": [] }
                  prompts/get: { "p*": [a] }
                  resources/read: { "file:///docs/*": [a], "*": [c] }
            """
        do {
            return try PolicyLoader.load(yaml: yaml, secrets: .empty).resources[0]
        } catch {
            fatalError("the fuzz policy does not load: \(error)")
        }
    }()

    /// JSON-RPC: the envelope, the policy decision and the mirrored-header check, as the
    /// gateway runs them on a body. The first line, if it starts with `#`, is `Mcp-Name`.
    static func jsonRPC(_ data: [UInt8]) {
        var body = data[...]
        var mcpName: String?
        if body.first == UInt8(ascii: "#"), let newline = body.firstIndex(of: 10) {
            mcpName = String(decoding: body[body.index(after: body.startIndex)..<newline], as: UTF8.self)
            body = body[(newline + 1)...]
        }
        guard let parsed = try? JSONRPCBody.parse(body, maxDepth: 64) else { return }
        require(!parsed.messages.isEmpty, "a parsed body without messages")
        _ = try? self.resource.decide(parsed, granted: ["a"])
        _ = MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: parsed.messages.first?.method, mcpName: mcpName, body: parsed)
        if let message = parsed.messages.first { _ = MCPHeaderRules.metaProtocolVersion(message) }
        _ = parsed.errorID
    }

    static let requirements: TokenRequirements = {
        do {
            return TokenRequirements(issuer: "https://as.example.com", audience: try CanonicalURI("https://mcp.example.com/mcp"),
                                     algorithms: Set(JWSAlgorithm.allCases), leewaySeconds: 60, requireAccessTokenType: true, scopeClaims: [.scope, .scp])
        } catch {
            fatalError("\(error)")
        }
    }()

    /// JWS compact serialisation, then the claim checks on whatever payload it carries.
    static func jws(_ data: [UInt8]) {
        let token = String(decoding: data, as: UTF8.self)
        _ = CompactJWS.looksLikeJWS(token)
        guard let jws = try? CompactJWS(token) else { return }
        _ = try? AccessTokenVerifier.validateClaims(jws, requirements: self.requirements, now: 1_800_000_000)
        _ = try? AccessTokenVerifier.verifySignature(jws, keys: JSONWebKeySet(keys: []), requirements: self.requirements)
    }

    /// JWK sets: every key that parses is asked to verify a signature it did not make.
    static func jwks(_ data: [UInt8]) {
        guard let set = try? JSONWebKeySet(json: data) else { return }
        for algorithm in JWSAlgorithm.allCases {
            for key in set.candidates(keyID: nil, algorithm: algorithm) {
                require(!key.verify(signature: Array(data.prefix(64)), signingInput: data, algorithm: algorithm), "a key verified garbage")
            }
        }
    }

    /// Request heads: the RFC 9112 rules over header lines (`name: value` per line; the first
    /// line is the request target), host syntax, target forms and canonical resource URIs.
    static func head(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let target = lines.isEmpty ? "" : String(lines.removeFirst())
        var rules = RequestHeadFacts()
        for line in lines {
            let parts = line.split(separator: ":", maxSplits: 1)
            rules.observe(name: String(parts.first ?? ""), value: parts.count > 1 ? String(parts[1]) : "")
        }
        _ = rules.violation(method: "POST", isHTTP11OrLater: true)
        _ = rules.violation(method: "GET", isHTTP11OrLater: false)
        if let origin = RequestHeadFacts.originForm(of: target) {
            // Bytes, not Characters: "/" followed by a combining mark is one Character that is not "/".
            require(origin.utf8.first == UInt8(ascii: "/"), "origin form \(origin) of \(target) is not a path")
        }
        _ = RequestHeadFacts.isValidHost(target)
        Self.factsReuse(lines)
        if let uri = try? CanonicalURI(target) {
            // Canonical means canonical: parsing its own text gives it back.
            require((try? CanonicalURI(uri.description)) == uri, "\(target) -> \(uri) is not stable")
        }
    }

    /// resources/read URIs: normalising is idempotent, and what comes out has no dot segment,
    /// no encoded '/' and no control characters.
    static func uri(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        guard let once = try? ResourceURI.normalise(text) else { return }
        require((try? ResourceURI.normalise(once)) == once, "normalising \(text) twice differs: \(once)")
        // Bytes, not Characters: a combining mark after ':' or '/' joins it in one Character.
        let bytes = Array(once.utf8)
        var path = bytes.drop { $0 != UInt8(ascii: ":") }.dropFirst().prefix { $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        if path.starts(with: "//".utf8) { path = path.dropFirst(2).drop { $0 != UInt8(ascii: "/") } }
        let dotSegment = path.split(separator: UInt8(ascii: "/")).contains { $0.elementsEqual(".".utf8) || $0.elementsEqual("..".utf8) }
        require(!dotSegment, "dot segment left in \(once)")
        require(!once.utf8.contains { $0 < 0x21 || $0 == 0x7F || $0 == UInt8(ascii: "\\") }, "control character left in \(once)")
        require(once.range(of: "%2F", options: []) == nil, "encoded slash left in \(once)")
    }

    /// Header helpers: bearer extraction, encoded `Mcp-Name` values, Connection options, and
    /// the challenge the gateway writes, which must stay one well-formed header line.
    static func headers(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        let fresh = BearerTokenExtractor.extract(first: text, count: 1)
        if case .token(let token) = fresh {
            require(BearerTokenExtractor.isB64Token(token), "extracted token \(token) is not a b64token")
        }
        // A connection's previous token changes nothing but the String's storage: reusing the
        // same token, or one of a header that differs in its last byte, gives what a fresh
        // extraction gives.
        let changed = String(decoding: data.dropLast() + [data.last.map { $0 ^ 1 } ?? 0x41], as: UTF8.self)
        for header in [text, changed] {
            let previous: String?
            switch BearerTokenExtractor.extract(first: header, count: 1) {
            case .token(let token), .dpop(let token): previous = token
            case .none, .invalid: previous = nil
            }
            require(BearerTokenExtractor.extract(first: text, count: 1, reusing: previous) == fresh, "reusing \(previous ?? "-") changed the outcome for \(text)")
        }
        _ = BearerTokenExtractor.carriesAccessToken(formEncoded: text)
        _ = MCPHeaderRules.decodeHeaderValue(text)
        var options = ConnectionOptions()
        options.add(text)
        _ = options.names("x-forwarded-for")
        _ = HopByHop.isRequestHeader(text, connection: options)
        let challenge = BearerChallenge(resourceMetadata: text, scopes: [text], error: .invalidToken, errorDescription: text).headerValue
        require(!challenge.utf8.contains { $0 < 0x20 || $0 == 0x7F }, "challenge with a control character: \(challenge)")
        require(challenge.utf8.filter { $0 == UInt8(ascii: "\"") }.count % 2 == 0, "unbalanced quotes: \(challenge)")
    }

    /// What `probe` and `init` read from servers: a `WWW-Authenticate` header (any input parses
    /// and ends), and a tool name a server chose: the policy `init` writes with it loads, and
    /// its rule matches that name (a literal) or it is left out for review.
    static func probe(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        _ = ProbeChecks.bearerParameters(text)
        var draft = PolicyDraft(upstream: "http://127.0.0.1:9001/mcp", path: "/fuzz/mcp", publicURL: try! CanonicalURI("http://127.0.0.1:8443"),
                                issuer: "https://as.example.com", pinsFile: nil, date: "2026-12-01")
        draft.serverName = text
        draft.tools = [.object(["name": .string(text), "annotations": .object(["readOnlyHint": .bool(true)])])]
        let policy: GatewayPolicy
        do {
            policy = try PolicyLoader.load(yaml: draft.yaml, secrets: .empty)
        } catch {
            require(false, "init wrote a policy that does not load for tool name \(text.debugDescription): \(error)")
            return
        }
        // Names are values the loader substitutes in: init escapes them, so each loads as the
        // server wrote it (a server cannot name a secret file into the policy).
        if !text.isEmpty, !text.unicodeScalars.contains("\u{FEFF}") {
            require(policy.resources.first?.name == text, "init wrote server name \(text.debugDescription) that loads as \(String(describing: policy.resources.first?.name).debugDescription)")
        }
        guard PolicyDraft.isLiteral(text), case .byTarget(let tools)? = policy.resources.first?.methods.rules.lookup("tools/call")?.value else { return }
        require(tools.lookup(text)?.value == ["fuzz:read"], "the rule init wrote for \(text.debugDescription) does not match it")
        require(tools.lookup(text + "x") == nil, "the rule init wrote for \(text.debugDescription) matches another name")
    }

    /// What clients send about sessions and addresses: a session id (forged, truncated, for
    /// another key, mangled from a real one) never opens unless it is exactly a sealed one; and
    /// forwarding headers and CIDR blocks never crash, and any address a chain yields parses.
    static let sealer = SessionSealer(keys: [try! SessionKey(id: "k1", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")], maxAgeSeconds: 3600, bindClient: true)
    static let binding = SessionBinding(resource: "/mcp", issuer: "https://as.example.com", subject: "alice", clientID: "c")
    static let sealedExample = sealer.seal("upstream-1", for: binding, now: 1_800_000_000)!
    static let proxies = TrustedProxies([CIDRBlock("10.0.0.0/8")!, CIDRBlock("fd00::/8")!])

    static func session(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        switch Self.sealer.open(text, expecting: Self.binding, now: 1_800_000_000) {
        case .success(let upstream): require(text == Self.sealedExample && upstream == "upstream-1", "a session id opened that was never sealed: \(text)")
        case .failure: break
        }
        // The input spliced into a real sealed id: authenticated, so it never opens.
        if !data.isEmpty {
            var mangled = Array(Self.sealedExample.utf8)
            let at = Int(data[0]) % mangled.count
            mangled.replaceSubrange(at..<min(mangled.count, at + data.count - 1), with: data.dropFirst())
            let candidate = String(decoding: mangled, as: UTF8.self)
            if candidate != Self.sealedExample, case .success = Self.sealer.open(candidate, expecting: Self.binding, now: 1_800_000_000) {
                require(false, "a mangled session id opened: \(candidate)")
            }
        }
        let fields = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let client = Self.proxies.clientAddress(peer: "10.0.0.1", forwardedFor: Array(fields.prefix(2)), forwarded: Array(fields.dropFirst(2)))
        require(client == "10.0.0.1" || IPAddress(client) != nil, "client address \(client) does not parse")
        if let block = CIDRBlock(text) {
            require(CIDRBlock(block.description)?.description == block.description, "CIDR \(block) does not round-trip")
            require(block.contains(block.network), "\(block) does not contain its network")
        }
        if let address = IPAddress(text) {
            require(IPAddress(address.description) == address, "address \(address) does not round-trip")
        }
    }

    /// The policy loader: any text is either a policy or a list of problems, never a crash.
    static func policy(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        _ = try? PolicyLoader.load(yaml: text, secrets: .empty)
    }

    /// Authorization-server answers: token endpoint, introspection, metadata documents.
    static func oauth(_ data: [UInt8]) {
        let bearer = IssuedToken.parse(status: 200, body: data)
        let bound = IssuedToken.parse(status: 200, body: data, dpopBound: true)
        // The upstream leg takes a DPoP token only when it asked for one, a Bearer one only when not.
        if case .success(let token) = bound { require(token.tokenType.lowercased() == "dpop", "a \(token.tokenType) token taken as DPoP-bound") }
        if case .success(let token) = bearer { require(token.tokenType.lowercased() == "bearer", "a \(token.tokenType) token taken as Bearer") }
        _ = IssuedToken.parse(status: 400, body: data)
        _ = Introspection.parse(body: data, requirements: self.requirements, now: 1_800_000_000, maxLifetimeSeconds: 300)
        _ = try? AuthorizationServerMetadata(json: data, expectedIssuer: "https://as.example.com")
        if let form = FormEncoding.decode(String(decoding: data, as: UTF8.self)) {
            require(FormEncoding.decode(FormEncoding.body(form)).map { $0.map { "\($0.0)=\($0.1)" } } == form.map { "\($0.0)=\($0.1)" }, "form round trip")
        }
    }
}

/// Builds the shared fixtures before the first input. LeakSanitizer (which libFuzzer runs
/// when an input allocates more than it frees) cannot see references Swift keeps in enum
/// payloads with tag bits set, so a fixture built lazily during an input would be reported
/// as leaked.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    _ = FuzzTarget.selected
    _ = FuzzTarget.resource
    _ = FuzzTarget.requirements
    _ = FuzzTarget.sealedExample
    _ = FuzzTarget.proxies
    return 0
}

/// libFuzzer's callback. Exported by name too: when the toolchain links libFuzzer's own
/// `main` (debug builds), that main calls it; otherwise ``FuzzMain`` hands over to the driver.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.selected.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Hands the command line to libFuzzer, which calls back with each input.
@main
enum FuzzMain {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) })
    }
}

extension FuzzTarget {
    /// From BOUNCER_FUZZ_TARGET, read once.
    static let selected: FuzzTarget = {
        guard let name = getenv("BOUNCER_FUZZ_TARGET").map({ String(cString: $0) }), let target = FuzzTarget(rawValue: name) else {
            fatalError("set BOUNCER_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return target
    }()
}
