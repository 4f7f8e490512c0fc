import BouncerCore
import BouncerTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import BouncerProxy
import NIOHTTP1

/// Requests an attacker sends, on real sockets: each is refused before anything reaches the
/// upstream, and the client is told why before the connection ends.
@Suite("Gateway hardening on loopback", .serialized)
struct HardeningLoopbackTests {
    let harness: LoopbackHarness
    var group: MultiThreadedEventLoopGroup { self.harness.group }
    var backend: LoopbackBackend { self.harness.backend }

    init() throws {
        self.harness = try LoopbackHarness()
    }

    func start(limits: String...) throws -> LoopbackHarness.Running {
        try self.harness.start(LoopbackPolicy(self.harness).limits(["max_body_bytes: 4096"] + limits))
    }

    func post(body: String, headers: String = "") -> String {
        self.harness.wire(body: body, fields: headers)
    }

    static let call = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#

    @Test("GET and DELETE with a body are 400: the body would reach the upstream uninspected")
    func getAndDeleteWithABody() async throws {
        let running = try self.start()
        let before = self.backend.requests.count
        for (method, framing) in [("GET", "Content-Length: 5\r\n\r\nhello"), ("DELETE", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")] {
            let wire = "\(method) /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(self.harness.token())\r\nMcp-Session-Id: s1\r\n\(framing)"
            let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
            #expect(await eventually { !channel.isActive })
            #expect(received.withLockedValue { $0 }.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(method)")
        }
        #expect(self.backend.requests.count == before, "nothing reached the upstream")
        try await running.server.close().get()
    }

    @Test("a body in a content coding the gateway cannot read is 415, never inspected as plain")
    func contentEncodingIs415() async throws {
        let running = try self.start()
        let before = self.backend.requests.count
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: self.post(body: Self.call, headers: "Content-Encoding: gzip\r\n"))
        #expect(await eventually { !channel.isActive })
        let text = received.withLockedValue { $0 }
        #expect(text.hasPrefix("HTTP/1.1 415 "), "\(text)")
        #expect(text.contains("Accept-Encoding: identity\r\n"))
        #expect(self.backend.requests.count == before)
        try await running.server.close().get()
    }

    @Test("Connection cannot smuggle a client's X-Forwarded-For past the gateway")
    func forwardedForNominatedInConnectionIsDropped() async throws {
        let running = try self.start()
        let response = try self.harness.call(port: running.port, token: self.harness.token(), headers: [
            ("Connection", "keep-alive, X-Forwarded-For"), ("X-Forwarded-For", "10.9.9.9"),
        ])
        #expect(response.status == .ok)
        let recorded = try #require(self.backend.requests.last)
        #expect(recorded.headers["X-Forwarded-For"] == ["127.0.0.1"])
        try await running.server.close().get()
    }

    @Test("Expect: 100-continue with a length over the limit is 413 at once, no 100 Continue")
    func expectContinueOverTheLimit() async throws {
        let running = try self.start()
        let wire = "POST /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(self.harness.token())\r\nContent-Type: application/json\r\n"
            + "Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: wire)
        #expect(await eventually { received.withLockedValue { $0.contains("\r\n\r\n") } })
        let text = received.withLockedValue { $0 }
        #expect(text.hasPrefix("HTTP/1.1 413 "), "\(text)")
        #expect(!text.contains("100 Continue"))
        try? await channel.close().get()
        try await running.server.close().get()
    }

