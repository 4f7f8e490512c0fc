/// Reads the messages of a Streamable HTTP response to one POST as its bytes arrive: an
/// `application/json` body is one message (or a batch) when it ends; a `text/event-stream`
/// gives each event's message as soon as its blank line is read, so the bridge can act on a
/// server-to-client request while the upstream waits for the answer. Fails closed: a message
/// over the limit, data that is not JSON, or another content type is an error, never skipped.
public struct UpstreamMessageReader: Sendable {
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case unexpectedContentType(String)
        case tooLarge(limit: Int)
        case malformed(String)

        public var description: String {
            switch self {
            case .unexpectedContentType(let type): return "the MCP server answered with Content-Type '\(type)', not JSON or an event stream"
            case .tooLarge(let limit): return "a message from the MCP server is over \(limit) bytes"
            case .malformed(let reason): return "the MCP server sent a malformed message: \(reason)"
            }
        }
    }

    private enum Framing: Sendable {
        case json
        case eventStream(ServerSentEventSplitter)
    }

    private var framing: Framing
    private var pending: [UInt8] = []
    private let maxMessageBytes: Int
    private let maxDepth: Int
    public private(set) var isEventStream: Bool

    public init(contentType: String?, maxMessageBytes: Int, maxDepth: Int) throws(Failure) {
        let type = (contentType ?? "").lowercased()
        self.maxMessageBytes = maxMessageBytes
        self.maxDepth = maxDepth
        if type.hasPrefix("text/event-stream") {
            self.framing = .eventStream(ServerSentEventSplitter(maxEventBytes: maxMessageBytes))
            self.isEventStream = true
        } else if type.hasPrefix("application/json") {
            self.framing = .json
            self.isEventStream = false
        } else {
            throw .unexpectedContentType(contentType ?? "(none)")
        }
    }

    /// The messages complete with these bytes.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(Failure) -> [JSONValue] {
        switch self.framing {
        case .json:
            guard self.pending.count + bytes.count <= self.maxMessageBytes else { throw .tooLarge(limit: self.maxMessageBytes) }
            self.pending.append(contentsOf: bytes)
            return []
        case .eventStream(var splitter):
            var messages: [JSONValue] = []
            var failure: Failure?
            let bytes = Array(bytes)
            var start = 0
            do {
                try bytes.withUnsafeBytes { raw in
                    try splitter.scan(raw) { piece, end in
                        defer { start = end }
                        guard piece == .eventEnd else { return }
                        let event = ServerSentEvent(parsing: self.pending + bytes[start..<end])
                        self.pending.removeAll(keepingCapacity: true)
                        guard let data = event.data, !data.isEmpty else { return }
                        do {
                            messages += try self.parse(Array(data.utf8))
                        } catch let error as Failure {
                            failure = error
                            throw error
                        }
                    }
                }
            } catch {
                throw failure ?? .tooLarge(limit: self.maxMessageBytes)
            }
            self.pending.append(contentsOf: bytes[start...])
            self.framing = .eventStream(splitter)
            return messages
        }
    }

    /// The messages left when the body ends: the JSON body's; an event stream's unfinished
    /// last event is dropped (it was never dispatched).
    public mutating func finish() throws(Failure) -> [JSONValue] {
        guard case .json = self.framing else { return [] }
        defer { self.pending = [] }
        guard !self.pending.isEmpty else { return [] }
        return try self.parse(self.pending)
    }

    private func parse(_ bytes: [UInt8]) throws(Failure) -> [JSONValue] {
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: self.maxDepth).parse(bytes)
        } catch {
            throw .malformed("not JSON (\(error.kind))")
        }
        if case .array(let batch) = value { return batch }
        return [value]
    }
}
