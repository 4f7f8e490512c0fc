import BouncerCore
import BouncerTestSupport
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import BouncerProxy

/// A loopback HTTP server standing in for the authorization server's JWKS endpoint and for a
/// legacy MCP upstream in the Swift tests (the interop suite uses the real third-party ones).
final class LoopbackBackend: Sendable {
    struct Recorded: Sendable {
        var method: HTTPMethod
        var uri: String
        var headers: HTTPHeaders
        var body: String
    }

    private struct State {
        var jwks = #"{"keys":[]}"#
        var jwksFetches = 0
        var requests: [Recorded] = []
        var connections = 0
        var openConnections = 0
        var upstreamDelay: TimeAmount = .zero
        /// What POST /token answers, and the form bodies it received.
        var tokenReply: (status: HTTPResponseStatus, body: String) = (.ok, #"{"access_token":"exchanged-1","token_type":"Bearer","expires_in":300}"#)
        var tokenDelay: TimeAmount = .zero
        var tokenRequests: [String] = []
        /// An `Mcp-Session-Id` every upstream response carries, as an MCP server's answer to
        /// initialize does.
        var sessionReply: String?
    }

    private let state = NIOLockedValueBox(State())
    let channel: any Channel

    var port: Int { self.channel.localAddress!.port! }
    var url: String { "http://127.0.0.1:\(self.port)" }

    init(group: any EventLoopGroup) throws {
        let state = self.state
        self.channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                state.withLockedValue {
                    $0.connections += 1
                    $0.openConnections += 1
                }
                channel.closeFuture.whenComplete { _ in state.withLockedValue { $0.openConnections -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(BackendHandler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    func setJWKS(_ json: String) { self.state.withLockedValue { $0.jwks = json } }
    func setSessionReply(_ id: String?) { self.state.withLockedValue { $0.sessionReply = id } }
    func setUpstreamDelay(_ delay: TimeAmount) { self.state.withLockedValue { $0.upstreamDelay = delay } }
    func setTokenReply(_ status: HTTPResponseStatus, _ body: String, delay: TimeAmount = .zero) {
        self.state.withLockedValue {
            $0.tokenReply = (status, body)
            $0.tokenDelay = delay
        }
    }
    var tokenRequests: [String] { self.state.withLockedValue { $0.tokenRequests } }
    var jwksFetches: Int { self.state.withLockedValue { $0.jwksFetches } }
    var requests: [Recorded] { self.state.withLockedValue { $0.requests } }
    var connections: Int { self.state.withLockedValue { $0.connections } }
    var openConnections: Int { self.state.withLockedValue { $0.openConnections } }

    func close() throws { try self.channel.close().wait() }

    private final class BackendHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let state: NIOLockedValueBox<State>
        var head: HTTPRequestHead?
        var body = ""

        init(state: NIOLockedValueBox<State>) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                self.body = ""
            case .body(let buffer):
                self.body += String(buffer: buffer)
            case .end:
                guard let head = self.head else { return }
                if head.uri == "/jwks" {
                    let jwks = self.state.withLockedValue { state in
                        state.jwksFetches += 1
                        return state.jwks
                    }
                    self.respond(context: context, status: .ok, contentType: "application/json", body: jwks)
                    return
                }
                if head.uri == "/token" {
                    let (reply, delay) = self.state.withLockedValue { state in
                        state.tokenRequests.append(self.body)
                        return (state.tokenReply, state.tokenDelay)
                    }
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: delay) {
                        let (handler, context) = loopBound.value
                        handler.respond(context: context, status: reply.status, contentType: "application/json", body: reply.body)
                    }
                    return
                }
                let (delay, session) = self.state.withLockedValue { state in
                    state.requests.append(Recorded(method: head.method, uri: head.uri, headers: head.headers, body: self.body))
                    return (state.upstreamDelay, state.sessionReply)
                }
                let body = #"{"jsonrpc":"2.0","id":1,"result":{"echo":\#(self.body.isEmpty ? "null" : self.body)}}"#
                if delay == .zero {
                    self.respond(context: context, status: .ok, contentType: "application/json", body: body, session: session)
                } else {
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: delay) {
                        let (handler, context) = loopBound.value
                        handler.respond(context: context, status: .ok, contentType: "application/json", body: body)
                    }
                }
            }
        }

