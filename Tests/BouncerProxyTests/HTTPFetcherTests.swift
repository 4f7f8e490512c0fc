import BouncerCore
import BouncerTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import BouncerProxy

/// The gateway's own HTTP client (discovery documents, key sets, token exchange,
/// introspection, `probe`, `pin`) against peers that answer with raw bytes: what it sends, and
/// what it makes of responses well-formed, unusual and hostile.
@Suite("HTTP fetcher")
struct HTTPFetcherTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// A peer answering every request with `reply` (closing after it if `close`), the requests'
    /// text recorded.
    func peer(_ reply: String, close: Bool = true) throws -> (port: Int, recorded: NIOLockedValueBox<[String]>, channel: any Channel) {
        let recorded = NIOLockedValueBox<[String]>([])
        let (channel, _) = try scriptedUpstream(group: self.group, replies: [(reply, close)], recorded: recorded)
        return (channel.localAddress!.port!, recorded, channel)
    }

    func fetcher(maxResponseBytes: Int = 1024 * 1024) -> HTTPFetcher {
        HTTPFetcher(group: self.group, connectTimeout: .seconds(2), responseTimeout: .seconds(2), maxResponseBytes: maxResponseBytes)
    }

    func fetchError(_ future: EventLoopFuture<some Sendable>) -> FetchError? {
        do {
            _ = try future.wait()
            return nil
        } catch {
            return error as? FetchError
        }
    }

    @Test func aGETIsWrittenAsOneRequestWithItsFields() throws {
        let (port, recorded, channel) = try self.peer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        defer { channel.close(promise: nil) }
        let body = try self.fetcher().get("http://127.0.0.1:\(port)/.well-known/jwks.json?x=1").wait()
        #expect(body == Array("{}".utf8))
        let request = try #require(recorded.withLockedValue { $0.first })
        #expect(request.hasPrefix("GET /.well-known/jwks.json?x=1 HTTP/1.1\r\n"))
        #expect(request.contains("\r\nHost: 127.0.0.1:\(port)\r\n"))
        #expect(request.contains("\r\nConnection: close\r\n"))
        #expect(request.contains("\r\nAccept: application/json\r\n"))
        #expect(request.hasSuffix("\r\n\r\n"))
    }

    @Test func aFormIsPostedWithItsLength() throws {
        let (port, recorded, channel) = try self.peer("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"error\":\"invalid_request\"}")
        defer { channel.close(promise: nil) }
        let loop = self.group.next()
        let response = try self.fetcher().postForm(
            "http://127.0.0.1:\(port)/token", purpose: "token", fields: [("grant_type", "client_credentials"), ("scope", "a b")],
            headers: [("Authorization", "Basic YTpi")], tls: nil, serverName: nil, on: loop
        ).wait()
        #expect(response.status == 400)
        #expect(response.header("content-type") == "application/json")
        #expect(response.text == #"{"error":"invalid_request"}"#)
        let request = try #require(recorded.withLockedValue { $0.first })
        #expect(request.hasPrefix("POST /token HTTP/1.1\r\n"))
        #expect(request.contains("\r\nAuthorization: Basic YTpi\r\n"))
        #expect(request.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
        #expect(request.hasSuffix("\r\n\r\ngrant_type=client_credentials&scope=a%20b") || request.hasSuffix("\r\n\r\ngrant_type=client_credentials&scope=a+b"))
        let body = String(request[request.range(of: "\r\n\r\n")!.upperBound...])
        #expect(request.contains("\r\nContent-Length: \(body.utf8.count)\r\n"))
    }

    /// A URL is data from discovery documents (`jwks_uri`, `token_endpoint`): bytes that would
    /// end the request line or start a field never reach the wire.
    @Test func aURLThatWouldSplitTheRequestIsRefusedBeforeConnecting() throws {
        let (port, recorded, channel) = try self.peer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        defer { channel.close(promise: nil) }
        for url in [
            "http://127.0.0.1:\(port)/jwks?a=b\r\nX-Injected: 1", "http://127.0.0.1:\(port)/jwks?a=b c", "http://127.0.0.1:\(port)/jwks?a=\u{0}",
            "http://127.0.0.1:\(port)/jwks?a=\u{7F}", "http://127.0.0.1:\(port)/jwks?a=é",
        ] {
            let error = self.fetchError(self.fetcher().get(url))
            #expect(error?.code == .invalidURL, "\(url.debugDescription): \(String(describing: error))")
        }
        #expect(recorded.withLockedValue { $0 }.isEmpty)
    }

    /// Fields come from the policy, token endpoints' answers and `probe --header`: a name that
    /// is not a token or a value with a control character is refused, not written.
    @Test func aFieldThatWouldSplitTheRequestIsRefused() throws {
        let (port, recorded, channel) = try self.peer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        defer { channel.close(promise: nil) }
        let loop = self.group.next()
        for (name, value) in [("X-A", "1\r\nX-Injected: 2"), ("X-A", "1\n"), ("X-A", "a\u{0}b"), ("X A", "1"), ("X-A:", "1"), ("", "1"), ("X-A", " padded")] {
            let error = self.fetchError(self.fetcher().send(.GET, "http://127.0.0.1:\(port)/", purpose: "metadata", headers: [(name, value)], body: nil, tls: nil, serverName: nil, on: loop))
            #expect(error?.code == .invalidRequest, "\(name.debugDescription): \(value.debugDescription): \(String(describing: error))")
        }
        #expect(recorded.withLockedValue { $0 }.isEmpty)
    }

    @Test func aChunkedBodyIsReassembled() throws {
        let (port, _, channel) = try self.peer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5;ext=1\r\n\":1}\n\r\n0\r\nX-Trailer: t\r\n\r\n")
        defer { channel.close(promise: nil) }
        #expect(try self.fetcher().get("http://127.0.0.1:\(port)/").wait() == Array("{\"a\":1}\n".utf8))
    }

    @Test func aBodyFramedByTheConnectionsEndEndsWithIt() throws {
        let (port, _, channel) = try self.peer("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"keys\":[]}")
        defer { channel.close(promise: nil) }
        #expect(try self.fetcher().get("http://127.0.0.1:\(port)/").wait() == Array(#"{"keys":[]}"#.utf8))
    }

    @Test func interimResponsesAreSkipped() throws {
        let (port, _, channel) = try self.peer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        defer { channel.close(promise: nil) }
        #expect(try self.fetcher().get("http://127.0.0.1:\(port)/").wait() == Array("{}".utf8))
    }

    @Test func aResponseCutShortIsAnError() throws {
        for reply in ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}", "HTTP/1.1 200 OK\r\nContent-Le", "{\"keys\":[]}"] {
            let (port, _, channel) = try self.peer(reply)
            defer { channel.close(promise: nil) }
            #expect(self.fetchError(self.fetcher().get("http://127.0.0.1:\(port)/"))?.code == .connectionClosed, "\(reply.debugDescription)")
        }
    }

    @Test func aResponseOverTheLimitIsRefused() throws {
        let body = String(repeating: "x", count: 5000)
        let (port, _, channel) = try self.peer("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { channel.close(promise: nil) }
        #expect(self.fetchError(self.fetcher(maxResponseBytes: 4096).get("http://127.0.0.1:\(port)/"))?.code == .responseTooLarge)
        let (chunkedPort, _, chunked) = try self.peer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n\(body)\r\n0\r\n\r\n")
        defer { chunked.close(promise: nil) }
        #expect(self.fetchError(self.fetcher(maxResponseBytes: 4096).get("http://127.0.0.1:\(chunkedPort)/"))?.code == .responseTooLarge)
    }

    /// What the gateway's codec refuses from an upstream it refuses from an authorization
    /// server too: the response is not used.
    @Test func aMalformedResponseIsRefused() throws {
        for reply in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}",
            "{\"keys\":[]}\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ] {
            let (port, _, channel) = try self.peer(reply)
            defer { channel.close(promise: nil) }
            let error = self.fetchError(self.fetcher().get("http://127.0.0.1:\(port)/"))
            #expect(error?.code == .badResponse, "\(reply.debugDescription): \(String(describing: error))")
        }
    }

    @Test func anEventStreamIsReturnedAfterItsFirstEvent() throws {
        // The stream stays open: the fetch ends at the event, not at the connection's end.
        let (port, _, channel) = try self.peer("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n16\r\nevent: ready\ndata: 1\n\n\r\n", close: false)
        defer { channel.close(promise: nil) }
        let response = try self.fetcher().send(.GET, "http://127.0.0.1:\(port)/sse", purpose: "metadata", headers: [], body: nil, tls: nil, serverName: nil, on: nil, untilFirstEvent: true).wait()
        #expect(response.status == 200)
        #expect(response.text == "event: ready\ndata: 1\n\n")
    }

    @Test func aPeerThatNeverAnswersTimesOut() throws {
        let (channel, _) = try scriptedUpstream(group: self.group, replies: [("", false)])
        defer { channel.close(promise: nil) }
        let fetcher = HTTPFetcher(group: self.group, connectTimeout: .seconds(1), responseTimeout: .milliseconds(300))
        #expect(self.fetchError(fetcher.get("http://127.0.0.1:\(channel.localAddress!.port!)/"))?.code == .timeout)
    }
}
