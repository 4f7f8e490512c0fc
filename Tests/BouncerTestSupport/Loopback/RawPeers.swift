import BouncerCore
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import BouncerProxy

/// A raw TCP connection for tests that need to hang up mid-exchange, send malformed or
/// pipelined requests; `received` is everything the gateway sent back so far.
package func rawConnection(group: any EventLoopGroup, port: Int, send text: String) throws -> any Channel {
    try rawExchange(group: group, port: port, send: text).channel
}

package func rawExchange(group: any EventLoopGroup, port: Int, send text: String) throws -> (channel: any Channel, received: NIOLockedValueBox<String>) {
    let (channel, received) = try rawListener(group: group, port: port)
    try channel.writeAndFlush(ByteBuffer(string: text)).wait()
    return (channel, received)
}

/// A connection that sends nothing; `received` is what the gateway sends on it.
package func rawListener(group: any EventLoopGroup, port: Int) throws -> (channel: any Channel, received: NIOLockedValueBox<String>) {
    let received = NIOLockedValueBox("")
    let channel = try ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RawRecorder(received: received)) }
        }
        .connect(host: "127.0.0.1", port: port).wait()
    return (channel, received)
}

/// An upstream that answers every request it reads with the same raw bytes, then closes if
/// `close` says so: for responses a well-behaved HTTP library would not send.
package func rawUpstream(group: any EventLoopGroup, reply: String, close: Bool) throws -> any Channel {
    try ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RawResponder(reply: reply, close: close)) }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
}

private final class RawRecorder: ChannelInboundHandler, Sendable {
    package typealias InboundIn = ByteBuffer
    package let received: NIOLockedValueBox<String>

    package init(received: NIOLockedValueBox<String>) { self.received = received }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: self.unwrapInboundIn(data))
        self.received.withLockedValue { $0 += text }
    }
}

private final class RawResponder: ChannelInboundHandler, Sendable {
    package typealias InboundIn = ByteBuffer
    package let reply: String
    package let close: Bool

    package init(reply: String, close: Bool) {
        self.reply = reply
        self.close = close
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One read holds the whole (small) request in these tests.
        let written = context.writeAndFlush(NIOAny(ByteBuffer(string: self.reply)))
        if self.close { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}

/// An upstream that answers the n-th request it reads (over all connections) with `replies[n]`,
/// closing the connection after it if asked; requests past the script get the last reply.
/// Returns the listener and how many requests arrived.
/// `recorded`, when given, gets the text of each request as it was read.
package func scriptedUpstream(
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
    package typealias InboundIn = ByteBuffer
    package let replies: [(reply: String, close: Bool)]
    package let requests: NIOLockedValueBox<Int>
    package let recorded: NIOLockedValueBox<[String]>?

    package init(replies: [(reply: String, close: Bool)], requests: NIOLockedValueBox<Int>, recorded: NIOLockedValueBox<[String]>?) {
        self.replies = replies
        self.requests = requests
        self.recorded = recorded
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

/// An upstream that answers each request by what it holds: the first route whose `needle` the
/// request's text contains gives the reply (its replies in order, the last one repeating), as
/// `(status and extra header lines, body)` (JSON unless the head names another Content-Type);
/// `{id}` in a body stands for the request's
/// JSON-RPC id. For exchanges whose order between connections is not fixed (the gateway's own
/// requests beside a client's). A request no route matches gets a 500.
package func routedUpstream(
    group: any EventLoopGroup, routes: [(needle: String, replies: [(head: String, body: String)])], recorded: NIOLockedValueBox<[String]>? = nil
) throws -> any Channel {
    let served = NIOLockedValueBox([Int](repeating: 0, count: routes.count))
    return try ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RoutedResponder(routes: routes, served: served, recorded: recorded))
            }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
}

private final class RoutedResponder: ChannelInboundHandler, Sendable {
    package typealias InboundIn = ByteBuffer
    let routes: [(needle: String, replies: [(head: String, body: String)])]
    let served: NIOLockedValueBox<[Int]>
    let recorded: NIOLockedValueBox<[String]>?

    init(routes: [(needle: String, replies: [(head: String, body: String)])], served: NIOLockedValueBox<[Int]>, recorded: NIOLockedValueBox<[String]>?) {
        self.routes = routes
        self.served = served
        self.recorded = recorded
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // One read holds the whole (small) request in these tests.
        let text = String(buffer: self.unwrapInboundIn(data))
        self.recorded?.withLockedValue { $0.append(text) }
        var reply = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
        if let route = self.routes.firstIndex(where: { text.contains($0.needle) }) {
            let index = self.served.withLockedValue { served in
                served[route] += 1
                return min(served[route], self.routes[route].replies.count) - 1
            }
            let (head, template) = self.routes[route].replies[index]
            let id = text.firstRange(of: #""id":"#).map { found in String(text[found.upperBound...].prefix { $0 != "," && $0 != "}" }) } ?? "null"
            let body = template.replacingOccurrences(of: "{id}", with: id)
            let type = head.contains("Content-Type:") ? "" : "Content-Type: application/json\r\n"
            reply = "HTTP/1.1 \(head)\r\n\(type)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
        context.writeAndFlush(NIOAny(ByteBuffer(string: reply)), promise: nil)
    }
}
