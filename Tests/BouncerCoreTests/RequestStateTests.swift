import BouncerCore
import Crypto
import Testing

/// A bridged call's `requestState` (issue 26, item 3): sealed to its caller, request, replica
/// and expiry; every refusal; keys rotated; never mistaken for a session id.
@Suite("Request state of parked calls")
struct RequestStateTests {
    static let k1 = try! SessionKey(id: "k1", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    static let k2 = try! SessionKey(id: "k2", secret: "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=")
    let alice = SessionBinding(resource: "/jira/mcp", issuer: "https://as.example", subject: "alice", clientID: "c")
    var call: ParkedCall { ParkedCall(binding: self.alice, replica: "gw-1", parkID: "p-42", requestDigest: "tools/call echo #1", expiresAt: 1_000) }

    func open(_ state: String, sealer: RequestStateSealer = RequestStateSealer(keys: [Self.k1]), caller: SessionBinding? = nil,
              digest: String = "tools/call echo #1", replica: String = "gw-1", now: Int64 = 900) -> Result<ParkedCall, RequestStateRefusal> {
        sealer.open(state, caller: caller ?? self.alice, requestDigest: digest, replica: replica, now: now)
    }

    @Test func aStateOpensForItsCallersRetryOnly() throws {
        let state = try #require(RequestStateSealer(keys: [Self.k1]).seal(self.call))
        #expect(state.hasPrefix("r1.k1.") && !state.contains("alice") && !state.contains("p-42"))
        #expect(try self.open(state).get() == self.call)
        let mallory = SessionBinding(resource: "/jira/mcp", issuer: "https://as.example", subject: "mallory", clientID: "c")
        #expect(self.open(state, caller: mallory) == .failure(.otherCaller))
        #expect(self.open(state, caller: SessionBinding(resource: "/other/mcp", issuer: "https://as.example", subject: "alice", clientID: "c")) == .failure(.otherCaller))
        #expect(self.open(state, now: 1_001) == .failure(.expired))
        #expect(self.open(state, digest: "tools/call delete_repo #1") == .failure(.otherRequest))
        #expect(self.open(state, replica: "gw-2") == .failure(.otherReplica("gw-1")))
    }

    @Test func tamperedForeignAndMalformedStatesAreRefused() throws {
        let state = try #require(RequestStateSealer(keys: [Self.k1]).seal(self.call))
        var bytes = Array(state.utf8)
        let middle = bytes.count - 20
        bytes[middle] = bytes[middle] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(self.open(String(decoding: bytes, as: UTF8.self)) == .failure(.forged))
        #expect(self.open(state, sealer: RequestStateSealer(keys: [Self.k2])) == .failure(.unknownKey("k1")))
        for garbage in ["", "r1", "r1.k1.", "r1.k1.!!!", "x.k1.AAAA", String(repeating: "a", count: 5000), "r1.k 1.AAAA"] {
            #expect(self.open(garbage) == .failure(.malformed), "\(garbage.prefix(20))")
        }
        // A session id sealed under the same key is not a request state, nor the other way round.
        let session = try #require(SessionSealer(keys: [Self.k1], maxAgeSeconds: 3600, bindClient: false).seal("up-1", for: self.alice, now: 900))
        #expect(self.open(session) == .failure(.forged))
        #expect(SessionSealer(keys: [Self.k1], maxAgeSeconds: 3600, bindClient: false).open(state, expecting: self.alice, now: 900) != .success("up-1"))
    }

    @Test func aRotatedKeyStillOpensWhatItSealed() throws {
        let old = try #require(RequestStateSealer(keys: [Self.k1]).seal(self.call))
        let rotated = RequestStateSealer(keys: [Self.k2, Self.k1])
        #expect(try self.open(old, sealer: rotated).get() == self.call)
        #expect(try #require(rotated.seal(self.call)).hasPrefix("r1.k2."))
    }
}
