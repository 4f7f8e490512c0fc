import BouncerCore
import Testing

/// The elicitation and sampling guard: what a server may ask of the client, in both forms
/// (a request on a stream, an `InputRequiredResult` entry), judged without channels or clocks.
@Suite("Elicitation and sampling guard")
struct ServerRequestGuardTests {
    static func elicitation(id: JSONValue = .number("5"), _ properties: [String: JSONValue]) -> JSONValue {
        .object([
            "jsonrpc": .string("2.0"), "id": id, "method": .string("elicitation/create"),
            "params": .object([
                "message": .string("Please fill in"),
                "requestedSchema": .object(["type": .string("object"), "properties": .object(properties)]),
            ]),
        ])
    }

    static func urlElicitation(_ url: String) -> JSONValue {
        .object([
            "jsonrpc": .string("2.0"), "id": .string("u1"), "method": .string("elicitation/create"),
            "params": .object(["mode": .string("url"), "message": .string("Sign in"), "url": .string(url), "elicitationId": .string("x")]),
        ])
    }

    static let password: [String: JSONValue] = ["password": .object(["type": .string("string")])]
    static let harmless: [String: JSONValue] = ["project": .object(["type": .string("string"), "description": .string("Which project?")])]

    static func review(_ message: JSONValue, _ policy: ServerRequestPolicy = .standard, admit: () -> Bool = { true }) -> [ServerRequestReview] {
        ServerRequestGuard.review(message, policy: policy, admit: admit)
    }

