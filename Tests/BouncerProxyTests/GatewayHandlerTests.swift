import BouncerCore
import BouncerTestSupport
import Logging
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// The handler alone in an `EmbeddedChannel`: every path that is decided before a token is
/// verified (those need keys and sockets; see GatewayLoopbackTests).
@Suite("GatewayHandler in an EmbeddedChannel")
struct GatewayHandlerTests {
    static let policyYAML = """
        listen: 127.0.0.1:0
        public_url: https://mcp.example.com
        authorization_servers:
          corp:
            issuer: http://127.0.0.1:1/realms/corp
        limits:
          max_body_bytes: 2048
          max_header_bytes: 2048
        resources:
          - path: /jira/mcp
            name: Jira
            authorization_server: corp
            scopes_supported: [jira:read]
            upstream: http://127.0.0.1:1/mcp
            allowed_origins: [https://app.example.com]
            methods:
              initialize: []
        """

    struct Response {
        var head: HTTPResponseHead
        var body: String
        func header(_ name: String) -> String? { self.head.headers.first(name: name) }
    }

    func makeChannel() throws -> EmbeddedChannel {
        let policy = try PolicyLoader.load(yaml: Self.policyYAML, secrets: .empty)
        let loop = EmbeddedEventLoop()
        let gateway = Gateway(policy: policy, fetcher: HTTPFetcher(group: loop), logger: Logger(label: "test"))
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandlers(WireDecoder(), GatewayHandler(gateway: GatewayReference(gateway), remoteAddress: "192.0.2.1"))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 40000)).wait()
        return channel
    }

    func send(_ channel: EmbeddedChannel, _ method: HTTPMethod, _ uri: String, headers: [(String, String)] = [], body: String? = nil) throws -> Response? {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "mcp.example.com")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        try channel.writeInbound(HTTPServerRequestPart.head(head))
        if let body { try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: body))) }
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        return try self.readResponse(channel)
    }

    func readResponse(_ channel: EmbeddedChannel) throws -> Response? {
        guard case .head(let head) = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return nil }
        var body = ""
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .body(.byteBuffer(let buffer)): body += String(buffer: buffer)
            case .body: break
            case .end: return Response(head: head, body: body)
            case .head: Issue.record("second head")
            }
        }
        return Response(head: head, body: body)
    }

    @Test func metadataDocumentAtPathAndRoot() throws {
        let channel = try self.makeChannel()
        for path in ["/.well-known/oauth-protected-resource/jira/mcp", "/.well-known/oauth-protected-resource"] {
            let response = try #require(try self.send(channel, .GET, path))
            #expect(response.head.status == .ok)
            #expect(response.header("Content-Type") == "application/json")
            let document = try JSONParser().parse(response.body)
            #expect(document["resource"] == .string("https://mcp.example.com/jira/mcp"))
            #expect(document["authorization_servers"] == .array([.string("http://127.0.0.1:1/realms/corp")]))
        }
        #expect(try channel.finish().isClean)
    }

    @Test func aHeadRequestGetsTheHeadersWithoutTheBody() throws {
        let channel = try self.makeChannel()
        let get = try #require(try self.send(channel, .GET, "/.well-known/oauth-protected-resource/jira/mcp"))
        let head = try #require(try self.send(channel, .HEAD, "/.well-known/oauth-protected-resource/jira/mcp"))
        #expect(head.head.status == .ok)
        #expect(head.body.isEmpty)
        #expect(head.header("Content-Length") == String(get.body.utf8.count))
        // The next response on the connection is intact: the HEAD one left no body bytes behind.
        #expect(try self.send(channel, .GET, "/healthz")?.body == "ok\n")
        #expect(try channel.finish().isClean)
    }

    @Test func expectContinueGetsAnInterimResponseBeforeTheFinalOne() throws {
        let channel = try self.makeChannel()
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/jira/mcp")
        head.headers.add(name: "Host", value: "mcp.example.com")
        head.headers.add(name: "Expect", value: "100-continue")
        try channel.writeInbound(HTTPServerRequestPart.head(head))
        guard case .head(let interim) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no interim response")
            return
        }
        #expect(interim.status == .continue)
        #expect(try channel.readOutbound(as: HTTPServerResponsePart.self) == nil, "nothing else before the body")
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "{}")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try self.readResponse(channel)?.head.status == .unauthorized)
        #expect(try channel.finish().isClean)
    }

    @Test func noTokenIsChallenged() throws {
        let channel = try self.makeChannel()
        let response = try #require(try self.send(channel, .POST, "/jira/mcp", body: #"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#))
        #expect(response.head.status == .unauthorized)
        #expect(response.header("WWW-Authenticate") == #"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp", scope="jira:read""#)
        #expect(channel.isActive, "keep-alive: the connection stays open")
        #expect(try channel.finish().isClean)
    }

    @Test func tokenInQueryIsInvalidRequest() throws {
        let channel = try self.makeChannel()
        let response = try #require(try self.send(channel, .POST, "/jira/mcp?access_token=abc", body: "{}"))
        #expect(response.head.status == .badRequest)
        #expect(response.header("WWW-Authenticate")?.contains(#"error="invalid_request""#) == true)
        #expect(try channel.finish().isClean)
    }

    @Test func tokenInFormBodyIsInvalidRequest() throws {
        let channel = try self.makeChannel()
        let response = try #require(try self.send(channel, .POST, "/jira/mcp", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: "access_token=abc"))
        #expect(response.head.status == .badRequest)
        #expect(try channel.finish().isClean)
    }

    @Test func twoAuthorizationHeadersAreInvalidRequest() throws {
        let channel = try self.makeChannel()
        let response = try #require(try self.send(channel, .POST, "/jira/mcp", headers: [("Authorization", "Bearer a"), ("Authorization", "Bearer b")], body: "{}"))
        #expect(response.head.status == .badRequest)
        #expect(try channel.finish().isClean)
    }

    @Test func foreignOriginIsForbiddenAndAllowedOriginPasses() throws {
        let channel = try self.makeChannel()
        let refused = try #require(try self.send(channel, .POST, "/jira/mcp", headers: [("Origin", "https://evil.example.com")], body: "{}"))
        #expect(refused.head.status == .forbidden)
        let allowed = try #require(try self.send(channel, .POST, "/jira/mcp", headers: [("Origin", "https://APP.example.com:443")], body: "{}"))
        #expect(allowed.head.status == .unauthorized)
        #expect(try channel.finish().isClean)
    }

    @Test func unsupportedProtocolVersionAndMethods() throws {
        let channel = try self.makeChannel()
        let version = try #require(try self.send(channel, .POST, "/jira/mcp", headers: [("MCP-Protocol-Version", "2024-11-05")], body: "{}"))
        #expect(version.head.status == .badRequest)
        let put = try #require(try self.send(channel, .PUT, "/jira/mcp"))
        #expect(put.head.status == .methodNotAllowed)
        // The stateless revision is POST only.
        let get = try #require(try self.send(channel, .GET, "/jira/mcp", headers: [("MCP-Protocol-Version", "2026-07-28")]))
        #expect(get.head.status == .methodNotAllowed)
        #expect(try channel.finish().isClean)
    }

    @Test func metadataIsServedToGETAndHEADOnly() throws {
        let channel = try self.makeChannel()
        let post = try #require(try self.send(channel, .POST, "/.well-known/oauth-protected-resource/jira/mcp", body: "{}"))
        #expect(post.head.status == .methodNotAllowed)
        #expect(post.head.headers["Allow"] == ["GET"])
        #expect(try self.send(channel, .GET, "/.well-known/oauth-protected-resource/jira/mcp")?.head.status == .ok, "the connection still serves")
        #expect(try channel.finish().isClean)
    }

    @Test func unknownPathsAre404() throws {
        let channel = try self.makeChannel()
        #expect(try self.send(channel, .POST, "/other")?.head.status == .notFound)
        #expect(try self.send(channel, .GET, "/healthz")?.head.status == .ok)
        #expect(try self.send(channel, .GET, "/readyz")?.head.status == .serviceUnavailable)
        #expect(try channel.finish().isClean)
    }

    @Test func oversizedBodyIs413AndTheConnectionCloses() throws {
        let channel = try self.makeChannel()
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/jira/mcp")
        head.headers.add(name: "Host", value: "mcp.example.com")
        head.headers.add(name: "Authorization", value: "Bearer abc")
        try channel.writeInbound(HTTPServerRequestPart.head(head))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(repeating: 0x20, count: 2000)))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(repeating: 0x20, count: 2000)))
        let response = try #require(try self.readResponse(channel))
        #expect(response.head.status == .payloadTooLarge)
        #expect(response.header("Connection") == "close")
        #expect(!channel.isActive)
    }

    @Test func requestHeadsRFC9112HasRefusedAreRefusedAndTheConnectionCloses() throws {
        let cases: [([(String, String)], UInt, String)] = [
            ([], 400, "without Host"),
            ([("Host", "a"), ("Host", "b")], 400, "more than one Host"),
            ([("Host", "a b")], 400, "not host[:port]"),
            ([("Host", "a"), ("Transfer-Encoding", "gzip, chunked")], 501, "other than chunked"),
        ]
        for (headers, status, reason) in cases {
            let channel = try self.makeChannel()
            var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/jira/mcp")
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            try channel.writeInbound(HTTPServerRequestPart.head(head))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            let response = try #require(try self.readResponse(channel))
            #expect(response.head.status.code == status, "\(headers)")
            #expect(response.body.contains(reason), "\(response.body)")
            #expect(!channel.isActive)
        }
    }

    @Test func anAbsoluteFormTargetIsRoutedByItsPath() throws {
        let channel = try self.makeChannel()
        let response = try #require(try self.send(channel, .GET, "https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp"))
        #expect(response.head.status == .ok)
        #expect(response.body.contains(#""resource":"https://mcp.example.com/jira/mcp""#))
        // Asterisk-form names the server, not a resource; authority-form is for CONNECT only.
        #expect(try self.send(channel, .OPTIONS, "*")?.head.status == .notFound)
        #expect(try self.send(try self.makeChannel(), .GET, "mcp.example.com:443")?.head.status == .badRequest)
    }

    @Test func transferEncodingInAnHTTP10RequestIsFaultyFraming() throws {
        // RFC 9112 6.1: refused and the connection closed, even when the client asks to keep it.
        let channel = try self.makeChannel()
        var head = HTTPRequestHead(version: .http1_0, method: .POST, uri: "/jira/mcp")
        head.headers.add(name: "Connection", value: "keep-alive")
        head.headers.add(name: "Transfer-Encoding", value: "chunked")
        try channel.writeInbound(HTTPServerRequestPart.head(head))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "{}")))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        let response = try #require(try self.readResponse(channel))
        #expect(response.head.status == .badRequest)
        #expect(response.body.contains("Transfer-Encoding in an HTTP/1.0 request"))
        #expect(response.header("Connection") == "close")
        #expect(!channel.isActive)
    }

    /// The codec's refusals, each with its status and reason, before a byte reaches a route;
    /// the connection closes after the answer.
    @Test func requestsTheCodecRefusesAreAnsweredWithTheirStatus() throws {
        let cases: [(String, UInt, String)] = [
            ("GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP Version Not Supported: an HTTP version other than 1.0 and 1.1"),
            ("PROPFIND /jira/mcp HTTP/1.1\r\nHost: a\r\n\r\n", 501, "Not Implemented: an unsupported method"),
            ("GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace between a header field name and its colon"),
            ("GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, "obs-fold"),
            ("GET /healthz HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400, "a line not ended by CRLF"),
            ("POST /jira/mcp HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400, "more than one Content-Length"),
            ("POST /jira/mcp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "a transfer coding other than chunked"),
            ("GET /healthz HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 3100) + "\r\n\r\n", 431, "Request header fields too large"),
        ]
        for (wire, status, reason) in cases {
            let channel = try self.makeChannel()
            try channel.pipeline.syncOperations.removeHandler(channel.pipeline.syncOperations.handler(type: WireDecoder.self)).wait()
            try channel.writeInbound(ByteBuffer(string: wire))
            var written = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += String(buffer: buffer) }
            #expect(written.hasPrefix("HTTP/1.1 \(status) "), "\(wire.prefix(40).debugDescription): \(written.prefix(60).debugDescription)")
            #expect(written.contains(reason), "\(written)")
            #expect(written.lowercased().contains("connection: close\r\n"))
        }
    }

    @Test func oversizedHeadersAre431() throws {
        let channel = try self.makeChannel()
        let response = try #require(try self.send(channel, .POST, "/jira/mcp", headers: [("X-Big", String(repeating: "a", count: 3000))]))
        #expect(response.head.status.code == 431)
        #expect(!channel.isActive)
    }

    @Test func aClientThatSendsNothingForTheIdleTimeoutIsDisconnected() throws {
        let channel = try self.makeChannel()
        let loop = try #require(channel.eventLoop as? EmbeddedEventLoop)
        // Default client_idle_timeout_seconds: 120. Activity restarts the clock.
        loop.advanceTime(by: .seconds(100))
        #expect(channel.isActive)
        let response = try #require(try self.send(channel, .GET, "/healthz"))
        #expect(response.head.status == .ok)
        loop.advanceTime(by: .seconds(110))
        #expect(channel.isActive, "110 s after the last request")
        loop.advanceTime(by: .seconds(11))
        #expect(!channel.isActive, "121 s after the last request")
    }

    @Test func aRequestWhoseBodyStopsArrivingIsDisconnectedToo() throws {
        let channel = try self.makeChannel()
        let loop = try #require(channel.eventLoop as? EmbeddedEventLoop)
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/jira/mcp")
        head.headers.add(name: "Host", value: "mcp.example.com")
        head.headers.add(name: "Content-Length", value: "100")
        try channel.writeInbound(HTTPServerRequestPart.head(head))
        try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "{")))
        loop.advanceTime(by: .seconds(121))
        #expect(!channel.isActive)
    }

    /// The header-read timeout over a mock clock, with the gateway's codec counting the
    /// bytes (the loopback test slept 1.6 s for this): it runs only while a head is arriving,
    /// never on an idle keep-alive connection, and a head that trickles past it is a 408.
    @Test func theHeaderTimeoutRunsOnlyWhileAHeadIsArriving() throws {
        let yaml = Self.policyYAML.replacingOccurrences(of: "  max_header_bytes: 2048", with: "  max_header_bytes: 2048\n  header_read_timeout_seconds: 1")
        let policy = try PolicyLoader.load(yaml: yaml, secrets: .empty)
        let loop = EmbeddedEventLoop()
        let gateway = Gateway(policy: policy, fetcher: HTTPFetcher(group: loop), logger: Logger(label: "test"))
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(GatewayHandler(gateway: GatewayReference(gateway), remoteAddress: "192.0.2.1"))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 40000)).wait()
        func written() throws -> String {
            var text = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }
        try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: mcp.example.com\r\n\r\n"))
        #expect(try written().hasPrefix("HTTP/1.1 200 OK\r\n"))
        loop.advanceTime(by: .milliseconds(1_600))
        #expect(channel.isActive, "idle between requests: no head is arriving")
        try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: mcp"))
        loop.advanceTime(by: .milliseconds(900))
        let early = try written()
        #expect(channel.isActive && early.isEmpty)
        loop.advanceTime(by: .milliseconds(200))
        #expect(try written().hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "the head took longer than 1 s")
        loop.advanceTime(by: GatewayHandler.lingerTime)
        #expect(!channel.isActive)
    }
}

