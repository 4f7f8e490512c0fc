import BouncerCore
import NIOHTTP1

/// A client's request head as the gateway keeps it: the codec's ranges over the head's bytes
/// (``HTTP1RequestReader/Head``), and the three values every request reads as Strings (its
/// method, version and target). Other fields are read from the ranges where a decision needs
/// one (``RequestHeadFacts``), and copied upstream byte for byte (``UpstreamRequestHead``).
struct ClientHead {
    let wire: HTTP1RequestReader.Head
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
}
