import BouncerCore
import BouncerTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// The admin listener (`admin.listen`) on the gateway's own codec: what it serves, and what it
/// does with requests a scraper would never send.
@Suite("Admin listener", .serialized)
struct AdminListenerTests {
    let harness: LoopbackHarness

    init() throws {
        self.harness = try LoopbackHarness()
    }

    func start() throws -> (LoopbackHarness.Running, Int) {
        let running = try self.harness.start(LoopbackPolicy(self.harness).top("admin:", "  listen: 127.0.0.1:0"))
        return (running, try #require(running.adminPort))
    }

    /// What `raw` (one or more requests, the last closing the connection) gets back by the time
    /// the listener closes the connection (at most 5 s).
    func exchange(_ port: Int, _ raw: String) throws -> String {
        let (channel, received) = try rawExchange(group: self.harness.group, port: port, send: raw)
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        try channel.closeFuture.wait()
        timeout.cancel()
        return received.withLockedValue { $0 }
    }

    @Test func servesMetricsHealthAndReadiness() throws {
        let (running, port) = try self.start()
        defer { running.stop() }
        let client = TestClient(group: self.harness.group)
        let metrics = try client.send(port: port, method: .GET, uri: "/metrics?name=x")
        #expect(metrics.status == .ok)
        #expect(metrics.headers.first(name: "Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metrics.body.contains("# TYPE mcp_bouncer_open_connections gauge"))
        #expect(try client.send(port: port, method: .GET, uri: "/healthz").body == "ok\n")
        let ready = try client.send(port: port, method: .GET, uri: "/readyz")
        #expect(ready.status == .ok || ready.status == .serviceUnavailable)
        let head = try self.exchange(port, "HEAD /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(head.contains("Content-Length: 3\r\n"))
        #expect(head.hasSuffix("\r\n\r\n"), "a HEAD response has no body")
    }

    @Test func otherMethodsAndPathsAreRefused() throws {
        let (running, port) = try self.start()
        defer { running.stop() }
        let post = try self.exchange(port, "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        #expect(post.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        #expect(post.contains("\r\nAllow: GET, HEAD\r\n"))
        #expect(try self.exchange(port, "GET /debug HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").hasPrefix("HTTP/1.1 404 Not Found\r\n"))
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let (running, port) = try self.start()
        defer { running.stop() }
        let answers = try self.exchange(port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        let statuses = answers.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
        #expect(statuses == ["200", "404", "200"])
        #expect(answers.hasSuffix("ok\n"))
    }

    /// The codec's refusals reach the admin port too: each is answered with its status and the
    /// connection closed, never served as a scrape.
    @Test func malformedRequestsAreRefusedAndTheConnectionClosed() throws {
        let (running, port) = try self.start()
        defer { running.stop() }
        for (raw, status) in [
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "400"),
            ("GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n", "400"),
            ("GET /metrics HTTP/1.1\r\n\r\n", "400"),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
            ("GET /metrics HTTP/1.1\nHost: a\n\n", "400"),
            ("POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "400"),
            ("GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n", "505"),
            ("BREW /metrics HTTP/1.1\r\nHost: a\r\n\r\n", "501"),
            ("GET /metrics HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "a", count: AdminHandler.maxHeadBytes))\r\n\r\n", "431"),
        ] {
            let answer = try self.exchange(port, raw)
            #expect(answer.hasPrefix("HTTP/1.1 \(status) "), "\(raw.prefix(60).debugDescription): \(answer.prefix(80).debugDescription)")
            #expect(answer.contains("\r\nConnection: close\r\n"))
            #expect(!answer.contains("mcp_bouncer_"), "nothing is served after a refusal")
        }
    }

    @Test func aBodyOverTheLimitIsRefused() throws {
        let (running, port) = try self.start()
        defer { running.stop() }
        let body = String(repeating: "x", count: AdminHandler.maxBodyBytes + 1)
        let answer = try self.exchange(port, "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(answer.hasPrefix("HTTP/1.1 413 "))
        #expect(answer.contains("\r\nConnection: close\r\n"))
    }
}
