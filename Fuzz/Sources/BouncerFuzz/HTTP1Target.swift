import BouncerCore
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// The gateway's own HTTP/1.1 codec against llhttp (NIO's decoders), on the same bytes (issue
/// 28): a stream of requests (or, when the first byte is odd, one response to a POST) is
/// parsed by both; ours reads them as the gateway does (``HTTP1RequestReader``,
/// ``HTTP1ResponseReader``), in reads as long as the first byte's other bits say. It fails when ours completes a message llhttp refused, or when both complete
/// one and they differ in method, target, version, fields, body, trailers, or what the
/// enforcement stages read of it (``RequestHeadFacts`` over llhttp's Strings against the codec's
/// ranges, violations included). Where ours is
/// stricter (``HTTP1Strictness``) it refuses and llhttp accepts: that is allowed.
///
/// Comparison stops after a message the connection cannot outlive (HTTP/1.0 without
/// keep-alive, `Connection: close`) and after an upgrade request: llhttp stops reading there,
/// and the gateway closes the connection.
extension FuzzTarget {
    struct HTTP1Message: Equatable, CustomStringConvertible {
        var head: [String]
        var fields: [String]
        var body: [UInt8]
        var trailers: [String]
        var persistent: Bool
        var upgrade: Bool
        /// What the enforcement stages read of a request (``RequestHeadFacts`` from llhttp's
        /// Strings; the codec's own ranges), as text.
        var facts: [String] = []

        var description: String { "\(self.head) \(self.fields) body \(self.body.count) bytes \(self.trailers) persistent \(self.persistent) upgrade \(self.upgrade) facts \(self.facts)" }
    }

    static func http1(_ data: [UInt8]) {
        guard let mode = data.first else { return }
        let input = Array(data.dropFirst())
        let response = mode & 1 == 1
        let theirs = response ? Self.llhttpResponse(input) : Self.llhttpRequests(input)
        // The other bits: how the input is cut into reads (0: one read).
        let readSize = Int(mode >> 1) & 0x1F
        let ours = response ? Self.ourResponse(input, readSize: readSize) : Self.ourRequests(input, readSize: readSize)
        for (index, message) in ours.messages.enumerated() {
            guard index < theirs.messages.count else {
                // Ours finished a message llhttp did not: only allowed when llhttp was still
                // waiting for bytes (it never refused them).
                require(!theirs.failed, "ours accepted what llhttp refused: \(message) in \(String(decoding: input, as: UTF8.self).debugDescription)")
                return
            }
            var other = theirs.messages[index]
            // A connection ours closes after the message where llhttp would keep it is never
            // looser: ours reads `close` with tabs around it (RFC 9110 5.6.1 OWS), llhttp only
            // with spaces. The other way round fails.
            if !message.persistent { other.persistent = false }
            require(message == other, "ours \(message) but llhttp \(other) for \(String(decoding: input, as: UTF8.self).debugDescription)")
            if !message.persistent || message.upgrade { return }
        }
    }

    // MARK: Ours

    /// The requests the gateway reads (``HTTP1RequestReader``), the input given in reads of
    /// `readSize` bytes (0: all at once), as the socket might cut it.
    static func ourRequests(_ input: [UInt8], readSize: Int) -> (messages: [HTTP1Message], failed: Bool) {
        var messages: [HTTP1Message] = []
        var reader = HTTP1RequestReader(maxHeadBytes: 64 * 1024, maxFields: 1000, maxChunkExtensionBytes: 64 * 1024, maxTrailerBytes: 64 * 1024)
        var current: HTTP1Message?
        var start = 0
        while start < input.count {
            let end = readSize == 0 ? input.count : min(input.count, start + readSize)
            reader.append(ByteBuffer(bytes: input[start..<end]))
            start = end
            do {
                while let event = try reader.next() {
                    switch event {
                    case .head(let head):
                        let message = Self.message(head)
                        if message.upgrade {
                            messages.append(message)
                            return (messages, false)
                        }
                        current = message
                    case .body(let body):
                        current!.body += body.readableBytesView
                    case .end:
                        current!.trailers = reader.trailers.map { trailers in
                            trailers.fields.map {
                                "\(String(decoding: trailers.bytes[$0.name], as: UTF8.self).lowercased()): \(String(decoding: trailers.bytes[$0.value], as: UTF8.self))"
                            }
                        } ?? []
                        messages.append(current!)
                        current = nil
                    }
                }
            } catch {
                return (messages, true)
            }
        }
        return (messages, false)
    }

