// The floor the benchmark measures mcp-bouncer against: the least an HTTP/1.1 reverse proxy built
// on SwiftNIO's own HTTP codecs does per request. No authentication, no policy, no header
// rewriting; one keep-alive upstream connection per client connection, on the client's event
// loop; every request part forwarded as it arrives and every response part sent back the same way.
// Not a product: it trusts the upstream and the client, has no timeouts and no limits beyond
// NIO's. Its throughput against nginx's is what SwiftNIO's HTTP/1 machinery allows on this host;
// the gateway's against it is what authentication, policy and the gateway's own framing cost.
// With --raw it does not parse HTTP at all: each client connection gets its own upstream
// connection and bytes are copied across as they arrive, the least any SwiftNIO proxy can do.
// With --codec it parses HTTP with mcp-bouncer's own codec (BouncerCore/HTTP1, issue 28) instead
// of NIO's: each request and response head and its body framing are read from the bytes in one
// handler per side, and the bytes are relayed as they are (no rewriting): what a proxy on that
// codec costs before it does any work of its own.
// With --tls CERT KEY the client side is TLS through mcp-bouncer's own TLSHandler (BouncerTLS),
// as the gateway's is.
//
//     nio-floor --listen PORT --upstream PORT [--threads N] [--raw | --codec] [--tls CERT KEY]

#if canImport(Glibc)
import Glibc
#endif
import BouncerCore
import BouncerTLS
import NIOCore
import NIOHTTP1
import NIOPosix

@main
enum NIOFloor {
    static func main() throws {
        var listen: Int?
        var upstream: Int?
        var threads = 1
        var raw = false
        var codec = false
        var tls: TLSContext?
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let flag = arguments.next() {
            if flag == "--raw" {
                raw = true
                continue
            }
            if flag == "--codec" {
                codec = true
                continue
            }
            if flag == "--tls" {
                guard let certificate = arguments.next(), let key = arguments.next() else { usage("--tls needs a certificate and a key file") }
                tls = try TLSContext(configuration: .server(certificate: .init(certificateChain: certificate, privateKey: key)))
                continue
            }
            guard let value = arguments.next().flatMap(Int.init) else { usage("\(flag) needs a number") }
            switch flag {
            case "--listen": listen = value
            case "--upstream": upstream = value
            case "--threads": threads = value
            default: usage("unknown option \(flag)")
            }
        }
        guard let listen, let upstream, threads > 0 else { usage("--listen and --upstream are required") }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let relayBytes = raw
        let ownCodec = codec
        let serverTLS = tls
        let upstreamAddress = try SocketAddress(ipAddress: "127.0.0.1", port: upstream)
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let serverTLS {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: serverTLS))
                    }
                    if relayBytes || ownCodec {
                        try channel.pipeline.syncOperations.addHandler(RawClientSide(upstream: upstreamAddress, codec: ownCodec))
                    } else {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false)
                        try channel.pipeline.syncOperations.addHandler(ClientSide(upstream: upstreamAddress))
                    }
                }
            }
            .bind(host: "127.0.0.1", port: listen)
            .wait()
        print("nio-floor listening on \(server.localAddress.map { "\($0)" } ?? "?"), upstream 127.0.0.1:\(upstream), \(threads) loop(s)\(raw ? ", raw bytes" : codec ? ", mcp-bouncer's codec" : "")\(tls == nil ? "" : ", TLS")")
        try server.closeFuture.wait()
    }

    static func usage(_ problem: String) -> Never {
        print("nio-floor: \(problem)\nusage: nio-floor --listen PORT --upstream PORT [--threads N] [--raw | --codec] [--tls CERT KEY]")
        exit(2)
    }
}

/// Connects to the upstream on the client connection's event loop: `handlers` fills the new
/// pipeline (given the client's context, to relay to), `connected` gets the channel on that
/// loop, and a failed connection closes the client.
func connectUpstream(
    _ address: SocketAddress,
    for client: ChannelHandlerContext,
    handlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations, ChannelHandlerContext) throws -> Void,
    connected: @escaping (any Channel) -> Void
) {
    let bound = NIOLoopBound(client, eventLoop: client.eventLoop)
    ClientBootstrap(group: client.eventLoop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try handlers(channel.pipeline.syncOperations, bound.value) }
        }
        .connect(to: address)
        .assumeIsolated()
        .whenComplete { result in
            switch result {
            case .success(let channel): connected(channel)
            case .failure: bound.value.close(promise: nil)
            }
        }
}

