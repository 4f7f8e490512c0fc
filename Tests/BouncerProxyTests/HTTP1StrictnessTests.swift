import BouncerCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// Every rule of ``HTTP1Strictness`` holds both ways: llhttp (NIO's decoder, the differential
/// oracle) accepts the rule's example, and the gateway's codec refuses it. A rule llhttp also
/// enforces, or one the codec lost, fails here.
@Suite("HTTP/1.1 codec: stricter than llhttp, and why")
struct HTTP1StrictnessTests {
    /// Whether llhttp parsed the first message of `bytes` without an error.
    static func llhttpAccepts(_ bytes: [UInt8], response: Bool) -> Bool {
        if response {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)))
            defer { _ = try? channel.finish() }
            _ = try? channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/")))
            guard (try? channel.writeInbound(ByteBuffer(bytes: bytes))) != nil else { return false }
            return (try? channel.readInbound(as: HTTPClientResponsePart.self)) != nil
        }
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish() }
        guard (try? channel.writeInbound(ByteBuffer(bytes: bytes))) != nil else { return false }
        return (try? channel.readInbound(as: HTTPServerRequestPart.self)) != nil
    }

    /// The codec's first refusal in `bytes` (head, then body), nil when it takes the first message.
    static func codecRefusal(_ bytes: [UInt8], response: Bool) -> HTTP1ParseError? {
        bytes.withUnsafeBytes { all in
            let progress: HTTP1HeadProgress
            let framing: HTTP1Framing
            if response {
                var parser = HTTP1ResponseParser()
                progress = parser.parse(all, requestMethod: .POST)
                framing = parser.framing
            } else {
                var parser = HTTP1RequestParser()
                progress = parser.parse(all)
                framing = parser.framing
            }
            switch progress {
            case .failed(let error): return error
            case .incomplete: return nil
            case .complete(let length):
                var reader = HTTP1BodyReader(framing)
                var offset = length
                while true {
                    switch reader.read(all, from: offset) {
                    case .failure(let error): return error
                    case .success(let (.data, next)): offset = next
                    case .success((.needMore, _)), .success((.end, _)): return nil
                    }
                }
            }
        }
    }

    @Test(arguments: HTTP1Strictness.rules.map(\.id))
    func llhttpAcceptsAndTheCodecRefuses(id: String) throws {
        let rule = try #require(HTTP1Strictness.rules.first { $0.id == id })
        let bytes = Array(rule.example.utf8)
        #expect(Self.llhttpAccepts(bytes, response: rule.isResponse), "llhttp refuses \(rule.example.debugDescription) too: \(id) is not a stricter rule")
        #expect(Self.codecRefusal(bytes, response: rule.isResponse) != nil, "the codec takes \(rule.example.debugDescription): \(id) does not hold")
        #expect(!rule.reference.isEmpty && !rule.why.isEmpty)
    }

    @Test func anUpstreamAnswerWithContentLengthAndChunkedIsRefusedByBoth() {
        let bytes = Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".utf8)
        #expect(!Self.llhttpAccepts(bytes, response: true) && Self.codecRefusal(bytes, response: true) == .contentLengthAndTransferEncoding)
    }

    @Test func theRulesHaveDistinctIDs() {
        #expect(Set(HTTP1Strictness.rules.map(\.id)).count == HTTP1Strictness.rules.count)
    }

    /// Where both refuse, nothing needs listing: the smuggling and red-team cases the gateway
    /// relies on are llhttp's rules too.
    @Test(arguments: [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "POST ?mcp HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\"\r\nx\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost:\r\nContent-LEngth: 6\t\t\r\n\r\n\u{11}\r\n\r\nG",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
    ])
    func bothRefuse(example: String) {
        let bytes = Array(example.utf8)
        #expect(!Self.llhttpAccepts(bytes, response: false) || Self.codecRefusal(bytes, response: false) != nil)
        #expect(Self.codecRefusal(bytes, response: false) != nil, "\(example.debugDescription)")
    }
}
