import BouncerCore
import Crypto
import CryptoExtras
import Testing
import Foundation

@Suite("RFC 8785 canonical JSON and RFC 3339 time")
struct CanonicalJSONTests {
    func canonical(_ text: String) throws -> String {
        CanonicalJSON.serialize(try JSONParser().parse(Array(text.utf8)))
    }

    /// RFC 8785 Appendix B and 3.2.2.3: numbers as ECMAScript writes the double they denote.
    @Test(arguments: [
        ("0", "0"), ("-0", "0"), ("1.0", "1"), ("4.50", "4.5"), ("2e-3", "0.002"), ("0.000001", "0.000001"),
        ("1e-7", "1e-7"), ("1E3", "1000"), ("1e21", "1e+21"), ("1e20", "100000000000000000000"),
        ("333333333.33333329", "333333333.3333333"), ("1E30", "1e+30"), ("-1.5e-10", "-1.5e-10"),
        ("9007199254740993", "9007199254740992"), ("295147905179352830000", "295147905179352830000"),
        ("5e-324", "5e-324"), ("1.7976931348623157e308", "1.7976931348623157e+308"), ("123456789012", "123456789012"),
    ])
    func numbers(_ input: String, _ expected: String) {
        #expect(CanonicalJSON.number(input) == expected)
    }

    /// Integer literals short enough to be exact doubles are written as they stand, without
    /// the double's round trip: the same text the round trip gives, for every such literal
    /// (and the literals just past the fast path's bounds, which take the round trip).
    @Test func shortIntegersAreTheirOwnCanonicalForm() {
        var literals = ["0", "-0", "7", "-7", "10", "999999999999999", "-999999999999999", "1000000000000000", "9007199254740993", "00", "007", "-01", "1.0", "1e2", "-"]
        var generator = SystemRandomNumberGenerator()
        for digits in 1...16 {
            for _ in 0..<200 {
                let value = UInt64.random(in: 0..<UInt64(pow(10, Double(digits))), using: &generator)
                literals += ["\(value)", "-\(value)"]
            }
        }
        for literal in literals {
            var fast: [UInt8] = []
            CanonicalJSON.append(.number(literal), to: &fast)
            #expect(String(decoding: fast, as: UTF8.self) == CanonicalJSON.number(literal), "\(literal)")
        }
    }

    /// Hex digits (lower case, two per byte, high nibble first) by every way they are written.
    @Test func hexDigitsAreWrittenTheSameEveryWay() {
        for count in [0, 1, 7, 8, 16, 32, 33] {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255) }
            let expected = bytes.map { String(format: "%02x", $0) }.joined()
            #expect(Hex.encode(bytes) == expected)
            var raw: [UInt8] = [0x41]
            bytes.withUnsafeBytes { Hex.append($0, to: &raw) }
            #expect(raw == [0x41] + Array(expected.utf8))
        }
        let digest = SHA256.hash(data: Array("abc".utf8))
        var out: [UInt8] = []
        Hex.append(digest, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var word: [UInt8] = []
        Hex.append(UInt64(0x0123_4567_89AB_CDEF), to: &word)
        #expect(String(decoding: word, as: UTF8.self) == "0123456789abcdef")
    }

    /// RFC 8785 3.2.3: members sorted by UTF-16 code units (the emoji's surrogates sort
    /// before U+FB33, which Unicode scalar order would put after).
    @Test func membersSortByUTF16CodeUnits() throws {
        let text = #"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#
        let keys = try #require(try JSONParser().parse(Array(text.utf8)).objectValue).keys
        #expect(CanonicalJSON.sortedKeys(keys) == ["\r", "1", "\u{80}", "ö", "€", "😀", "\u{FB33}"])
    }

    @Test func stringsEscapeOnlyWhatTheSchemeEscapes() throws {
        #expect(try self.canonical(#"{"b":"\u0041\/\u00e9\b\f\u001f\"\\","a":[1.0,true,null]}"#) == "{\"a\":[1,true,null],\"b\":\"A/é\\b\\f\\u001f\\\"\\\\\"}")
        // Whitespace and member order do not matter; values do.
        #expect(try self.canonical(#" { "x" : 1 , "y" : [ ] } "#) == #"{"x":1,"y":[]}"#)
    }

    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"), (1_764_554_888_123, "2025-12-01T02:08:08.123Z"),
        (951_782_400_999, "2000-02-29T00:00:00.999Z"), (-1, "1969-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"), (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
    ])
    func rfc3339(_ milliseconds: Int64, _ expected: String) {
        #expect(RFC3339.format(millisecondsSinceEpoch: milliseconds) == expected)
    }
}

