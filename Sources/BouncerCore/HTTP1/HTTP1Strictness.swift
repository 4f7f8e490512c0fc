/// Where the gateway's HTTP/1.1 codec is deliberately stricter than llhttp (NIO's decoder, the
/// differential oracle of issue 28): each rule with the RFC text it leans on and a request (or
/// response) llhttp accepts and the codec refuses. `HTTP1StrictnessTests` checks every example
/// both ways, so this list cannot claim a rule that does not hold or miss the reason for one.
///
/// Everything else the codec refuses, llhttp refuses too (the `http1` fuzz target fails
/// otherwise): bare CR, NUL and other controls in values, whitespace before a colon, obs-fold,
/// Content-Length with Transfer-Encoding (in a request and in a response), Transfer-Encoding on
/// two field lines, a duplicated or list-valued Content-Length, targets in no RFC 9112 form,
/// chunk extensions off their grammar.
///
/// One difference is not a refusal: `Connection: close` is recognised with tabs around it as
/// well as spaces (RFC 9110 5.6.1 OWS), where llhttp sees it only between spaces and would keep
/// the connection open. The gateway closes; the fuzz target allows exactly that direction.
public enum HTTP1Strictness {
    public struct Rule: Sendable {
        public let id: String
        public let reference: String
        public let why: String
        /// Bytes llhttp accepts and the codec refuses.
        public let example: String
        /// The example is a response (to a POST), not a request stream.
        public let isResponse: Bool

        init(_ id: String, _ reference: String, _ why: String, example: String, isResponse: Bool = false) {
            self.id = id
            self.reference = reference
            self.why = why
            self.example = example
            self.isResponse = isResponse
        }
    }

    public static let rules: [Rule] = [
        Rule("method.extension", "RFC 9110 9.1, 9.3",
             "Only GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE and PATCH: a gateway to MCP servers has no use for WebDAV or other extension methods, and each one llhttp knows is parser surface.",
             example: "PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Rule("method.connect", "RFC 9110 9.3.6; RFC 9112 3.2.3",
             "CONNECT is refused: the gateway tunnels nothing, and authority-form targets are never accepted.",
             example: "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
        Rule("target.asterisk", "RFC 9112 3.2.4",
             "The asterisk-form is `*` alone and only for OPTIONS.",
             example: "GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        Rule("target.userinfo", "RFC 9110 4.2.4",
             "An absolute-form target with userinfo is refused (a sender MUST NOT generate it; it only serves phishing).",
             example: "GET http://user@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        Rule("request-line.one-space", "RFC 9112 3",
             "One SP between method, target and version, as the grammar says: lenient splitting is where request-line smuggling starts.",
             example: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Rule("head.size", "RFC 9112 2.3 (a server may bound what it reads); RFC 6585 5",
             "A head larger than `limits.max_header_bytes` (16 KiB by default) is refused with 431 as soon as the limit passes, not buffered up to llhttp's 80 KiB.",
             example: "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "a", count: 20000))\r\n\r\n"),
        Rule("transfer-coding.http10", "RFC 9112 6.1",
             "Transfer-Encoding in an HTTP/1.0 message is faulty framing (the client cannot have meant chunked): refused rather than guessed.",
             example: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        Rule("chunk-extension.ascii", "RFC 9112 7.1.1; RFC 9110 5.6.4",
             "Chunk extension values are visible ASCII: no obs-text in a quoted string (nobody sends it; every byte of framing the gateway passes is one it understands).",
             example: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"\u{e9}\"\r\nx\r\n0\r\n\r\n"),
        Rule("transfer-coding.only-chunked", "RFC 9112 6.1, 7",
             "Exactly one transfer coding, `chunked`: the gateway cannot inspect a body it cannot decode (501).",
             example: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        Rule("content-length.digits", "RFC 9110 8.6",
             "At most 18 digits: no length that could overflow, and no body that large through a gateway anyway.",
             example: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n"),
        Rule("chunk-size.digits", "RFC 9112 7.1",
             "At most 15 hex digits in a chunk size: no overflow, and no chunk that large.",
             example: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000001\r\nx\r\n0\r\n\r\n"),
        Rule("trailer.forbidden-fields", "RFC 9110 6.5.1",
             "No trailer field that frames, routes or authenticates (Content-Length, Transfer-Encoding, Host, Connection, Upgrade, Authorization): they cannot be processed after the content.",
             example: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: b\r\n\r\n"),
        Rule("status.range", "RFC 9110 15",
             "An upstream's status is 100 to 599: anything else is not HTTP.",
             example: "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", isResponse: true),
    ]
}