        func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String, body: String, session: String? = nil) {
            var head = HTTPResponseHead(version: .http1_1, status: status)
            head.headers.add(name: "Content-Type", value: contentType)
            if let session { head.headers.add(name: "Mcp-Session-Id", value: session) }
            head.headers.add(name: "Content-Length", value: String(body.utf8.count))
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// A minimal HTTP/1.1 client for the tests: one request per connection.
struct TestClient {
    struct Response {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: String
    }

    let group: any EventLoopGroup

    func send(port: Int, method: HTTPMethod = .POST, uri: String, headers: [(String, String)] = [], body: String = "") throws -> Response {
        let promise = self.group.next().makePromise(of: Response.self)
        let channel = try ClientBootstrap(group: self.group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Collector(promise: promise))
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
        head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Accept", value: "application/json, text/event-stream")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer { channel.close(promise: nil) }
        return try promise.futureResult.wait()
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Response>
        var response: Response?

        init(promise: EventLoopPromise<Response>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head): self.response = Response(status: head.status, headers: head.headers, body: "")
            case .body(let buffer): self.response?.body += String(buffer: buffer)
            case .end: if let response { self.promise.succeed(response) }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.promise.fail(ChannelError.eof)
        }
    }
}

/// The records of an audit file, parsed.
func auditRecords(at path: String) throws -> [[String: JSONValue]] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
        try #require(try JSONParser().parse(Array(line.utf8)).objectValue)
    }
}

/// Polls `condition` until it holds or `timeout` passes; for effects on other threads.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// A raw TCP connection for tests that need to hang up mid-exchange, send malformed or
/// pipelined requests; `received` is everything the gateway sent back so far.
func rawConnection(group: any EventLoopGroup, port: Int, send text: String) throws -> any Channel {
    try rawExchange(group: group, port: port, send: text).channel
}

func rawExchange(group: any EventLoopGroup, port: Int, send text: String) throws -> (channel: any Channel, received: NIOLockedValueBox<String>) {
    let (channel, received) = try rawListener(group: group, port: port)
    try channel.writeAndFlush(ByteBuffer(string: text)).wait()
    return (channel, received)
}

/// A connection that sends nothing; `received` is what the gateway sends on it.
func rawListener(group: any EventLoopGroup, port: Int) throws -> (channel: any Channel, received: NIOLockedValueBox<String>) {
    let received = NIOLockedValueBox("")
    let channel = try ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RawRecorder(received: received)) }
        }
        .connect(host: "127.0.0.1", port: port).wait()
    return (channel, received)
}

private final class RawRecorder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received: NIOLockedValueBox<String>

    init(received: NIOLockedValueBox<String>) { self.received = received }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: self.unwrapInboundIn(data))
        self.received.withLockedValue { $0 += text }
    }
}

/// An upstream that answers every request it reads with the same raw bytes, then closes if
/// `close` says so: for responses a well-behaved HTTP library would not send.
func rawUpstream(group: any EventLoopGroup, reply: String, close: Bool) throws -> any Channel {
    try ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RawResponder(reply: reply, close: close)) }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
}

private final class RawResponder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let reply: String
    let close: Bool

    init(reply: String, close: Bool) {
        self.reply = reply
        self.close = close
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One read holds the whole (small) request in these tests.
        let written = context.writeAndFlush(NIOAny(ByteBuffer(string: self.reply)))
        if self.close { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}

/// An upstream that answers the n-th request it reads (over all connections) with `replies[n]`,
/// closing the connection after it if asked; requests past the script get the last reply.
/// Returns the listener and how many requests arrived.
/// `recorded`, when given, gets the text of each request as it was read.
func scriptedUpstream(
    group: any EventLoopGroup, replies: [(reply: String, close: Bool)], recorded: NIOLockedValueBox<[String]>? = nil
) throws -> (channel: any Channel, requests: NIOLockedValueBox<Int>) {
    let requests = NIOLockedValueBox(0)
    let channel = try ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ScriptedResponder(replies: replies, requests: requests, recorded: recorded))
            }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
    return (channel, requests)
}

