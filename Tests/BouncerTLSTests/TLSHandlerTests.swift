import BouncerTLS
import BouncerTestSupport
import NIOCore
import NIOEmbedded
import NIOTLS
import Testing

/// Records what reaches the plaintext side of a TLS handler.
final class PlaintextRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var received = ByteBuffer()
    var events: [TLSUserEvent] = []
    var errors: [any Error] = []
    var readCompletes = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.readCompletes += 1
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent { self.events.append(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.errors.append(error)
    }
}

/// Counts reads that reach the transport.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var reads = 0

    func read(context: ChannelHandlerContext) {
        self.reads += 1
        context.read()
    }
}

/// A client and a server `EmbeddedChannel` whose ciphertext is pumped between them in memory.
struct TLSPair {
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientHandler: TLSHandler
    let serverHandler: TLSHandler
    let clientRecorder = PlaintextRecorder()
    let serverRecorder = PlaintextRecorder()

    init(server serverContext: TLSContext, client clientContext: TLSContext, serverName: String? = "localhost", serverFront: (any ChannelHandler)? = nil) throws {
        self.clientHandler = TLSHandler(context: clientContext, serverHostname: serverName)
        self.serverHandler = TLSHandler(context: serverContext)
        self.client = EmbeddedChannel()
        self.server = EmbeddedChannel()
        try self.client.pipeline.syncOperations.addHandlers([self.clientHandler, self.clientRecorder])
        if let serverFront { try self.server.pipeline.syncOperations.addHandler(serverFront) }
        try self.server.pipeline.syncOperations.addHandlers([self.serverHandler, self.serverRecorder])
        try self.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Moves ciphertext both ways until neither side has anything to send.
    @discardableResult
    func pump() throws -> Int {
        var moved = 0
        var progress = true
        while progress {
            progress = false
            while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
                moved += bytes.readableBytes
                progress = true
                if self.server.isActive { try self.server.writeInbound(bytes) }
            }
            while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
                moved += bytes.readableBytes
                progress = true
                if self.client.isActive { try self.client.writeInbound(bytes) }
            }
        }
        return moved
    }

    func handshake() throws {
        try self.pump()
    }
}

@Suite("TLS handler, back to back in memory")
struct TLSHandlerTests {
    let certificates = TestCertificates.shared

    func serverContext(_ pair: TestCertificates.Pair? = nil, minimum: TLSConfiguration.Version = .tls12, sni: [String: TestCertificates.Pair] = [:],
                       clientVerification: TLSConfiguration.ClientVerification = .none) throws -> TLSContext {
        let pair = pair ?? self.certificates.ecdsaServer
        return try TLSContext(configuration: .server(
            certificate: .init(certificateChain: pair.certificate, privateKey: pair.key),
            sniCertificates: sni.mapValues { .init(certificateChain: $0.certificate, privateKey: $0.key) },
            minimumVersion: minimum,
            clientCA: clientVerification == .none ? nil : self.certificates.caCertificate,
            clientVerification: clientVerification
        ))
    }

    func clientContext(minimum: TLSConfiguration.Version = .tls12, maximum: TLSConfiguration.Version = .tls13, alpn: [String] = ["http/1.1"], trust: String? = nil, certificate: TestCertificates.Pair? = nil) throws -> TLSContext {
        var configuration = TLSConfiguration.client(
            trustRoots: .file(trust ?? self.certificates.caCertificate),
            certificate: certificate.map { .init(certificateChain: $0.certificate, privateKey: $0.key) },
            minimumVersion: minimum,
            applicationProtocols: alpn
        )
        configuration.maximumVersion = maximum
        return try TLSContext(configuration: configuration)
    }

    @Test("handshake and data with each key type and version", arguments: [
        ("rsa", TLSConfiguration.Version.tls12), ("rsa", .tls13), ("ecdsa", .tls12), ("ecdsa", .tls13),
    ])
    func handshake(keyType: String, version: TLSConfiguration.Version) throws {
        let pair = try TLSPair(
            server: try self.serverContext(keyType == "rsa" ? self.certificates.rsaServer : self.certificates.ecdsaServer, minimum: version),
            client: try self.clientContext(maximum: version)
        )
        try pair.handshake()
        #expect(pair.clientRecorder.events == [.handshakeCompleted(negotiatedProtocol: "http/1.1")])
        #expect(pair.serverRecorder.events == [.handshakeCompleted(negotiatedProtocol: "http/1.1")])
        #expect(pair.serverHandler.protocolVersion == (version == .tls13 ? "TLSv1.3" : "TLSv1.2"))
        #expect(pair.serverHandler.cipher?.isEmpty == false)
        try pair.client.writeAndFlush(ByteBuffer(string: "hello over TLS")).wait()
        try pair.pump()
        #expect(String(buffer: pair.serverRecorder.received) == "hello over TLS")
        #expect(pair.clientRecorder.errors.isEmpty && pair.serverRecorder.errors.isEmpty)
    }

