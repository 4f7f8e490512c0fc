import NIOCore
import Testing

@testable import BouncerProxy

/// A connection's head buffer, written into again once the last write let it go: no allocation
/// per response or upstream request, and never a byte of a buffer someone still holds.
@Suite("RecycledBuffer")
struct RecycledBufferTests {
    static func address(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
    }

    @Test func aBufferLetGoIsWrittenIntoAgain() {
        var recycled = RecycledBuffer()
        var first = recycled.buffer(capacity: 100, allocator: ByteBufferAllocator())
        first.writeString("HTTP/1.1 200 OK\r\n\r\n")
        let firstAddress = Self.address(first)
        recycled.keep(first)
        first = ByteBuffer()  // the channel wrote it and let it go
        var second = recycled.buffer(capacity: 100, allocator: ByteBufferAllocator())
        second.writeString("HTTP/1.1 204 No Content\r\n\r\n")
        #expect(Self.address(second) == firstAddress)
        #expect(String(buffer: second) == "HTTP/1.1 204 No Content\r\n\r\n")
    }

    @Test func aBufferStillHeldIsNeverWrittenInto() {
        var recycled = RecycledBuffer()
        var first = recycled.buffer(capacity: 100, allocator: ByteBufferAllocator())
        first.writeString("HTTP/1.1 200 OK\r\n\r\n")
        recycled.keep(first)
        // `first` is still queued on a slow client's channel.
        var second = recycled.buffer(capacity: 100, allocator: ByteBufferAllocator())
        second.writeString("HTTP/1.1 500 Internal Server Error\r\n\r\n")
        #expect(String(buffer: first) == "HTTP/1.1 200 OK\r\n\r\n")
        #expect(Self.address(second) != Self.address(first))
    }

    @Test func aLargeBufferIsNotKeptAndASmallOneGrowsWhenAskedForMore() {
        var recycled = RecycledBuffer()
        var large = recycled.buffer(capacity: RecycledBuffer.maxKeptCapacity + 1, allocator: ByteBufferAllocator())
        large.writeString("x")
        recycled.keep(large)
        #expect(!recycled.holdsBuffer)
        var small = recycled.buffer(capacity: 64, allocator: ByteBufferAllocator())
        small.writeString("y")
        recycled.keep(small)
        small = ByteBuffer()
        #expect(recycled.holdsBuffer)
        let grown = recycled.buffer(capacity: 2048, allocator: ByteBufferAllocator())
        #expect(grown.writableBytes >= 2048)
        #expect(grown.readableBytes == 0)
    }
}
