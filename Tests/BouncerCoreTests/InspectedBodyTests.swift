import BouncerCore
import NIOCore
import Testing

/// How an inspected body is read, as a trace: reads in, pieces and outcomes out, no channels.
@Suite("Inspected body")
struct InspectedBodyTests {
    /// Feeds `reads` and returns the pieces handed out (`e:` an event, `b:` bytes as they came)
    /// with each read's outcome.
    func feed(_ body: inout InspectedBody, _ reads: [String], stopAt: Int? = nil) -> (pieces: [String], outcomes: [InspectedBody.Received]) {
        var pieces: [String] = []
        var outcomes: [InspectedBody.Received] = []
        for read in reads {
            outcomes.append(body.receive(ByteBuffer(string: read)) { piece in
                switch piece {
                case .bytes(let bytes): pieces.append("b:" + String(buffer: bytes))
                case .event(let event): pieces.append("e:" + String(buffer: event))
                }
                return stopAt.map { pieces.count < $0 } ?? true
            })
        }
        return (pieces, outcomes)
    }

    @Test func aBodyNothingReadsIsRelayedAsItComes() {
        var body = InspectedBody()
        #expect(body.isPassThrough && !body.isHeld)
        let (pieces, outcomes) = self.feed(&body, ["{\"a\":", "1}"])
        #expect(pieces == ["b:{\"a\":", "b:1}"] && outcomes == [.relayed, .relayed])
        #expect(body.end() == nil)
    }

    @Test func aJSONBodyIsHeldWholeUntilItsEnd() {
        var body = InspectedBody.json(limit: 16)
        #expect(body.isHeld)
        let (pieces, outcomes) = self.feed(&body, ["{\"result\":", "{}}"])
        #expect(pieces.isEmpty && outcomes == [.held, .held])
        #expect(body.end().map { String(buffer: $0) } == "{\"result\":{}}")
        #expect(body.end() == nil, "handed out once")
    }

    @Test func aJSONBodyOverItsLimitGoesNowhere() {
        var body = InspectedBody.json(limit: 8)
        let (pieces, outcomes) = self.feed(&body, ["12345", "6789", "0"])
        #expect(pieces.isEmpty && outcomes == [.held, .tooLarge(limit: 8), .stopped])
        #expect(body.end() == nil)
    }

    @Test func eventsGoOutWholeEachAsItEnds() {
        var body = InspectedBody.events(maxEventBytes: 64)
        let (pieces, outcomes) = self.feed(&body, ["data: 1\n\nda", "ta: 2\n", "\n", "data: 3\r\n\r", "\n"])
        #expect(pieces == ["e:data: 1\n\n", "e:data: 2\n\n", "e:data: 3\r\n\r", "b:\n"])
        #expect(outcomes == [.relayed, .relayed, .relayed, .relayed, .relayed])
        #expect(body.end() == nil)
    }

    @Test func anEventOverTheLimitEndsTheStreamAfterTheEventsBeforeIt() {
        var body = InspectedBody.events(maxEventBytes: 16)
        let (pieces, outcomes) = self.feed(&body, ["data: ok\n\ndata: " + String(repeating: "x", count: 20), "data: late\n\n"])
        #expect(pieces == ["e:data: ok\n\n"] && outcomes == [.tooLarge(limit: 16), .stopped])
    }

    @Test func theConsumerCanStopTheStream() {
        var body = InspectedBody.events(maxEventBytes: 64)
        let (pieces, outcomes) = self.feed(&body, ["data: 1\n\ndata: 2\n\ndata: 3\n\n", "data: 4\n\n"], stopAt: 2)
        #expect(pieces == ["e:data: 1\n\n", "e:data: 2\n\n"] && outcomes == [.stopped, .stopped])
    }

    @Test func anEventCutByTheEndIsDropped() {
        var body = InspectedBody.events(maxEventBytes: 64)
        let (pieces, _) = self.feed(&body, ["data: 1\n\ndata: par"])
        #expect(pieces == ["e:data: 1\n\n"])
        #expect(body.end() == nil)
    }
}