/// One client connection: opens its upstream connection on first use and forwards each request
/// part to it; parts that arrive while it connects wait in order.
final class ClientSide: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let upstreamAddress: SocketAddress
    private var upstream: (any Channel)?
    private var connecting = false
    private var waiting: [HTTPClientRequestPart] = []

    init(upstream: SocketAddress) {
        self.upstreamAddress = upstream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part: HTTPClientRequestPart
        switch self.unwrapInboundIn(data) {
        case .head(let head): part = .head(head)
        case .body(let body): part = .body(.byteBuffer(body))
        case .end(let trailers): part = .end(trailers)
        }
        if let upstream = self.upstream {
            self.forward(part, to: upstream)
            return
        }
        self.waiting.append(part)
        guard !self.connecting else { return }
        self.connecting = true
        connectUpstream(self.upstreamAddress, for: context) { pipeline, client in
            try pipeline.addHTTPClientHandlers()
            try pipeline.addHandler(UpstreamSide(client: client))
        } connected: { channel in
            self.upstream = channel
            for part in self.waiting { self.forward(part, to: channel) }
            self.waiting = []
        }
    }

    private func forward(_ part: HTTPClientRequestPart, to upstream: any Channel) {
        if case .end = part {
            upstream.pipeline.syncOperations.writeAndFlush(NIOAny(part), promise: nil)
        } else {
            upstream.pipeline.syncOperations.write(NIOAny(part), promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.upstream?.close(promise: nil)
        context.fireChannelInactive()
    }
}

/// The upstream connection: each response part goes straight back to the client.
final class UpstreamSide: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let client: ChannelHandlerContext

    init(client: ChannelHandlerContext) {
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.client.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        case .body(let body):
            self.client.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        case .end(let trailers):
            self.client.writeAndFlush(NIOAny(HTTPServerResponsePart.end(trailers)), promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.client.close(promise: nil)
    }
}

/// --raw: one upstream connection per client connection, opened when the client connects;
/// bytes are relayed both ways unparsed, flushed once per read burst.
final class RawClientSide: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let upstreamAddress: SocketAddress
    private var upstream: (any Channel)?
    private var waiting: [ByteBuffer] = []
    /// --codec: requests framed with mcp-bouncer's codec before they are relayed.
    private var framing: CodecFraming<HTTP1RequestParser>?

    init(upstream: SocketAddress, codec: Bool = false) {
        self.upstreamAddress = upstream
        if codec {
            self.framing = CodecFraming(parser: HTTP1RequestParser(), parse: { $0.parse($1) }, framing: { $0.framing }, reset: { $0.reset() })
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        let codec = self.framing != nil
        connectUpstream(self.upstreamAddress, for: context) { pipeline, client in
            try pipeline.addHandler(RawUpstreamSide(client: client, codec: codec))
        } connected: { channel in
            self.upstream = channel
            for bytes in self.waiting { channel.write(bytes, promise: nil) }
            channel.flush()
            self.waiting = []
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        guard self.framing != nil else { return self.relay(bytes) }
        if !self.framing!.receive(&bytes, relay: self.relay) { context.close(promise: nil) }
    }

    private func relay(_ bytes: ByteBuffer) {
        if let upstream = self.upstream {
            upstream.pipeline.syncOperations.write(NIOAny(bytes), promise: nil)
        } else {
            self.waiting.append(bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.upstream?.pipeline.syncOperations.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.upstream?.close(promise: nil)
        context.fireChannelInactive()
    }
}

final class RawUpstreamSide: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let client: ChannelHandlerContext
    /// --codec: responses framed with mcp-bouncer's codec (the floor's upstream answers POSTs
    /// and GETs, never HEAD).
    private var framing: CodecFraming<HTTP1ResponseParser>?

    init(client: ChannelHandlerContext, codec: Bool = false) {
        self.client = client
        if codec {
            self.framing = CodecFraming(parser: HTTP1ResponseParser(), parse: { $0.parse($1, requestMethod: .POST) }, framing: { $0.framing }, reset: { $0.reset() })
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.framing != nil else { return self.client.write(data, promise: nil) }
        var bytes = self.unwrapInboundIn(data)
        if !self.framing!.receive(&bytes, relay: { self.client.write(NIOAny($0), promise: nil) }) { context.close(promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.client.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.client.close(promise: nil)
    }
}

/// --codec: messages framed with mcp-bouncer's codec, in the relay's one handler per side. `Side` parses a
/// head with `parse` (a request parser on the client side, a response parser upstream), then
/// its body with an `HTTP1BodyReader`, and hands each piece (the head's bytes, body slices) to
/// `relay` as it goes; pipelined messages are read one after another from the same bytes.
struct CodecFraming<Parser> {
    var parser: Parser
    let parse: (inout Parser, UnsafeRawBufferPointer) -> HTTP1HeadProgress
    let framing: (Parser) -> HTTP1Framing
    let reset: (inout Parser) -> Void
    var pending = ByteBuffer()
    var body: HTTP1BodyReader?

    /// Takes `bytes`; calls `relay` with each piece ready. False when the stream is malformed.
    mutating func receive(_ bytes: inout ByteBuffer, relay: (ByteBuffer) -> Void) -> Bool {
        if self.pending.readableBytes == 0 {
            swap(&self.pending, &bytes)
        } else {
            self.pending.writeBuffer(&bytes)
        }
        while self.pending.readableBytes > 0 {
            if var reader = self.body {
                let event = self.pending.withUnsafeReadableBytes { reader.read($0, from: 0) }
                self.body = reader
                switch event {
                case .failure: return false
                case .success(let (.data(range), _)):
                    relay(self.pending.readSlice(length: range.upperBound)!)
                case .success(let (.needMore, next)):
                    // Framing bytes the reader took (a chunk's size line) go with the body.
                    if next > 0 { relay(self.pending.readSlice(length: next)!) }
                    return true
                case .success(let (.end, next)):
                    if next > 0 { relay(self.pending.readSlice(length: next)!) }
                    self.body = nil
                }
            } else {
                let progress = self.pending.withUnsafeReadableBytes { self.parse(&self.parser, $0) }
                switch progress {
                case .failed: return false
                case .incomplete: return true
                case .complete(let length):
                    relay(self.pending.readSlice(length: length)!)
                    self.body = HTTP1BodyReader(self.framing(self.parser))
                    self.reset(&self.parser)
                }
            }
        }
        self.pending.clear()
        return true
    }
}
