import NIOCore

/// The parts of requests a client pipelined behind the one being answered, in the order they
/// arrived. No storage while nothing waits: every client connection has one, an event stream
/// keeps its connection for hours, and a queue of heads with their facts allocated up front
/// would cost each connection kilobytes it almost never uses. The storage goes again once the
/// last part is taken. (The connection's machine bounds how many requests wait.)
struct PipelinedParts {
    private var parts: CircularBuffer<ClientPart>?

    var isEmpty: Bool { self.parts?.isEmpty ?? true }

    /// Whether the queue holds storage (for the tests: none while empty).
    var holdsStorage: Bool { self.parts != nil }

    mutating func append(_ part: ClientPart) {
        if self.parts == nil { self.parts = CircularBuffer(initialCapacity: 4) }
        self.parts!.append(part)
    }

    mutating func popFirst() -> ClientPart? {
        guard let part = self.parts?.popFirst() else { return nil }
        if self.parts!.isEmpty { self.parts = nil }
        return part
    }

    mutating func removeAll() {
        self.parts = nil
    }
}
