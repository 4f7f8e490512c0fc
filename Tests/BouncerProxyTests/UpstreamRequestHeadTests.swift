import BouncerCore
import BouncerTestSupport
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// The upstream head written from the client's bytes (the client's fields copied by range,
/// ``Enforcement/ClientFieldFilter``) is the head the String path builds
/// (``Enforcement/upstreamHeaders(from:facts:resource:peer:peerIsTrustedProxy:publicURL:bodyLength:isPOST:upstreamToken:upstreamSessionID:traceparent:add:)``)
/// byte for byte, on generated heads: credentials, hop-by-hop and Connection-nominated fields,
/// forwarding chains from a trusted proxy or not, the static credential's field, a replaced
/// trace context, names in any case.
@Suite("Upstream request head from the client's bytes")
struct UpstreamRequestHeadTests {
    static let policy = try! PolicyLoader.load(yaml: """
        listen: 127.0.0.1:0
        public_url: https://mcp.example.com
        authorization_servers:
          corp:
            issuer: http://127.0.0.1:1/realms/corp
        resources:
          - path: /jira/mcp
            name: Jira
            authorization_server: corp
            scopes_supported: [jira:read]
            upstream: http://10.0.0.5:8080/mcp
            upstream_credentials:
              static: { header: X-Api-Key, value: k-123 }
            methods:
              initialize: []
        """, secrets: .empty)

    @Test func theHeadWrittenFromTheRangesIsTheHeadFromStrings() throws {
        let pool = [
            "Host: gw.example", "Authorization: Bearer client-token", "authorization: DPoP x", "DPoP: eyJ.a.b", "Connection: keep-alive, X-Hop",
            "connection: X-Forwarded-For, TE", "X-Hop: 1", "x-hop: 2", "X-Forwarded-For: 10.9.9.9", "x-forwarded-for: 10.8.8.8", "Forwarded: for=1.2.3.4",
            "X-Api-Key: forged", "x-api-key: forged2", "Mcp-Session-Id: s1", "Content-Length: 0", "Expect: 100-continue", "TE: trailers",
            "Upgrade: h2c", "Keep-Alive: timeout=5", "Proxy-Authorization: Basic x", "Client-Cert: :AAEC:", "X-Forwarded-Proto: http",
            "X-Forwarded-Host: evil", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "TraceState: a=b",
            "Accept: application/json, text/event-stream", "Content-Type: application/json", "MCP-Protocol-Version: 2025-11-25",
            "User-Agent: python-httpx/0.28.1", "X-Custom: a value with spaces", "x-a-very-long-header-name-beyond-twenty-four-bytes: 1",
            "Connection: x-a-very-long-header-name-beyond-twenty-four-bytes",
        ]
        let resource = Self.policy.resources[0]
        var random = SplitMix64(seed: 6)
        var compared = 0
        var recycled = RecycledBuffer()
        for round in 0..<3000 {
            let lines = (0..<Int(random.next() % 12)).map { _ in pool[Int(random.next() % UInt64(pool.count))] }
            var reader = HTTP1RequestReader(maxHeadBytes: 8192, maxFields: 64)
            reader.append(ByteBuffer(string: "POST /jira/mcp?x=1 HTTP/1.1\r\n\(lines.map { $0 + "\r\n" }.joined())\r\n"))
            // Some draws the codec refuses (two Content-Length lines): those never reach here.
            guard case .head(let wire)? = try? reader.next() else { continue }
            compared += 1
            let facts = RequestHeadFacts(wire)
            let trusted = round % 2 == 0
            let traceparent = round % 3 == 0 ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : nil
            let token = round % 5 == 0 ? nil : "exchanged"
            let session = round % 7 == 0 ? "upstream-session" : nil

            var fromStrings = "POST /mcp?x=1 HTTP/1.1\r\n"
            let strings = wire.fields.map { (name: wire.string($0.name), value: wire.string($0.value)) }
            Enforcement.upstreamHeaders(
                from: strings, facts: facts, resource: resource, peer: "192.0.2.7", peerIsTrustedProxy: trusted, publicURL: Self.policy.publicURL,
                bodyLength: 2, isPOST: true, upstreamToken: token, upstreamSessionID: session, traceparent: traceparent
            ) { name, value in fromStrings += "\(name): \(value)\r\n" }
            fromStrings += "\r\n"

            let filter = Enforcement.ClientFieldFilter(facts: facts, resource: resource, replacesTrace: traceparent != nil)
            var head = UpstreamRequestHead(method: .POST, uri: "/mcp?x=1", client: (wire, filter))
            Enforcement.gatewayFields(
                facts: facts, resource: resource, peer: "192.0.2.7", peerIsTrustedProxy: trusted, publicURL: Self.policy.publicURL,
                bodyLength: 2, isPOST: true, upstreamToken: token, upstreamSessionID: session, traceparent: traceparent
            ) { name, value in head.fields.append((name, value)) }
            // One connection's recycled buffer for every head, as an upstream connection writes them.
            let (bytes, separate) = try UpstreamRequestSerializer.serialize(head, body: ByteBuffer(string: "{}"), into: &recycled, allocator: ByteBufferAllocator())
            #expect(separate == nil)
            #expect(String(buffer: bytes) == fromStrings + "{}", "\(lines)")
            #expect(bytes.readableBytes - 2 <= head.estimatedSize, "the estimate bounds the head")
            #expect("POST /mcp?x=1 HTTP/1.1\r\n" + head.allFields.map { "\($0.name): \($0.value)\r\n" }.joined() + "\r\n" == fromStrings, "\(lines)")
        }
        #expect(compared > 2500, "\(compared) heads compared")
    }

