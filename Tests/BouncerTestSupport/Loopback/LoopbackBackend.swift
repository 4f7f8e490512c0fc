import BouncerCore
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import BouncerProxy

/// A loopback HTTP server standing in for the authorization server's JWKS endpoint and for a
/// legacy MCP upstream in the Swift tests (the interop suite uses the real third-party ones).
package final class LoopbackBackend: Sendable {
    package struct Recorded: Sendable {
        package var method: HTTPMethod
        package var uri: String
        package var headers: HTTPHeaders
        package var body: String
    }

    private struct State {
        package var jwks = #"{"keys":[]}"#
        package var jwksFetches = 0
        package var requests: [Recorded] = []
        package var connections = 0
        package var openConnections = 0
        package var upstreamDelay: TimeAmount = .zero
        /// What POST /token answers, and the form bodies it received.
        package var tokenReply: (status: HTTPResponseStatus, body: String) = (.ok, #"{"access_token":"exchanged-1","token_type":"Bearer","expires_in":300}"#)
        package var tokenDelay: TimeAmount = .zero
        package var tokenRequests: [String] = []
        /// An `Mcp-Session-Id` every upstream response carries, as an MCP server's answer to
        /// initialize does.
        package var sessionReply: String?
    }

    private let state = NIOLockedValueBox(State())
    package let channel: any Channel

    package var port: Int { self.channel.localAddress!.port! }
    package var url: String { "http://127.0.0.1:\(self.port)" }

    package init(group: any EventLoopGroup) throws {
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

    package func setJWKS(_ json: String) { self.state.withLockedValue { $0.jwks = json } }
    package func setSessionReply(_ id: String?) { self.state.withLockedValue { $0.sessionReply = id } }
    package func setUpstreamDelay(_ delay: TimeAmount) { self.state.withLockedValue { $0.upstreamDelay = delay } }
    package func setTokenReply(_ status: HTTPResponseStatus, _ body: String, delay: TimeAmount = .zero) {
        self.state.withLockedValue {
            $0.tokenReply = (status, body)
            $0.tokenDelay = delay
        }
    }
    package var tokenRequests: [String] { self.state.withLockedValue { $0.tokenRequests } }
    package var jwksFetches: Int { self.state.withLockedValue { $0.jwksFetches } }
    package var requests: [Recorded] { self.state.withLockedValue { $0.requests } }
    package var connections: Int { self.state.withLockedValue { $0.connections } }
    package var openConnections: Int { self.state.withLockedValue { $0.openConnections } }

    package func close() throws { try self.channel.close().wait() }

    private final class BackendHandler: ChannelInboundHandler {
        package typealias InboundIn = HTTPServerRequestPart
        package typealias OutboundOut = HTTPServerResponsePart

        package let state: NIOLockedValueBox<State>
        package var head: HTTPRequestHead?
        package var body = ""

        package init(state: NIOLockedValueBox<State>) { self.state = state }

        package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

        package func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, contentType: String, body: String, session: String? = nil) {
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
