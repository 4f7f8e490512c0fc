import BouncerCore
import NIOCore
import NIOHTTP1

/// A client's request head as the gateway keeps it: the codec's ranges over the head's bytes
/// (``HTTP1RequestReader/Head``), and the three values every request reads as Strings (its
/// method, version and target). Other fields are read from the ranges where a decision needs
/// one (``RequestHeadFacts``), and copied upstream byte for byte (``UpstreamRequestHead``).
struct ClientHead {
    private(set) var wire: HTTP1RequestReader.Head
    let method: HTTPMethod
    let version: HTTPVersion
    let uri: String

    init(_ wire: HTTP1RequestReader.Head) {
        self.wire = wire
        self.method = HTTPMethod(rawValue: wire.method.name)
        self.version = wire.version == .http11 ? .http1_1 : .http1_0
        self.uri = wire.string(wire.target)
    }

    var isKeepAlive: Bool { self.wire.isKeepAlive }

    /// The head's bytes are a slice of the read they came in, which they keep alive; a request
    /// that turns into a long-lived stream copies them into a buffer of their own size, so an
    /// idle stream holds its head and not the read.
    mutating func compact() {
        self.wire.bytes = self.wire.bytes.compacted()
    }
}

extension ByteBuffer {
    /// These bytes in storage of their own size when they are a small slice of a larger read
    /// (which they would otherwise keep alive), else themselves.
    func compacted() -> ByteBuffer {
        guard self.storageCapacity > 2 * self.readableBytes else { return self }
        var own = ByteBufferAllocator().buffer(capacity: self.readableBytes)
        own.writeImmutableBuffer(self)
        return own
    }
}