/// Reads the bytes GatewayHandler writes back into response parts with NIO's own HTTP/1
/// response parser, so the tests see parts and every response's serialisation is checked by
/// an independent parser on the way. It learns each request's method as the request passes
/// (responses to HEAD have no body). Requests go the other way as bytes, as a client writes
/// them: a POST, PUT or PATCH head with neither Content-Length nor Transfer-Encoding is sent
/// chunked, and its body parts as chunks.
final class WireDecoder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTPServerResponsePart

    private let client = EmbeddedChannel(handler: ByteToMessageHandler(HTTPResponseDecoder(informationalResponseStrategy: .forward)))
    private var chunked = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = ByteBuffer()
        switch self.unwrapInboundIn(data) {
        case .head(var head):
            try! self.client.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri)))
            _ = try! self.client.readOutbound(as: HTTPClientRequestPart.self)
            let framed = head.headers.contains(name: "Content-Length") || head.headers.contains(name: "Transfer-Encoding")
            if !framed, [.POST, .PUT, .PATCH].contains(head.method) { head.headers.add(name: "Transfer-Encoding", value: "chunked") }
            self.chunked = head.headers[canonicalForm: "Transfer-Encoding"].last?.lowercased() == "chunked"
            bytes.writeString("\(head.method.rawValue) \(head.uri) HTTP/\(head.version.major).\(head.version.minor)\r\n")
            for (name, value) in head.headers { bytes.writeString("\(name): \(value)\r\n") }
            bytes.writeString("\r\n")
        case .body(var body):
            if self.chunked { bytes.writeString(String(body.readableBytes, radix: 16) + "\r\n") }
            bytes.writeBuffer(&body)
            if self.chunked { bytes.writeString("\r\n") }
        case .end:
            guard self.chunked else { return }
            bytes.writeString("0\r\n\r\n")
        }
        context.fireChannelRead(self.wrapInboundOut(bytes))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        do {
            try self.client.writeInbound(self.unwrapOutboundIn(data))
            while let part = try self.client.readInbound(as: HTTPClientResponsePart.self) {
                switch part {
                case .head(let head): context.write(self.wrapOutboundOut(.head(head)), promise: nil)
                case .body(let body): context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                case .end(let trailers): context.write(self.wrapOutboundOut(.end(trailers)), promise: nil)
                }
            }
            promise?.succeed()
        } catch {
            Issue.record("the gateway wrote bytes that do not parse as an HTTP/1.1 response: \(error)")
            promise?.fail(error)
        }
    }
}