    /// A request that becomes a long-lived stream lets go of the read its head came in: the
    /// head keeps its own bytes, and reads the same.
    @Test func aCompactedHeadHoldsOnlyItsOwnBytes() throws {
        var read = ByteBufferAllocator().buffer(capacity: 8192)
        read.writeString("GET /jira/mcp HTTP/1.1\r\nHost: gw.example\r\nAccept: text/event-stream\r\n\r\n")
        var reader = HTTP1RequestReader(maxHeadBytes: 8192, maxFields: 64)
        reader.append(read)
        guard case .head(let wire)? = try reader.next() else {
            Issue.record("no head")
            return
        }
        var head = ClientHead(wire)
        #expect(head.wire.bytes.storageCapacity >= 8192, "a slice of the read")
        head.compact()
        #expect(head.wire.bytes.storageCapacity < 2 * head.wire.bytes.readableBytes, "its own bytes (rounded up by the allocator), not the read")
        #expect(head.wire.listElements(named: "accept") == ["text/event-stream"] && head.uri == "/jira/mcp" && head.isKeepAlive)
        #expect(reader.bufferedBytes == 0)

        // The request's body too (a POST whose answer is an event stream).
        var post = ByteBufferAllocator().buffer(capacity: 8192)
        post.writeString("POST /jira/mcp HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 2\r\n\r\n{}")
        reader.append(post)
        guard case .end? = try reader.next(), case .head(let postHead)? = try reader.next(), case .body(let body)? = try reader.next() else {
            Issue.record("no POST")
            return
        }
        let request = ClientRequest(
            head: ClientHead(postHead), facts: RequestHeadFacts(postHead), query: nil, route: .notFound,
            log: RequestLog(logger: Logger(label: "test"), connectionID: "c", sequence: 1, method: "POST", peer: "192.0.2.1"), startedAt: .now(), peer: "192.0.2.1"
        )
        request.body = body
        #expect(request.body!.storageCapacity >= 8192)
        request.compact()
        #expect(request.body!.storageCapacity < 64 && String(buffer: request.body!) == "{}")
        #expect(request.head.wire.bytes.storageCapacity < 2 * request.head.wire.bytes.readableBytes)
    }
}