/// Audit records, the hash chain, checkpoints and `verify`, without files: lines are strings.
@Suite("Audit trail: records, chain, checkpoints, verification")
struct AuditChainTests {
    static let key = Curve25519.Signing.PrivateKey()
    static let otherKey = Curve25519.Signing.PrivateKey()
    static let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVlLXRoYXQtaXMtc2VjcmV0"

    static func request(_ index: Int, arguments: String = #"{"title":"x","api_key":"k-secret-123"}"#) -> AuditEntry {
        var request = AuditRequest(requestID: "c1-\(index)", httpMethod: "POST", peer: "127.0.0.1:5000")
        request.resource = "/jira/mcp"
        request.subject = "alice"
        request.clientID = "agent"
        request.issuer = "https://as.example"
        request.token = AuditDigestSource(Self.token)
        request.session = AuditDigestSource("session-1234")
        request.describe(try! JSONRPCBody.parse(Array(#"{"jsonrpc":"2.0","id":\#(index),"method":"tools/call","params":{"name":"create_issue","arguments":\#(arguments)}}"#.utf8), maxDepth: 16))
        request.decision = .allowed
        request.outcome = .forwarded
        request.status = 200
        request.bytesIn = 120
        request.bytesOut = 340
        request.durationNanoseconds = 12_345_678
        request.upstreamNanoseconds = 10_000_000
        request.upstreamCredential = .tokenExchange(audience: "jira-backend", dpopKey: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        request.protocolVersion = "2025-11-25"
        request.traceID = RequestTrace(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?.traceID
        return .request(request)
    }

    /// `count` records (with checkpoints every `every` when signed), as lines without newlines.
    static func lines(_ count: Int, signer: AuditSigner? = AuditSigner(key: key), every: Int = 3, arguments: AuditArgumentsMode = .hash, finish: Bool = true) -> [String] {
        var chain = AuditChain(formatter: AuditRecordFormatter(arguments: arguments), signer: signer, checkpointEvery: every)
        var text = ""
        for index in 1...count { text += chain.append(self.request(index), now: 1_764_554_888_000 + Int64(index)) }
        if finish { text += chain.checkpoint(now: 1_764_554_899_000) }
        return text.split(separator: "\n").map(String.init)
    }

    static func verify(_ files: [(String, [String])], key: Curve25519.Signing.PublicKey? = key.publicKey) -> Result<AuditVerifier, AuditVerifier.Failure> {
        var verifier = AuditVerifier(publicKey: key)
        for (name, lines) in files {
            verifier.beginFile(name)
            for (index, line) in lines.enumerated() {
                if let failure = verifier.verify(line: Array(line.utf8), number: index + 1) { return .failure(failure) }
            }
        }
        if let failure = verifier.finish() { return .failure(failure) }
        return .success(verifier)
    }

    static func failure(_ lines: [String], key: Curve25519.Signing.PublicKey? = key.publicKey) -> AuditVerifier.Failure? {
        if case .failure(let failure) = self.verify([("audit.jsonl", lines)], key: key) { return failure }
        return nil
    }

    /// What an attacker without the signing key can do: recompute every hash after an edit.
    static func rechain(_ lines: [String]) -> [String] {
        var prev: String?
        return lines.map { line in
            guard case .object(var members) = try! JSONParser().parse(Array(line.utf8)) else { return line }
            members["hash"] = nil
            if let prev {
                members["prev"] = .string(prev)
                if members["event"] == .string("checkpoint") { members["head"] = .string(prev) }
            }
            let hash = AuditChain.hash(CanonicalJSON.bytes(.object(members)))
            prev = hash
            members["hash"] = .string(hash)
            return JSONValue.object(members).serialized
        }
    }

    @Test func anIntactSignedChainVerifies() throws {
        let lines = Self.lines(7)
        // 7 records, checkpoints after 3, 6 and at the end.
        #expect(lines.count == 10)
        let verifier = try Self.verify([("a", lines)]).get()
        #expect(verifier.records == 10)
        #expect(verifier.checkpoints == 3)
        // Without a key: the chain alone.
        #expect(throws: Never.self) { try Self.verify([("a", lines)], key: nil).get() }
    }

    @Test func recordsCarryTheSchemaAndNoSecret() throws {
        let line = Self.lines(1, signer: nil)[0]
        let record = try #require(try JSONParser().parse(Array(line.utf8)).objectValue)
        for key in ["v", "seq", "ts", "event", "request_id", "resource", "peer", "subject", "client_id", "issuer", "token_id", "mcp_method", "target",
                    "decision", "status", "bytes_in", "bytes_out", "duration_ms", "upstream_ms", "upstream_credential", "upstream_audience", "upstream_dpop_key", "session",
                    "protocol_version", "trace_id", "arguments_sha256", "prev", "hash"] {
            #expect(record[key] != nil, "missing \(key)")
        }
        #expect(record["v"] == .number("1"))
        #expect(record["seq"] == .number("1"))
        #expect(record["ts"] == .string("2025-12-01T02:08:08.001Z"))
        #expect(record["event"] == .string("request"))
        #expect(record["target"] == .string("create_issue"))
        #expect(record["duration_ms"] == .number("12.345"))
        #expect(record["upstream_credential"] == .string("token_exchange"))
        #expect(record["prev"] == .string(AuditChain.genesis))
        let expectedTokenID = String(Hex.encode(SHA256.hash(data: Array(Self.token.utf8))).prefix(16))
        #expect(record["token_id"] == .string(expectedTokenID))
        #expect(record["session"]?.stringValue?.count == 16)
        // The token, its signature part, the session id and the argument values never appear.
        for secret in [Self.token, "c2lnbmF0dXJlLXZhbHVlLXRoYXQtaXMtc2VjcmV0", "session-1234", "k-secret-123"] {
            #expect(!line.contains(secret))
        }
        let canonicalArguments = #"{"api_key":"k-secret-123","title":"x"}"#
        #expect(record["arguments_sha256"] == .string(Hex.encode(SHA256.hash(data: Array(canonicalArguments.utf8)))))
    }

    /// Request records are written with their members in a fixed order, not sorted: every shape
    /// (each optional member present or not, strings that need escapes, each arguments mode)
    /// must come out exactly in RFC 8785 form, hashed as such.
    @Test func everyShapeOfRequestRecordIsWrittenInCanonicalForm() throws {
        var random = SplitMix64(seed: 8785)
        let strings = ["alice", "", "quote \" and \\ backslash", "tab\tnew\nline\u{01}", "ünïcödé ✓ 𝄞", "https://as.example/tenant"]
        func maybe(_ value: String) -> String? { random.next() % 3 == 0 ? nil : value }
        func pick() -> String { strings[Int(random.next() % UInt64(strings.count))] }
        for mode in AuditArgumentsMode.allCases {
            var chain = AuditChain(formatter: AuditRecordFormatter(arguments: mode), signer: nil)
            var verifier = AuditVerifier(publicKey: nil)
            verifier.beginFile("shapes")
            for index in 1...300 {
                var request = AuditRequest(requestID: "c\(index)", httpMethod: random.next() % 2 == 0 ? "POST" : "GET", peer: pick())
                request.resource = maybe(pick())
                request.subject = maybe(pick())
                request.clientID = maybe(pick())
                request.issuer = maybe(pick())
                request.token = random.next() % 3 == 0 ? nil : (random.next() % 2 == 0 ? AuditDigestSource(pick()) : AuditDigestSource(digest: random.next()))
                request.session = random.next() % 2 == 0 ? nil : AuditDigestSource(pick())
                request.mcpMethod = maybe("tools/call")
                request.target = maybe(pick())
                if random.next() % 2 == 0 {
                    request.arguments = .object(["z": .array([.number("1.50"), .number("2e3"), .number("-0.0")]), "a": .object([pick(): .string(pick())]), "token": .string("Bearer x")])
                }
                request.batchSize = random.next() % 4 == 0 ? Int(random.next() % 10) : nil
                request.decision = random.next() % 2 == 0 ? .allowed : .denied
                request.outcome = [.forwarded, .refused, .upstreamError, .clientClosed, .connectionClosed][Int(random.next() % 5)]
                request.reason = maybe("insufficient_scope")
                request.status = Int(random.next() % 600)
                request.bytesIn = Int(random.next() % 100_000)
                request.bytesOut = Int(random.next() % 100_000)
                request.durationNanoseconds = Int64(random.next() % 10_000_000_000)
                request.upstreamNanoseconds = random.next() % 2 == 0 ? nil : Int64(random.next() % 10_000_000_000)
                request.upstreamCredential = [.none, .static, .tokenExchange(audience: nil), .tokenExchange(audience: pick()), .tokenExchange(audience: pick(), dpopKey: pick())][Int(random.next() % 5)]
                request.protocolVersion = maybe("2025-11-25")
                request.traceID = random.next() % 2 == 0 ? nil : RequestTrace(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?.traceID
                request.clientCertificate = maybe(pick())

                let line = Array(chain.append(.request(request), now: 1_764_554_888_000 + Int64(random.next() % 100_000_000)).utf8.dropLast())
                var members = try #require(try JSONParser().parse(line).objectValue, "\(String(decoding: line, as: UTF8.self))")
                let hash = try #require(members.removeValue(forKey: "hash")?.stringValue)
                let canonical = CanonicalJSON.bytes(.object(members))
                let suffix = Array(#","hash":"\#(hash)"}"#.utf8)
                #expect(Array(line.dropLast(suffix.count)) + [UInt8(ascii: "}")] == canonical, "\(String(decoding: line, as: UTF8.self))")
                #expect(AuditChain.hash(canonical) == hash)
                #expect(verifier.verify(line: line, number: index) == nil)
                #expect(members["subject"]?.stringValue == request.subject)
                #expect(members["target"]?.stringValue == request.target)
                #expect(members["peer"]?.stringValue == request.peer)
            }
        }
    }

    @Test func argumentsModes() throws {
        let none = try #require(try JSONParser().parse(Array(Self.lines(1, signer: nil, arguments: .none)[0].utf8)).objectValue)
        #expect(none["arguments"] == nil && none["arguments_sha256"] == nil)
        let arguments = #"{"title":"x","API-Key":"k1","nested":{"password":"p","note":"Bearer abc"},"list":[{"client_secret":"s"}],"count":3}"#
        var chain = AuditChain(formatter: AuditRecordFormatter(arguments: .full), signer: nil)
        let line = chain.append(Self.request(1, arguments: arguments), now: 0)
        let record = try #require(try JSONParser().parse(Array(line.utf8)).objectValue)
        #expect(record["arguments"]?.serialized == #"{"API-Key":"[redacted]","count":3,"list":[{"client_secret":"[redacted]"}],"nested":{"note":"[redacted]","password":"[redacted]"},"title":"x"}"#)
        #expect(record["arguments_sha256"] == nil)
    }

    @Test func theSecretKeyHeuristic() {
        for key in ["password", "Password", "db_passwd", "apiKey", "x-api-key", "AccessToken", "refresh_token", "client.secret", "Authorization", "aws_credentials", "privateKey", "set-cookie"] {
            #expect(AuditRedaction.isSecretKey(key), "\(key)")
        }
        for key in ["title", "author", "description", "path", "query", "count", "tokens_used_estimate_id"] where key != "tokens_used_estimate_id" {
            #expect(!AuditRedaction.isSecretKey(key), "\(key)")
        }
        #expect(AuditRedaction.looksLikeCredential(Self.token))
        #expect(AuditRedaction.looksLikeCredential("basic dXNlcjpwYXNz"))
        #expect(!AuditRedaction.looksLikeCredential("a.b.c"))
        #expect(!AuditRedaction.looksLikeCredential("hello world"))
    }

    @Test func aDigestSourceNeverPrintsItsValue() {
        let source = AuditDigestSource("s3cr3t")
        #expect("\(source)" == "[digested]")
        #expect(String(describing: source) == "[digested]")
    }

    // MARK: Tampering: each kind is found at its line

    @Test func anEditedLineFailsAtThatLine() throws {
        var lines = Self.lines(5)
        lines[1] = lines[1].replacingOccurrences(of: "\"status\":200", with: "\"status\":201")
        let failure = try #require(Self.failure(lines))
        #expect(failure.kind == .edited && failure.line == 2)
    }

    @Test func aDeletedLineBreaksTheChainAtTheNext() throws {
        var lines = Self.lines(5)
        lines.remove(at: 1)
        let failure = try #require(Self.failure(lines))
        #expect(failure.kind == .chainBroken && failure.line == 2)
    }

    @Test func anInsertedLineBreaksTheChain() throws {
        var lines = Self.lines(5)
        lines.insert(lines[0], at: 2)
        let failure = try #require(Self.failure(lines))
        #expect(failure.kind == .chainBroken && failure.line == 3)
    }

    @Test func swappedLinesBreakTheChain() throws {
        var lines = Self.lines(5)
        lines.swapAt(1, 2)
        let failure = try #require(Self.failure(lines))
        #expect(failure.kind == .chainBroken && failure.line == 2)
    }

    @Test func truncationAfterTheLastCheckpointIsFound() throws {
        // 7 records with a checkpoint after every 3: cut after line 8 (the second checkpoint
        // is line 8), keeping record 7 unsigned.
        let lines = Array(Self.lines(7)[0..<9])
        let failure = try #require(Self.failure(lines))
        #expect(failure.kind == .unsignedTail && failure.line == 9)
        // The chain alone cannot tell.
        #expect(Self.failure(lines, key: nil) == nil)
        // A line cut in the middle is malformed.
        var cut = Self.lines(3)
        cut[cut.count - 1] = String(cut[cut.count - 1].prefix(40))
        #expect(Self.failure(cut)?.kind == .malformed)
    }

    @Test func aRechainedEditIsCaughtByTheSignature() throws {
        var lines = Self.lines(5)
        lines[1] = lines[1].replacingOccurrences(of: "\"subject\":\"alice\"", with: "\"subject\":\"mallory\"")
        let forged = Self.rechain(lines)
        // The chain alone is satisfied: that is what the signature is for.
        #expect(Self.failure(forged, key: nil) == nil)
        let failure = try #require(Self.failure(forged))
        #expect(failure.kind == .badSignature && failure.line == 4)
    }

    @Test func aForgedCheckpointSignatureFails() throws {
        var lines = Self.lines(3)
        let signer = AuditSigner(key: Self.otherKey)
        // A signature by another key under the right key id, with every hash recomputed.
        guard case .object(var members) = try JSONParser().parse(Array(lines[3].utf8)) else { Issue.record("not an object"); return }
        members["signature"] = .string(signer.sign(headSeq: 3, head: members["head"]!.stringValue!))
        lines[3] = JSONValue.object(members).serialized
        let failure = try #require(Self.failure(Self.rechain(lines)))
        #expect(failure.kind == .badSignature && failure.line == 4)
    }

    @Test func theWrongPublicKeyIsNamed() throws {
        let failure = try #require(Self.failure(Self.lines(3), key: Self.otherKey.publicKey))
        #expect(failure.kind == .wrongKey && failure.line == 4)
        #expect(failure.message.contains(AuditSigner(key: Self.key).keyID))
    }

    // MARK: Continuation

    @Test func aRestartContinuesTheChainAcrossFiles() throws {
        let first = Self.lines(4)
        let position = try #require(AuditChainPosition(lastLine: Array(first.last!.utf8)))
        #expect(position.seq == Int64(first.count))
        var chain = AuditChain(formatter: AuditRecordFormatter(arguments: .hash), signer: AuditSigner(key: Self.key), checkpointEvery: 100, resumingAfter: position)
        var text = chain.append(.gateway(.start, ["version": .string("test")]), now: 5)
        text += chain.append(Self.request(9), now: 6)
        text += chain.checkpoint(now: 7)
        let second = text.split(separator: "\n").map(String.init)
        // In one file (a restart appends) and across two (a reopen after rotation).
        let verifier = try Self.verify([("a", first + second)]).get()
        #expect(verifier.records == first.count + 3)
        #expect(throws: Never.self) { try Self.verify([("a", first), ("b", second)]).get() }
        // Out of order, the files break at the first line of the one that does not follow.
        guard case .failure(let failure) = Self.verify([("b", second), ("a", first)]) else { Issue.record("verified"); return }
        #expect(failure.file == "a" && failure.line == 1 && failure.kind == .chainBroken)
        // A file that starts a new chain (a gateway started without its previous file) only
        // verifies on its own, never as the continuation of another.
        let fresh = Self.lines(2)
        #expect(throws: Never.self) { try Self.verify([("c", fresh)]).get() }
        guard case .failure(let restarted) = Self.verify([("a", first), ("c", fresh)]) else { Issue.record("verified"); return }
        #expect(restarted.file == "c" && restarted.line == 1 && restarted.message.contains("new chain"))
    }

    @Test func checkpointsComeByCountAndByTime() {
        var chain = AuditChain(formatter: AuditRecordFormatter(arguments: .none), signer: AuditSigner(key: Self.key), checkpointEvery: 1000, checkpointIntervalMilliseconds: 10_000)
        _ = chain.append(.gateway(.start, [:]), now: 1_000)
        #expect(!chain.checkpointDue(now: 10_999))
        #expect(chain.checkpointDue(now: 11_000))
        #expect(chain.checkpoint(now: 11_000).contains("\"event\":\"checkpoint\""))
        #expect(!chain.checkpointDue(now: 99_000))
        // Nothing to sign: no checkpoint.
        #expect(chain.checkpoint(now: 99_000).isEmpty)
        // Every record, with checkpoint_every 1.
        var every = AuditChain(formatter: AuditRecordFormatter(arguments: .none), signer: AuditSigner(key: Self.key), checkpointEvery: 1)
        #expect(every.append(.dropped(count: 3), now: 0).split(separator: "\n").count == 2)
        // Unsigned chains never checkpoint.
        var unsigned = AuditChain(formatter: AuditRecordFormatter(arguments: .none), signer: nil, checkpointEvery: 1)
        #expect(unsigned.append(.dropped(count: 3), now: 0).split(separator: "\n").count == 1)
        #expect(!unsigned.checkpointDue(now: .max))
    }

    @Test func gatewayEventsCannotOverwriteChainMembers() throws {
        var chain = AuditChain(formatter: AuditRecordFormatter(arguments: .none), signer: nil)
        let line = chain.append(.gateway(.reload, ["seq": .number("99"), "hash": .string("x"), "what": .string("tls")]), now: 0)
        let record = try #require(try JSONParser().parse(Array(line.utf8)).objectValue)
        #expect(record["seq"] == .number("1"))
        #expect(record["what"] == .string("tls"))
        #expect(Self.failure([String(line.dropLast())], key: nil) == nil)
    }

    /// An X25519 key has the same 32 bytes in the same PKCS#8 shape; it is not a signing key.
    @Test func aKeyAgreementKeyIsNotASigningKey() {
        let x25519 = Curve25519.KeyAgreement.PrivateKey().pemRepresentation
        #expect(throws: AuditKeyError(.notEd25519, "")) { try AuditSigner(pem: x25519) }
        #expect(throws: AuditKeyError(.notEd25519, "")) { try AuditSigner.publicKey(pem: Curve25519.KeyAgreement.PrivateKey().publicKey.pemRepresentation) }
    }

    @Test func keysRoundTripThroughPEM() throws {
        let signer = AuditSigner(key: Self.key)
        let reread = try AuditSigner(pem: signer.privateKeyPEM)
        #expect(reread.keyID == signer.keyID)
        let publicKey = try AuditSigner.publicKey(pem: AuditSigner.publicKeyPEM(signer.publicKey))
        #expect(publicKey.rawRepresentation == signer.publicKey.rawRepresentation)
        #expect(throws: AuditKeyError(.notPEM, "")) { try AuditSigner(pem: "not a key") }
        // A P-256 key in PKCS#8 is not Ed25519.
        let p256 = P256.Signing.PrivateKey().pemRepresentation
        #expect(throws: AuditKeyError(.notEd25519, "")) { try AuditSigner(pem: p256) }
    }
}

@Suite("W3C trace context")
struct RequestTraceTests {
    func facts(_ fields: [(String, String)]) -> RequestHeadFacts {
        var facts = RequestHeadFacts(target: "/mcp")
        for (name, value) in fields { facts.observe(name: name, value: value) }
        return facts
    }

    @Test func aValidTraceparentIsKeptAndForwardedAsItIs() throws {
        var random = SplitMix64(seed: 1)
        let trace = RequestTrace.resolve(self.facts([("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]), using: &random)
        #expect(trace.replacement == nil)
        #expect(Hex.encode(trace.traceIDBytes) == "4bf92f3577b34da6a3ce929d0e0e4736")
    }

    @Test(arguments: [
        [], [("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")], [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")],
        [("traceparent", "garbage")], [("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")],
        [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("traceparent", "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
    ])
    func otherwiseANewTraceStarts(_ fields: [(String, String)]) throws {
        var random = SplitMix64(seed: 7)
        let trace = RequestTrace.resolve(self.facts(fields), using: &random)
        let replacement = try #require(trace.replacement)
        // A well-formed traceparent naming the trace the audit record gets.
        let parsed = try #require(RequestTrace(traceparent: replacement))
        #expect(parsed.traceIDBytes == trace.traceIDBytes)
        #expect(replacement.utf8.count == 55 && replacement.hasPrefix("00-") && replacement.hasSuffix("-00"))
        #expect(trace.traceIDBytes != [UInt8](repeating: 0, count: 16))
    }

    @Test func theUpstreamGetsTheReplacementInsteadOfTheClientsTraceFields() {
        let facts = self.facts([("Host", "gw"), ("traceparent", "bad"), ("TraceState", "a=1"), ("X-Other", "1")])
        let resource = try! PolicyLoader.load(yaml: PolicyLoaderTests.valid, secrets: PolicyLoaderTests.secrets).resources[0]
        var added: [(String, String)] = []
        Enforcement.upstreamHeaders(
            from: [(name: "Host", value: "gw"), (name: "traceparent", value: "bad"), (name: "TraceState", value: "a=1"), (name: "X-Other", value: "1")], facts: facts, resource: resource, peer: "192.0.2.1",
            publicURL: try! CanonicalURI("https://mcp.example.com"), bodyLength: 0, isPOST: true, upstreamToken: nil, traceparent: "00-new"
        ) { added.append(($0, $1)) }
        #expect(added.filter { $0.0.lowercased() == "traceparent" }.map(\.1) == ["00-new"])
        #expect(!added.contains { $0.0.lowercased() == "tracestate" })
        #expect(added.contains { $0.0 == "X-Other" })
    }
}