    @Test("a chunk extension is bounded (RFC 9112 7.1.1): 2 MB of it is refused, not read through")
    func longChunkExtensionsAreRefused() async throws {
        let running = try self.start()
        let before = self.backend.requests.count
        let head = "POST /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(self.harness.token())\r\nContent-Type: application/json\r\n"
            + "Transfer-Encoding: chunked\r\n\r\n"
        let chunk = "\(String(Self.call.utf8.count, radix: 16));ext=\(String(repeating: "x", count: 2_000_000))\r\n\(Self.call)\r\n0\r\n\r\n"
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: head + chunk)
        #expect(await eventually { !channel.isActive })
        #expect(received.withLockedValue { $0 }.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(self.backend.requests.count == before, "the request was not served")
        // Many small extensions add up the same way.
        let many = (0..<40).map { _ in "1;e=\(String(repeating: "y", count: 4000))\r\n \r\n" }.joined()
        let (again, answer) = try rawExchange(group: self.group, port: running.port, send: head + many)
        #expect(await eventually { !again.isActive })
        #expect(answer.withLockedValue { $0 }.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        // Ordinary chunking is still served.
        let small = "\(String(Self.call.utf8.count, radix: 16));name=value\r\n\(Self.call)\r\n0\r\n\r\n"
        let (fine, ok) = try rawExchange(group: self.group, port: running.port, send: head + small)
        #expect(await eventually { ok.withLockedValue { $0.contains("HTTP/1.1 200 OK") } })
        try? await fine.close().get()
        try await running.server.close().get()
    }

    @Test("slowloris: a head trickling in one byte at a time is cut off at header_read_timeout_seconds")
    func slowHeadsTimeOut() async throws {
        let running = try self.start(limits: "header_read_timeout_seconds: 1")
        let (channel, received) = try rawExchange(group: self.group, port: running.port, send: "P")
        let clock = ContinuousClock()
        let started = clock.now
        // One byte every 200 ms: always active, never a whole head.
        var servedMeanwhile = false
        for (index, byte) in "OST /mcp HTTP/1.1\r\nHost: gw\r\nX-Slow: 0123456789012345678901234567890123456789".utf8.enumerated() {
            guard channel.isActive else { break }
            try? await channel.writeAndFlush(ByteBuffer(bytes: [byte])).get()
            if index == 1 {
                // A normal client is served while the slow one trickles.
                let (fine, ok) = try rawExchange(group: self.group, port: running.port, send: self.post(body: Self.call))
                servedMeanwhile = await eventually(timeout: .milliseconds(800)) { ok.withLockedValue { $0.contains("HTTP/1.1 200 OK") } } && channel.isActive
                try? await fine.close().get()
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(servedMeanwhile)
        #expect(await eventually { !channel.isActive })
        #expect(clock.now - started < .seconds(4), "cut off near 1 s, not after the whole head")
        #expect(received.withLockedValue { $0 }.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        try await running.server.close().get()
    }

    @Test("a refusal that ends the connection closes in stages: the client reads the 413, not a reset")
    func refusalsCloseInStages() async throws {
        let running = try self.start()
        // As curl does: the whole body is sent before the answer is read. Closed at once, the
        // gateway's kernel would reset the connection on the bytes still arriving, and the
        // client would see a failed send instead of the 413.
        // 16 MB: more than the two kernels' socket buffers hold, so a reset would reach the sender.
        for _ in 0..<2 {
            let exchange = try BlockingClient.exchange(port: running.port, send: self.post(body: String(repeating: "a", count: 16_000_000)))
            #expect(exchange.sendError == nil, "the body was read (and dropped), not reset")
            #expect(exchange.received.hasPrefix("HTTP/1.1 413 "), "\(exchange.received.prefix(200))")
        }
        try await running.server.close().get()
    }
}

/// A client on a blocking socket that sends everything before it reads anything.
enum BlockingClient {
    struct Exchange {
        /// `errno` of a send that failed (ECONNRESET, EPIPE), if one did.
        var sendError: Int32?
        var received: String
    }

    static func exchange(port: Int, send text: String) throws -> Exchange {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw IOError(errnoCode: errno, reason: "connect") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sendError: Int32?
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 {
                sendError = errno
                break
            }
            offset += sent
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[..<count]
        }
        return Exchange(sendError: sendError, received: String(decoding: received, as: UTF8.self))
    }
}