private final class ScriptedResponder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let replies: [(reply: String, close: Bool)]
    let requests: NIOLockedValueBox<Int>
    let recorded: NIOLockedValueBox<[String]>?

    init(replies: [(reply: String, close: Bool)], requests: NIOLockedValueBox<Int>, recorded: NIOLockedValueBox<[String]>?) {
        self.replies = replies
        self.requests = requests
        self.recorded = recorded
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One read holds the whole (small) request in these tests.
        let text = String(buffer: self.unwrapInboundIn(data))
        self.recorded?.withLockedValue { $0.append(text) }
        let index = self.requests.withLockedValue { count in
            count += 1
            return min(count, self.replies.count) - 1
        }
        let (reply, close) = self.replies[index]
        let written = context.writeAndFlush(NIOAny(ByteBuffer(string: reply)))
        if close { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}

/// What the loopback suites share: an event loop group, the stand-in backend publishing a
/// signing key, and helpers to start a gateway and mint tokens for it.
final class LoopbackHarness {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let backend: LoopbackBackend
    let signer = TestSigner.p256(kid: "k1")
    /// Only compared as a string: nothing is fetched from it (the JWKS URI is configured).
    let issuer = "http://127.0.0.1:1/issuer"
    /// The gateways' public URL; tokens name `\(publicURL)/mcp`.
    let publicURL = "http://127.0.0.1:8443"

    struct Running {
        var server: any Channel
        var port: Int
        var gateway: Gateway
    }

    init() throws {
        self.backend = try LoopbackBackend(group: self.group)
        self.backend.setJWKS(TestSigner.jwks([self.signer]))
    }

    deinit {
        try? self.backend.close()
        try? self.group.syncShutdownGracefully()
    }

    /// Binds a gateway for `yaml` on a free port.
    func start(_ yaml: String, secrets: SecretSource = .empty) throws -> Running {
        let policy = try PolicyLoader.load(yaml: yaml, secrets: secrets)
        let application = try GatewayApplication(policy: policy, group: self.group, logger: Logger(label: "test"))
        let server = try application.server.bind().wait()
        return Running(server: server, port: server.localAddress!.port!, gateway: application.gateway)
    }

    func token(subject: String = "alice", scope: String = "read", signer: TestSigner? = nil, resource: String = "/mcp") -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let claims = #"{"iss":"\#(self.issuer)","sub":"\#(subject)","aud":"\#(self.publicURL)\#(resource)","exp":\#(now + 300),"iat":\#(now),"scope":"\#(scope)"}"#
        return (signer ?? self.signer).sign(claims)
    }

    /// The session id a client of `gateway` holds for the upstream's `upstreamID`, sealed for
    /// `subject`'s tokens from ``token(subject:scope:signer:)`` at `/mcp`.
    func sealedSession(_ upstreamID: String, gateway: Gateway, subject: String = "alice", resource: String = "/mcp") -> String {
        let binding = SessionBinding(resource: resource, issuer: self.issuer, subject: "sub:\(subject)", clientID: "")
        return gateway.sessions.seal(upstreamID, for: binding, now: Int64(Date().timeIntervalSince1970))!
    }

    /// A `tools/call` POST to `/mcp` as raw bytes, for tests that pipeline, trickle or inspect
    /// the wire; `fields` are extra header lines, each ending in CRLF.
    func wire(id: Int = 1, token: String? = nil, body: String? = nil, fields: String = "") -> String {
        let body = body ?? #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"echo"}}"#
        return "POST /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token ?? self.token())\r\nContent-Type: application/json\r\n"
            + "Accept: application/json, text/event-stream\r\n\(fields)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// POSTs a `tools/call` to the gateway's `/mcp`.
    func call(port: Int, token: String?, id: Int = 1, tool: String = "echo", headers: [(String, String)] = []) throws -> TestClient.Response {
        var all = headers
        if let token { all.append(("Authorization", "Bearer \(token)")) }
        return try TestClient(group: self.group).send(
            port: port, uri: "/mcp", headers: all,
            body: #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"\#(tool)"}}"#
        )
    }
}
