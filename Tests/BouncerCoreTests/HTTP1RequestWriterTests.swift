import BouncerCore
import NIOCore
import Testing

/// The gateway's own requests (``HTTP1RequestWriter``): whatever it writes, its own codec reads
/// back as the same request, and nothing that would end the request line or a field early is
/// written at all.
@Suite("HTTP/1.1 request writer")
struct HTTP1RequestWriterTests {
    @Test func whatIsWrittenReadsBackAsTheSameRequest() throws {
        let fields: [(name: String, value: String)] = [
            ("Host", "as.example:8443"), ("Authorization", "Basic YTpi"), ("DPoP", "eyJ.a-b_c.d"), ("X-Obs", "caf\u{E9}"), ("X-Tab", "a\tb"), ("X-Empty", ""),
        ]
        var buffer = ByteBuffer()
        try HTTP1RequestWriter.write(method: "POST", target: "/oauth2/token?resource=https%3A%2F%2Fmcp.example&x=~", fields: fields, into: &buffer)
        #expect(String(buffer: buffer).hasPrefix("POST /oauth2/token?resource=https%3A%2F%2Fmcp.example&x=~ HTTP/1.1\r\nHost: as.example:8443\r\n"))
        var reader = HTTP1RequestReader(maxHeadBytes: 4096, maxFields: 50)
        reader.append(buffer)
        guard case .head(let head)? = try reader.next() else {
            Issue.record("the written head does not read back")
            return
        }
        #expect(head.method == .POST)
        #expect(head.string(head.target) == "/oauth2/token?resource=https%3A%2F%2Fmcp.example&x=~")
        #expect(head.fields.map { head.string($0.name) } == fields.map(\.name))
        #expect(head.fields.map { head.string($0.value) } == fields.map(\.value))
    }

    @Test func targetsThatWouldSplitTheRequestLineAreRefused() {
        for target in ["", "jwks", "http://a/jwks", "/a b", "/a\r\nX: 1", "/a\n", "/a\u{0}", "/a\u{7F}", "/caf\u{E9}", "/a\t"] {
            var buffer = ByteBuffer()
            #expect(throws: HTTP1RequestWriter.Refusal.invalidTarget, "\(target.debugDescription)") {
                try HTTP1RequestWriter.write(method: "GET", target: target, fields: [("Host", "a")], into: &buffer)
            }
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func fieldsThatWouldSplitTheHeadAreRefused() {
        let names = ["", "X A", "X-A:", "X\r\nY", "\u{E9}", "X(A)"]
        for name in names {
            var buffer = ByteBuffer()
            #expect(throws: HTTP1RequestWriter.Refusal.invalidFieldName(name), "\(name.debugDescription)") {
                try HTTP1RequestWriter.write(method: "GET", target: "/", fields: [("Host", "a"), (name, "1")], into: &buffer)
            }
            #expect(buffer.readableBytes == 0)
        }
        for value in ["1\r\nX-Injected: 2", "1\r", "1\n", "a\u{0}b", "a\u{7F}", " padded", "padded ", "\t1"] {
            var buffer = ByteBuffer()
            #expect(throws: HTTP1RequestWriter.Refusal.invalidFieldValue(name: "X-A"), "\(value.debugDescription)") {
                try HTTP1RequestWriter.write(method: "GET", target: "/", fields: [("Host", "a"), ("X-A", value)], into: &buffer)
            }
            #expect(buffer.readableBytes == 0)
        }
        var buffer = ByteBuffer()
        #expect(throws: HTTP1RequestWriter.Refusal.invalidMethod) { try HTTP1RequestWriter.write(method: "G T", target: "/", fields: [], into: &buffer) }
    }
}