    /// A head the reader gave, as text, with what the enforcement stages read of it.
    static func message(_ head: HTTP1RequestReader.Head) -> HTTP1Message {
        let facts = head.facts
        var message = HTTP1Message(
            head: [head.method.name, head.string(head.target), head.version == .http11 ? "1.1" : "1.0"],
            fields: head.fields.map { "\(head.string($0.name).lowercased()): \(head.string($0.value))" }, body: [], trailers: [],
            persistent: head.version == .http11 ? !facts.connectionClose : facts.connectionKeepAlive && !facts.connectionClose,
            upgrade: facts.upgrade
        )
        let fields = facts.request
        func optional(_ range: Range<Int>?) -> String { range.map(head.string) ?? "-" }
        message.facts = [
            optional(facts.host), optional(fields.origin), optional(fields.authorization), "\(fields.authorizationCount)", optional(fields.dpop),
            "\(fields.dpopCount)", optional(fields.clientCert), "\(fields.clientCertCount)", optional(fields.protocolVersion), optional(fields.mcpMethod),
            optional(fields.mcpName), optional(fields.contentType), optional(fields.traceparent), "\(fields.traceparentCount)", optional(fields.sessionID),
            "\(fields.sessionIDCount)", "\(fields.forwardedForCount)", "\(fields.forwardedCount)", head.violation.map { "\($0)" } ?? "-",
        ]
        return message
    }

    /// The response the gateway reads (``HTTP1ResponseReader``) to a POST, the input given in
    /// reads of `readSize` bytes (0: all at once); the input's end is the connection's.
    static func ourResponse(_ input: [UInt8], readSize: Int) -> (messages: [HTTP1Message], failed: Bool) {
        var reader = HTTP1ResponseReader(maxHeadBytes: 64 * 1024, maxFields: 1000, maxChunkExtensionBytes: 64 * 1024, maxTrailerBytes: 64 * 1024)
        reader.requestMethod = .POST
        var message: HTTP1Message?
        var start = 0
        func ended() -> (messages: [HTTP1Message], failed: Bool) {
            message!.trailers = reader.trailers.map { trailers in
                trailers.fields.map {
                    "\(String(decoding: trailers.bytes[$0.name], as: UTF8.self).lowercased()): \(String(decoding: trailers.bytes[$0.value], as: UTF8.self))"
                }
            } ?? []
            return ([message!], false)
        }
        do {
            while start < input.count {
                let end = readSize == 0 ? input.count : min(input.count, start + readSize)
                reader.append(ByteBuffer(bytes: input[start..<end]))
                start = end
                while let event = try reader.next() {
                    switch event {
                    case .head(let head):
                        // Interim responses are not compared (NIO forwards or drops them by strategy).
                        guard !head.isInterim else { continue }
                        message = HTTP1Message(
                            head: ["\(head.status)", head.version == .http11 ? "1.1" : "1.0"],
                            fields: head.fields.map { "\(head.string($0.name).lowercased()): \(head.string($0.value))" },
                            body: [], trailers: [], persistent: false, upgrade: false
                        )
                    case .body(let body):
                        message!.body += body.readableBytesView
                    case .end:
                        return ended()
                    }
                }
            }
            // The input ended: a body until close is whole now, any other is cut short.
            guard message != nil, try reader.connectionClosed() else { return ([], false) }
            return ended()
        } catch {
            return ([], true)
        }
    }

