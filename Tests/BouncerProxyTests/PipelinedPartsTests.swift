import BouncerCore
import NIOCore
import Testing

@testable import BouncerProxy

/// The queue of pipelined request parts: in order, and no storage while nothing waits. A
/// connection is created for every client and may live for hours as an event stream; a queue
/// allocated up front cost 12.8 KB per connection (16 parts of a head and its facts), the
/// 5,000-stream RSS regression of issue 28.
@Suite("PipelinedParts")
struct PipelinedPartsTests {
    @Test func aNewQueueHoldsNoStorage() {
        let parts = PipelinedParts()
        #expect(parts.isEmpty)
        #expect(!parts.holdsStorage)
    }

    @Test func partsComeOutInTheOrderTheyArrivedAndTheStorageGoesWhenTheLastIsTaken() throws {
        var parts = PipelinedParts()
        parts.append(.body(ByteBuffer(string: "a")))
        parts.append(.body(ByteBuffer(string: "b")))
        parts.append(.end)
        #expect(parts.holdsStorage)
        var seen: [String] = []
        while let part = parts.popFirst() {
            switch part {
            case .body(let buffer): seen.append(String(buffer: buffer))
            case .end: seen.append("end")
            case .head: seen.append("head")
            }
        }
        #expect(seen == ["a", "b", "end"])
        #expect(parts.isEmpty)
        #expect(!parts.holdsStorage)
    }

    @Test func removingAllLetsTheStorageGo() {
        var parts = PipelinedParts()
        for _ in 0..<40 { parts.append(.end) }
        parts.removeAll()
        #expect(parts.isEmpty)
        #expect(!parts.holdsStorage)
        #expect(parts.popFirst().map { _ in 1 } == nil)
    }
}
