import BouncerCore
import BouncerTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// The loop-bound pool's bookkeeping, with embedded channels for connections: which connection
/// a request gets, what goes back to the pool, what is closed.
@Suite("Upstream connection pool")
struct UpstreamConnectionPoolTests {
    let loop = EmbeddedEventLoop()
    let target = UpstreamTarget(uri: try! CanonicalURI("http://127.0.0.1:9/mcp"), requestPath: "/mcp")
    let other = UpstreamTarget(uri: try! CanonicalURI("http://127.0.0.1:10/mcp"), requestPath: "/mcp")

    func pool(maxIdle: Int = 2) -> UpstreamConnectionPool {
        UpstreamConnectionPool(eventLoop: self.loop, connectTimeout: .seconds(1), maxIdle: maxIdle)
    }

    /// A connected channel standing in for an upstream connection, as `connect` would lease it.
    func lease() throws -> UpstreamLease {
        let handler = UpstreamHandler()
        let channel = EmbeddedChannel(handler: handler, loop: self.loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return UpstreamLease(channel: channel, handler: handler, reused: false)
    }

    @Test func anEmptyPoolHasNothingIdle() {
        #expect(self.pool().idleConnection(to: self.target) == nil)
    }

    @Test func aConnectionReleasedReusableIsLentAgainMarkedReused() throws {
        let pool = self.pool()
        let first = try self.lease()
        pool.release(first, target: self.target, reusable: true)
        let again = try #require(pool.idleConnection(to: self.target))
        #expect(again.channel === first.channel)
        #expect(again.reused, "a pooled connection may have been closed by the upstream: its requests may be retried")
        #expect(pool.idleConnection(to: self.target) == nil, "lent once")
        #expect(pool.idleConnection(to: self.other) == nil, "pooled per upstream")
    }

    @Test func aConnectionNotReusableIsClosed() throws {
        let pool = self.pool()
        let lease = try self.lease()
        pool.release(lease, target: self.target, reusable: false)
        #expect(!lease.channel.isActive)
        #expect(pool.idleConnection(to: self.target) == nil)
    }

    @Test func connectionsThatClosedWhileIdleAreSkipped() throws {
        let pool = self.pool()
        let stale = try self.lease()
        let live = try self.lease()
        pool.release(live, target: self.target, reusable: true)
        pool.release(stale, target: self.target, reusable: true)
        try stale.channel.close().wait()
        let lent = try #require(pool.idleConnection(to: self.target))
        #expect(lent.channel === live.channel)
    }

    @Test func thePoolKeepsAtMostMaxIdleAndClosesTheRest() throws {
        let pool = self.pool(maxIdle: 2)
        let leases = try (0..<3).map { _ in try self.lease() }
        for lease in leases { pool.release(lease, target: self.target, reusable: true) }
        #expect(!leases[2].channel.isActive, "the third is closed, not kept")
        #expect(pool.idleConnection(to: self.target)?.channel === leases[1].channel, "most recently used first")
        #expect(pool.idleConnection(to: self.target)?.channel === leases[0].channel)
        #expect(pool.idleConnection(to: self.target) == nil)
    }

    @Test func releasingDetachesTheExchangeAndResumesReading() throws {
        let pool = self.pool()
        let lease = try self.lease()
        let sink = RecordingSink()
        lease.handler.sink = sink
        lease.handler.pause()
        pool.release(lease, target: self.target, reusable: true)
        #expect(lease.handler.sink == nil)
        // Bytes on an idle connection: the upstream is confused, the connection is dropped.
        try (lease.channel as! EmbeddedChannel).writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        #expect(!lease.channel.isActive)
        #expect(sink.events.isEmpty)
    }
}

final class RecordingSink: UpstreamResponseSink {
    var events: [String] = []
    func upstreamInterimResponse(_ head: RelayedResponseHead) { self.events.append("interim") }
    func upstreamResponseHead(_ head: RelayedResponseHead) { self.events.append("head") }
    func upstreamResponseBody(_ buffer: ByteBuffer) { self.events.append("body") }
    func upstreamResponseEnd(keepAlive: Bool) { self.events.append("end") }
    func upstreamRequestWritten() { self.events.append("written") }
    func upstreamReadComplete() { self.events.append("read-complete") }
    func upstreamFailed(_ error: any Error) { self.events.append("failed") }
}