    @Test func aCredentialFormIsBlockedAndDeclinedUpstream() throws {
        let reviews = Self.review(Self.elicitation(Self.password))
        #expect(reviews.count == 1)
        let review = try #require(reviews.first)
        #expect(review.blocked == .credentialField)
        #expect(review.form == .stream)
        #expect(review.detail?.contains("requestedSchema.properties.password") == true)
        #expect(review.schema?["properties"]?["password"] != nil, "the schema goes to the audit record")
        let reply = try JSONParser().parse(Array(try #require(review.upstreamReply).utf8))
        #expect(reply == .object(["jsonrpc": .string("2.0"), "id": .number("5"), "result": .object(["action": .string("decline")])]))
    }

    @Test func aHarmlessFormPassesAndCountsAgainstTheRateLimit() {
        var asked = 0
        let reviews = Self.review(Self.elicitation(Self.harmless)) {
            asked += 1
            return true
        }
        #expect(reviews.map(\.blocked) == [nil])
        #expect(reviews.first?.upstreamReply == nil, "the client answers a request that passed")
        #expect(asked == 1)
        let limited = Self.review(Self.elicitation(Self.harmless)) { false }
        #expect(limited.map(\.blocked) == [.rateLimited])
        // A request blocked for its fields is not counted: the rate limit is not asked.
        _ = Self.review(Self.elicitation(Self.password)) {
            asked += 1
            return true
        }
        #expect(asked == 1)
    }

    @Test func theAuditedSchemaCarriesNoValues() throws {
        let properties: [String: JSONValue] = [
            "region": .object(["type": .string("string"), "default": .string("eu-secret-default"), "examples": .array([.string("ex")])]),
            "default": .object(["type": .string("string"), "const": .string("fixed")]),
        ]
        let schema = try #require(Self.review(Self.elicitation(properties)).first?.schema)
        #expect(!schema.serialized.contains("eu-secret-default") && !schema.serialized.contains("fixed") && !schema.serialized.contains("\"ex\""))
        #expect(schema["properties"]?["default"]?["type"] == .string("string"), "a field named default is a field")
    }

    @Test func credentialFieldsCanBeAllowedByPolicy() {
        let lenient = ServerRequestPolicy(allowCredentialFields: true)
        #expect(Self.review(Self.elicitation(Self.password), lenient).map(\.blocked) == [nil])
    }

    @Test(arguments: [
        ("https://login.example.com/authorize?state=1", nil),
        ("https://LOGIN.example.com:443/x#frag", nil),
        ("https://evil.example/authorize", ServerRequestReview.Block.urlOrigin),
        ("https://login.example.com@evil.example/", .malformed),
        ("https://evil.example?@login.example.com", .urlOrigin),
        ("https://login.example.com.evil.example/", .urlOrigin),
        ("http://login.example.com/", .urlOrigin),
        ("javascript:alert(1)", .malformed),
        ("https://login.example.com\\@evil.example", .malformed),
    ] as [(String, ServerRequestReview.Block?)])
    func urlModeGoesOnlyToAllowedOrigins(url: String, expected: ServerRequestReview.Block?) {
        let policy = ServerRequestPolicy(urlAllowedOrigins: ["https://login.example.com"])
        let review = Self.review(Self.urlElicitation(url), policy).first
        #expect(review?.blocked == expected, "\(url)")
        #expect(review?.upstreamReply != nil || expected == nil)
    }

    @Test func urlModeIsBlockedByDefault() {
        #expect(Self.review(Self.urlElicitation("https://login.example.com/")).map(\.blocked) == [.urlOrigin])
    }

    @Test func malformedElicitationsAreBlocked() {
        let noParams = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("1"), "method": .string("elicitation/create")])
        let noSchema = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("1"), "method": .string("elicitation/create"), "params": .object(["message": .string("hi")])])
        let oddMode = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("1"), "method": .string("elicitation/create"), "params": .object(["mode": .string("telepathy")])])
        for message in [noParams, noSchema, oddMode] {
            #expect(Self.review(message).map(\.blocked) == [.malformed])
        }
    }

    @Test func samplingIsDeniedAndRootsAllowedByDefault() throws {
        let sampling = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("9"), "method": .string("sampling/createMessage"), "params": .object([:])])
        let roots = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("10"), "method": .string("roots/list")])
        let denied = try #require(Self.review(sampling).first)
        #expect(denied.blocked == .samplingDenied)
        let reply = try JSONParser().parse(Array(try #require(denied.upstreamReply).utf8))
        #expect(reply["error"]?["code"] == .number("-32601"))
        #expect(reply["id"] == .number("9"))
        #expect(Self.review(roots).map(\.blocked) == [nil])
        let flipped = ServerRequestPolicy(sampling: .allow, roots: .deny)
        #expect(Self.review(sampling, flipped).map(\.blocked) == [nil])
        #expect(Self.review(roots, flipped).map(\.blocked) == [.rootsDenied])
    }

    @Test func otherMessagesAreNotServerRequests() {
        let ping = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("1"), "method": .string("ping")])
        let notification = JSONValue.object(["jsonrpc": .string("2.0"), "method": .string("elicitation/create"), "params": .object([:])])
        let response = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("1"), "result": .object(["content": .array([])])])
        for message in [ping, notification, response, .array([]), .string("x")] {
            #expect(Self.review(message).isEmpty)
        }
    }

    static func inputRequired(_ requests: [String: JSONValue]) -> JSONValue {
        .object([
            "jsonrpc": .string("2.0"), "id": .number("3"),
            "result": .object(["resultType": .string("input_required"), "inputRequests": .object(requests), "requestState": .string("opaque")]),
        ])
    }

    @Test func inputRequiredEntriesAreJudgedLikeStreamRequests() throws {
        let form = { (properties: [String: JSONValue]) -> JSONValue in
            .object(["method": .string("elicitation/create"), "params": .object(["message": .string("?"), "requestedSchema": .object(["type": .string("object"), "properties": .object(properties)])])])
        }
        let mixed = Self.review(Self.inputRequired(["a": form(Self.harmless), "b": form(Self.password), "c": .object(["method": .string("roots/list")])]))
        #expect(mixed.map(\.key) == ["a", "b", "c"])
        #expect(mixed.map(\.blocked) == [nil, .credentialField, nil])
        #expect(mixed.allSatisfy { $0.form == .inputRequired && $0.id == .number("3") && $0.upstreamReply == nil })
        #expect(mixed[1].clientMessage.contains("credential_field"))
        let stranger = Self.review(Self.inputRequired(["x": .object(["method": .string("tools/call")])]))
        #expect(stranger.map(\.blocked) == [.malformed])
    }

    // MARK: The inspector

    static let resource = try! PolicyLoader.load(yaml: responseTestPolicy(methods: "tools/call: []"), secrets: noSecrets).resources[0]

    static func text(_ value: JSONValue) -> [UInt8] { Array(value.serialized.utf8) }

    @Test func theInspectorDropsABlockedStreamRequestAndKeepsTheRest() {
        var inspector = ResponseInspector(for: nil, policy: Self.resource, granted: [], protocolVersion: "2025-11-25")
        #expect(inspector.inspect(Self.text(Self.elicitation(Self.password))) == .drop)
        #expect(inspector.inspect(Self.text(Self.elicitation(Self.harmless))) == .pass)
        let report = inspector.takeReport()
        #expect(report.serverRequests.map(\.blocked) == [.credentialField, nil])
        // In a batch only the blocked request goes.
        let batch = JSONValue.array([Self.elicitation(id: .number("1"), Self.password), Self.elicitation(id: .number("2"), Self.harmless)])
        guard case .replace(let kept) = inspector.inspect(Self.text(batch)) else {
            Issue.record("the batch was not rewritten")
            return
        }
        #expect((try? JSONParser().parse(Array(kept.utf8))) == .array([Self.elicitation(id: .number("2"), Self.harmless)]))
    }

    @Test func theInspectorTurnsARefusedInputRequiredResultIntoAnError() throws {
        let form = JSONValue.object(["method": .string("elicitation/create"), "params": .object(["message": .string("?"), "requestedSchema": .object(["properties": .object(Self.password)])])])
        var inspector = ResponseInspector(for: nil, policy: Self.resource, granted: [], protocolVersion: "2026-07-28")
        guard case .replace(let text) = inspector.inspect(Self.text(Self.inputRequired(["k": form]))) else {
            Issue.record("a credential request in an input_required result passed")
            return
        }
        let error = try JSONParser().parse(Array(text.utf8))
        #expect(error["id"] == .number("3"))
        #expect(error["error"]?["code"] == .number("-32003"))
        #expect(error["error"]?["message"]?.stringValue?.contains("credential_field") == true)
        #expect(!text.contains("opaque") && !text.contains("inputRequests"), "nothing of what was asked reaches the client")
    }

    @Test func escapedNamesAndUnreadableTextDoNotSlipPast() throws {
        let call = try JSONRPCBody.parse(Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#.utf8), maxDepth: 16)
        var inspector = ResponseInspector(for: call, policy: Self.resource, granted: [], protocolVersion: nil)
        // "method" spelled with an escape is still read (the prefilter sees the backslash).
        let escaped = #"{"jsonrpc":"2.0","id":1,"m\u0065thod":"elicitation/create","params":{"requestedSchema":{"properties":{"pin":{"type":"string"}}}}}"#
        #expect(inspector.inspect(Array(escaped.utf8)) == .drop)
        // Not strict JSON (a duplicate key a lenient parser would read, last one winning).
        let duplicated = #"{"jsonrpc":"2.0","id":1,"method":"ping","method":"elicitation/create","params":{}}"#
        #expect(inspector.inspect(Array(duplicated.utf8)) == .drop)
        let report = inspector.takeReport()
        #expect(report.unreadable == 1)
        // A plain response with neither is not even parsed.
        #expect(inspector.inspect(Array(#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#.utf8)) == .pass)
        #expect(inspector.inspect(Array(#"{"jsonrpc":"2.0","id":1,"result":"# .utf8)) == .pass, "a response the prefilter rules out passes as it is")
        // On the stream a GET opens any message may be a replayed list: unreadable text goes.
        var stream = ResponseInspector(for: nil, policy: Self.resource, granted: [], protocolVersion: nil)
        #expect(stream.inspect(Array(#"{"jsonrpc":"2.0","id":1,"result":"# .utf8)) == .drop)
    }

    @Test(arguments: [
        (#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}"#, false),
        (#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"method"}]}}"#, false),
        (#"{"jsonrpc":"2.0","id":1,"method":"elicitation/create"}"#, true),
        (#"{"id":1,"method":"sampling/createMessage"}"#, true),
        (#"{"id":1,"method":"roots/list"}"#, true),
        (#"{"id":1,"result":{"resultType":"input_required"}}"#, true),
        (#"{"method":"notifications/tools/list_changed"}"#, true),
        (#"{"id":1,"method":"elicitation\/create"}"#, true),
        ("{\"id\":1,\"method\":\"elicitation\u{C0}\u{AF}create\"}", true),
        ("data: {\"method\":\"sampling/createMessag", false),
    ] as [(String, Bool)])
    func thePrefilterParsesEverythingThatMayMatter(text: String, parsed: Bool) {
        var bytes = Array(text.utf8)
        if text.contains("\u{C0}") {
            // Not UTF-8: an overlong '/' a lenient decoder might accept.
            bytes = Array(#"{"id":1,"method":"elicitation"#.utf8) + [0xC0, 0xAF] + Array(#"create"}"#.utf8)
        }
        let inspector = ResponseInspector(for: nil, policy: Self.resource, granted: [], protocolVersion: nil)
        let post = ResponseInspector(for: try? JSONRPCBody.parse(Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#.utf8), maxDepth: 8),
                                     policy: Self.resource, granted: [], protocolVersion: nil)
        #expect(bytes.withUnsafeBytes { post.mayNeed($0) } == parsed, "\(text)")
        #expect(bytes.withUnsafeBytes { inspector.mayNeed($0) }, "the GET stream reads every message")
    }

    @Test func theStreamAGETOpensFiltersListsByTheirShape() throws {
        let policy = try PolicyLoader.load(yaml: responseTestPolicy(methods: "tools/list: []\ntools/call:\n  echo: [read]\n  wipe: [admin]"), secrets: noSecrets).resources[0]
        var inspector = ResponseInspector(for: nil, policy: policy, granted: ["read"], protocolVersion: nil)
        let replayed = JSONValue.object(["jsonrpc": .string("2.0"), "id": .number("4"), "result": .object(["tools": .array([
            .object(["name": .string("echo"), "inputSchema": .object([:])]), .object(["name": .string("wipe"), "inputSchema": .object([:])]),
        ])])])
        guard case .replace(let text) = inspector.inspect(Self.text(replayed)) else {
            Issue.record("a replayed list on the GET stream was not filtered")
            return
        }
        #expect(try JSONParser().parse(Array(text.utf8))["result"]?["tools"]?.arrayValue?.count == 1)
    }

    @Test func listChangedIsReported() {
        var inspector = ResponseInspector(for: nil, policy: Self.resource, granted: [], protocolVersion: nil)
        #expect(inspector.inspect(Array(#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.utf8)) == .pass)
        let first = inspector.takeReport()
        let second = inspector.takeReport()
        #expect(first.toolsChanged)
        #expect(!second.toolsChanged, "reported once")
    }

    // MARK: Rate limit

    @Test func theRateLimitIsARollingWindowPerKey() {
        var limiter = ServerRequestRateLimiter(window: 1000)
        // (key, limit, now) -> admitted
        let steps: [(String, Int, Int64, Bool)] = [
            ("s1", 2, 0, true), ("s1", 2, 10, true),
            ("s1", 2, 999, false),  // two in the last second
            ("s2", 2, 999, true),  // another session has its own
            ("s1", 2, 1000, true),  // the first one left the window
            ("s1", 2, 1005, false), ("s1", 2, 1011, true),
            ("s3", 0, 0, false),  // 0 refuses every elicitation
        ]
        for (key, limit, now, expected) in steps {
            let admitted = limiter.admit(key, limit: limit, now: now)
            #expect(admitted == expected, "\(key) at \(now)")
        }
    }

    @Test func theRateLimitForgetsTheLongestIdleKeyWhenFull() {
        var limiter = ServerRequestRateLimiter(maxKeys: 3, window: 1_000_000)
        var admitted: [Bool] = []
        for (index, key) in ["a", "b", "c"].enumerated() { admitted.append(limiter.admit(key, limit: 1, now: Int64(index))) }
        admitted.append(limiter.admit("a", limit: 1, now: 10))
        admitted.append(limiter.admit("d", limit: 1, now: 11))
        #expect(limiter.count == 3)
        // a was idle longest (its refusal at 10 is no use) and was forgotten for d.
        admitted.append(limiter.admit("a", limit: 1, now: 12))
        #expect(admitted == [true, true, true, false, true, true])
    }

    // MARK: Policy

    @Test func thePolicyKeysAndTheirProblems() throws {
        let yaml = responseTestPolicy(resource: """
            elicitation:
              allow_credential_fields: true
              rate_limit_per_session: 10
              url_allowed_origins: ["https://Login.Example.com/", "http://127.0.0.1:9000"]
            server_requests: { sampling: allow, roots: deny }
            """, methods: "tools/call: []")
        let policy = try PolicyLoader.load(yaml: yaml, secrets: noSecrets).resources[0].serverRequests
        #expect(policy == ServerRequestPolicy(allowCredentialFields: true, rateLimitPerSession: 10, urlAllowedOrigins: ["https://login.example.com", "http://127.0.0.1:9000"], sampling: .allow, roots: .deny))
        let defaults = try PolicyLoader.load(yaml: responseTestPolicy(methods: "tools/call: []"), secrets: noSecrets).resources[0]
        #expect(defaults.serverRequests == .standard && defaults.inspectResponses)
        #expect(try !PolicyLoader.load(yaml: responseTestPolicy(resource: "inspect_responses: false", methods: "tools/call: []"), secrets: noSecrets).resources[0].inspectResponses)
        for (bad, problem) in [
            ("elicitation: { url_allowed_origins: [\"http://evil.example\"] }", "url_allowed_origins"),
            ("elicitation: { url_allowed_origins: [\"https://x.example/path\"] }", "url_allowed_origins"),
            ("elicitation: { rate_limit_per_session: -1 }", "rate_limit_per_session"),
            ("elicitation: { allow_passwords: true }", "allow_passwords"),
            ("server_requests: { sampling: maybe }", "sampling"),
            ("server_requests: { tasks: allow }", "tasks"),
            ("inspect_responses: false\nelicitation: { rate_limit_per_session: 5 }", "has no effect with inspect_responses: false"),
            ("inspect_responses: false\nlist_filtering: true", "list_filtering"),
        ] {
            do {
                _ = try PolicyLoader.load(yaml: responseTestPolicy(resource: bad, methods: "tools/call: []"), secrets: noSecrets)
                Issue.record("accepted: \(bad)")
            } catch {
                #expect("\(error)".contains(problem), "\(bad): \(error)")
            }
        }
    }
}