    @Test func aTLS13OnlyServerRefusesATLS12OnlyClient() throws {
        let pair = try TLSPair(server: try self.serverContext(minimum: .tls13), client: try self.clientContext(maximum: .tls12))
        try pair.handshake()
        #expect(!pair.serverRecorder.errors.isEmpty)
        #expect(!pair.server.isActive)
    }

    @Test func writesBeforeTheHandshakeAreBufferedThenDelivered() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext())
        let written = pair.client.writeAndFlush(ByteBuffer(string: "early"))
        var done = false
        written.assumeIsolated().whenComplete { _ in done = true }
        #expect(!done)
        let clientHello = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == nil, "only the ClientHello went out")
        try pair.server.writeInbound(clientHello)
        try pair.handshake()
        try written.wait()
        #expect(String(buffer: pair.serverRecorder.received) == "early")
    }

    @Test("small writes between flushes go out as one record, and each write's promise completes", arguments: [TLSConfiguration.Version.tls12, .tls13])
    func smallWritesAreCoalescedIntoOneRecord(version: TLSConfiguration.Version) throws {
        let pair = try TLSPair(server: try self.serverContext(minimum: version), client: try self.clientContext(minimum: version, maximum: version))
        try pair.handshake()
        while try pair.server.readOutbound(as: ByteBuffer.self) != nil {}  // post-handshake messages (TLS 1.3 tickets)
        let head = pair.server.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
        let body = pair.server.write(ByteBuffer(string: "hello"))
        var flushed = false
        head.assumeIsolated().whenComplete { _ in flushed = true }
        #expect(try pair.server.readOutbound(as: ByteBuffer.self) == nil, "nothing leaves before the flush")
        try pair.server.writeAndFlush(ByteBuffer(string: "!")).wait()
        try head.wait()
        try body.wait()
        #expect(flushed)
        var wire = ByteBuffer()
        while var bytes = try pair.server.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&bytes) }
        // Count TLS records: 5-byte headers (type, version, length).
        var records: [UInt8] = []
        var scan = wire
        while let type = scan.readInteger(as: UInt8.self), scan.readInteger(as: UInt16.self) != nil, let length = scan.readInteger(as: UInt16.self) {
            records.append(type)
            scan.moveReaderIndex(forwardBy: Int(length))
        }
        #expect(records == [23], "one application-data record for three writes")
        try pair.client.writeInbound(wire)
        #expect(String(buffer: pair.clientRecorder.received) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!")
    }

    @Test func largeWritesAreSplitIntoRecordsAndReassembled() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext())
        try pair.handshake()
        var payload = ByteBuffer()
        for index in 0..<(256 * 1024) { payload.writeInteger(UInt8(truncatingIfNeeded: index &* 31)) }
        try pair.server.writeAndFlush(payload).wait()
        var chunks = 0
        while let bytes = try pair.server.readOutbound(as: ByteBuffer.self) {
            chunks += 1
            try pair.client.writeInbound(bytes)
        }
        #expect(pair.clientRecorder.received == payload)
        #expect(pair.clientRecorder.received.readableBytes == 256 * 1024)
    }

    @Test func alpnPicksTheServersProtocolOrNone() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext(alpn: ["h2", "http/1.1"]))
        try pair.handshake()
        #expect(pair.clientHandler.negotiatedProtocol == "http/1.1")
        let none = try TLSPair(server: try self.serverContext(), client: try self.clientContext(alpn: ["h2"]))
        try none.handshake()
        #expect(none.clientRecorder.events == [.handshakeCompleted(negotiatedProtocol: nil)])
    }

    @Test func sniSelectsTheCertificate() throws {
        let server = try self.serverContext(sni: ["other.example.test": self.certificates.otherServer])
        let other = try TLSPair(server: server, client: try self.clientContext(), serverName: "other.example.test")
        try other.handshake()
        #expect(other.clientRecorder.errors.isEmpty, "the client verified other.example.test's certificate")
        #expect(other.clientRecorder.events.count == 1)
        // Without a matching SNI entry the default certificate is served, which is not valid
        // for other.example.test... but is for localhost.
        let fallback = try TLSPair(server: server, client: try self.clientContext(), serverName: "localhost")
        try fallback.handshake()
        #expect(fallback.clientRecorder.errors.isEmpty)
    }

    @Test func wrongHostnameIsRefused() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext(), serverName: "wrong.example.test")
        try pair.handshake()
        let error = try #require(pair.clientRecorder.errors.first as? TLSError)
        #expect(error.code == .handshakeFailed)
        #expect(error.details.contains { $0.contains("certificate verification") || $0.contains("certificate verify failed") })
        #expect(!pair.client.isActive)
    }

    @Test func ipAddressIsVerifiedAgainstTheIPSAN() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext(), serverName: "127.0.0.1")
        try pair.handshake()
        #expect(pair.clientRecorder.errors.isEmpty)
        let wrong = try TLSPair(server: try self.serverContext(), client: try self.clientContext(), serverName: "127.0.0.2")
        try wrong.handshake()
        #expect(!wrong.clientRecorder.errors.isEmpty)
    }

    @Test func untrustedIssuerIsRefused() throws {
        let pair = try TLSPair(server: try self.serverContext(self.certificates.untrustedServer), client: try self.clientContext())
        try pair.handshake()
        #expect((pair.clientRecorder.errors.first as? TLSError)?.code == .handshakeFailed)
    }

    @Test func clientCertificatesRequiredAndExposed() throws {
        let server = try self.serverContext(clientVerification: .required)
        let without = try TLSPair(server: server, client: try self.clientContext())
        try without.handshake()
        #expect(!without.serverRecorder.errors.isEmpty || !without.clientRecorder.errors.isEmpty)
        let with = try TLSPair(server: server, client: try self.clientContext(certificate: self.certificates.client))
        try with.handshake()
        try with.client.writeAndFlush(ByteBuffer(string: "x")).wait()
        try with.pump()
        #expect(with.serverRecorder.errors.isEmpty)
        #expect((with.serverHandler.peerCertificate?.count ?? 0) > 100)
    }

    @Test func closeNotifyBothWays() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext())
        try pair.handshake()
        let closed = pair.client.close()
        try pair.pump()
        try closed.wait()
        #expect(!pair.client.isActive)
        #expect(!pair.server.isActive)
        #expect(pair.serverRecorder.events.contains(.shutdownCompleted))
        #expect(pair.serverRecorder.errors.isEmpty && pair.clientRecorder.errors.isEmpty)
    }

    @Test func eofWithoutCloseNotifyIsAnUncleanShutdown() throws {
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext())
        try pair.handshake()
        pair.server.pipeline.fireChannelInactive()
        #expect((pair.serverRecorder.errors.first as? TLSError)?.code == .uncleanShutdown)
    }

    @Test func handshakeTimeout() throws {
        let server = try TLSContext(configuration: .server(certificate: .init(certificateChain: self.certificates.ecdsaServer.certificate, privateKey: self.certificates.ecdsaServer.key)))
        let channel = EmbeddedChannel()
        let recorder = PlaintextRecorder()
        try channel.pipeline.syncOperations.addHandlers([TLSHandler(context: server, handshakeTimeout: .seconds(5)), recorder])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect((recorder.errors.first as? TLSError)?.code == .handshakeTimeout)
        #expect(!channel.isActive)
    }

    @Test func readsFollowThePipelinesDemand() throws {
        let counter = ReadCounter()
        let pair = try TLSPair(server: try self.serverContext(), client: try self.clientContext(), serverFront: counter)
        try pair.server.setOption(.autoRead, value: false).wait()
        // Handshake records arrive although nobody asked: no read is issued on our own.
        try pair.handshake()
        #expect(counter.reads == 0)
        // The pipeline asks for data once; the next records carry plaintext, so exactly that
        // one read reaches the transport.
        pair.server.read()
        #expect(counter.reads == 1)
        try pair.client.writeAndFlush(ByteBuffer(string: "data")).wait()
        try pair.pump()
        #expect(String(buffer: pair.serverRecorder.received) == "data")
        #expect(counter.reads == 1)
        // A read answered by records without plaintext (a TLS 1.3 key update, an alert...) is
        // re-issued so the pipeline still gets its data.
        pair.server.read()
        try pair.server.writeInbound(ByteBuffer(bytes: [0x17, 0x03, 0x03, 0x00]))  // an incomplete record
        #expect(counter.reads == 3)
    }

    @Test func badConfigurationIsReported() {
        #expect(throws: TLSError.self) {
            try TLSContext(configuration: .server(certificate: .init(certificateChain: "/nonexistent.pem", privateKey: "/nonexistent.key")))
        }
        // A key that does not belong to the certificate.
        #expect(throws: TLSError.self) {
            try TLSContext(configuration: .server(certificate: .init(certificateChain: self.certificates.rsaServer.certificate, privateKey: self.certificates.ecdsaServer.key)))
        }
    }
}
