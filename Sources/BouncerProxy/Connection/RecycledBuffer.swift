import NIOCore

/// The buffer a connection writes its heads into (the responses to a client, the requests to
/// an upstream), kept from one to the next: once the channel has written the last one and let
/// it go, the next is written into the same storage, with no allocation. A buffer the channel
/// still holds (a slow peer) is never written into: ByteBuffer copies on write, so the next
/// head gets storage of its own. Large buffers (a small body copied after its head) are not kept,
/// so an idle connection holds at most ``maxKeptCapacity`` bytes.
struct RecycledBuffer {
    static let maxKeptCapacity = 4096
    private var kept: ByteBuffer?

    /// Whether a buffer is kept (for the tests).
    var holdsBuffer: Bool { self.kept != nil }

    /// An empty buffer with room for at least `capacity` bytes.
    mutating func buffer(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = self.kept.take() else { return allocator.buffer(capacity: capacity) }
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Keeps `buffer` (about to be written) for the next head.
    mutating func keep(_ buffer: ByteBuffer) {
        self.kept = buffer.capacity <= Self.maxKeptCapacity ? buffer : nil
    }
}