    // MARK: llhttp

    static func llhttpRequests(_ input: [UInt8]) -> (messages: [HTTP1Message], failed: Bool) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish() }
        var failed = false
        do {
            try channel.writeInbound(ByteBuffer(bytes: input))
        } catch {
            failed = true
        }
        let messages = Self.collect(channel, as: HTTPRequestHead.self) { head in
            let connection = head.headers[canonicalForm: "connection"].map { $0.lowercased() }
            var facts = RequestHeadFacts()
            for field in head.headers { facts.observe(name: field.name, value: Self.trimmed(field.value)) }
            let violation = facts.violation(method: head.method.rawValue, isHTTP11OrLater: head.version.minor == 1)
            return HTTP1Message(
                head: [head.method.rawValue, head.uri, head.version.minor == 1 ? "1.1" : "1.\(head.version.minor)"],
                fields: Self.fields(head.headers), body: [], trailers: [],
                persistent: head.isKeepAlive && !connection.contains("close"), upgrade: head.headers.contains(name: "upgrade"),
                facts: [
                    facts.host ?? "-", facts.origin ?? "-", facts.authorization ?? "-", "\(facts.authorizationCount)", facts.dpop ?? "-", "\(facts.dpopCount)",
                    facts.clientCert ?? "-", "\(facts.clientCertCount)", facts.protocolVersion ?? "-", facts.mcpMethod ?? "-", facts.mcpName ?? "-",
                    facts.contentType ?? "-", facts.traceparent ?? "-", "\(facts.traceparentCount)", facts.sessionID ?? "-", "\(facts.sessionIDCount)",
                    "\(facts.forwardedFor.count)", "\(facts.forwarded.count)", violation.map { "\($0)" } ?? "-",
                ]
            )
        }
        return (messages, failed)
    }

    /// The messages llhttp decoded, each from its head (nil: not compared, as an interim
    /// response), body parts and end.
    static func collect<Head: Equatable & Sendable>(_ channel: EmbeddedChannel, as: Head.Type, _ message: (Head) -> HTTP1Message?) -> [HTTP1Message] {
        var messages: [HTTP1Message] = []
        var current: HTTP1Message?
        while let part = try? channel.readInbound(as: HTTPPart<Head, ByteBuffer>.self) {
            switch part {
            case .head(let head):
                current = message(head)
            case .body(let buffer):
                current?.body += buffer.readableBytesView
            case .end(let trailers):
                if var done = current {
                    done.trailers = trailers.map(Self.fields) ?? []
                    messages.append(done)
                }
                current = nil
            }
        }
        return messages
    }

    static func fields(_ headers: HTTPHeaders) -> [String] {
        headers.map { "\($0.name.lowercased()): \(Self.trimmed($0.value))" }
    }

    static func llhttpResponse(_ input: [UInt8]) -> (messages: [HTTP1Message], failed: Bool) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)))
        defer { _ = try? channel.finish() }
        // The decoder learns the request's method from the outbound request head.
        _ = try? channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/")))
        var failed = false
        do {
            try channel.writeInbound(ByteBuffer(bytes: input))
            // The end of input is the connection's end: a body until close ends here.
            _ = try channel.finish(acceptAlreadyClosed: true)
        } catch {
            failed = true
        }
        let messages = Self.collect(channel, as: HTTPResponseHead.self) { head in
            guard head.status.code >= 200 else { return nil }
            return HTTP1Message(
                head: ["\(head.status.code)", head.version.minor == 1 ? "1.1" : "1.\(head.version.minor)"],
                fields: Self.fields(head.headers), body: [], trailers: [], persistent: false, upgrade: false
            )
        }
        return (messages, failed)
    }

    /// RFC 9112 5: whitespace around a value is not part of it (llhttp keeps trailing whitespace).
    static func trimmed(_ value: String) -> String {
        var bytes = Substring(value).utf8[...]
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes = bytes.dropLast() }
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes = bytes.dropFirst() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
