import BouncerCore
import Testing

/// Bad input gets an error, never a crash: mutated and random bytes through every parser that
/// sees attacker-controlled data. Deterministic (seeded), so a failure reproduces.
@Suite("Hostile input")
struct HostileInputTests {
    /// SplitMix64: small, seedable, good enough to shuffle bytes.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let seeds: [[UInt8]] = [
        Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_issues","arguments":{"a":[1,2.5e3,"\u00e9",true,null]}}}"#.utf8),
        Array(#"[{"jsonrpc":"2.0","id":"x","method":"ping"},{"jsonrpc":"2.0","id":2,"result":{}}]"#.utf8),
        Array(#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.utf8),
    ]

    func mutate(_ input: [UInt8], _ random: inout Generator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...6, using: &random) {
            let position = Int.random(in: 0..<max(bytes.count, 1), using: &random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &random)
            case 1 where !bytes.isEmpty: bytes.remove(at: position)
            case 2: bytes.insert(Array("{}[]\",:\\0".utf8).randomElement(using: &random)!, at: min(position, bytes.count))
            default: bytes += bytes.prefix(Int.random(in: 0...8, using: &random))
            }
        }
        return bytes
    }

    @Test func jsonRPCParserSurvivesMutations() {
        var random = Generator(state: 42)
        var refused = 0
        for round in 0..<20_000 {
            let input = self.mutate(Self.seeds[round % Self.seeds.count], &random)
            do {
                let body = try JSONRPCBody.parse(input, maxDepth: 16)
                for message in body.messages { _ = try? message.target() }
            } catch {
                refused += 1
                #expect(error.status == 400)
            }
        }
        #expect(refused > 1_000, "mutations are mostly refused")
    }

    @Test func deepNestingIsRefusedNotRecursedInto() {
        let bomb = Array(repeating: UInt8(ascii: "["), count: 100_000)
        #expect(throws: JSONRPCFailure.self) { try JSONRPCBody.parse(bomb, maxDepth: 64) }
    }

    @Test func tokenParserSurvivesGarbage() {
        var random = Generator(state: 7)
        let valid = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2FzIiwiYXVkIjoiaHR0cHM6Ly9yIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln"
        for _ in 0..<20_000 {
            let token = String(decoding: self.mutate(Array(valid.utf8), &random), as: UTF8.self)
            _ = try? CompactJWS(token)
            _ = BearerTokenExtractor.extract(authorization: ["Bearer " + token])
        }
    }

    @Test func policyLoaderSurvivesMutations() {
        var random = Generator(state: 99)
        let yaml = Array(PolicyLoaderTests.valid.utf8)
        for _ in 0..<500 {
            let text = String(decoding: self.mutate(yaml, &random), as: UTF8.self)
            _ = try? PolicyLoader.load(yaml: text, secrets: PolicyLoaderTests.secrets)
        }
    }

    @Test func headerValuesAreDecodedSafely() {
        var random = Generator(state: 3)
        for _ in 0..<5_000 {
            let value = String(decoding: self.mutate(Array("=?base64?aMOpbGxv?=".utf8), &random), as: UTF8.self)
            _ = MCPHeaderRules.decodeHeaderValue(value)
            _ = BearerTokenExtractor.carriesAccessToken(formEncoded: value)
            _ = FormEncoding.decode(value)
        }
    }
}
