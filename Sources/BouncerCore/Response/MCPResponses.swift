/// Reading an MCP server's answer to one of the gateway's own requests (`mcp-bouncer pin`,
/// the gateway's own `tools/list`): Streamable HTTP answers a POST with an `application/json`
/// body or with a `text/event-stream` whose events carry messages, the response among them.
public enum MCPResponses {
    /// The JSON-RPC response with `id` in a response body, or nil when there is none.
    public static func response(id: JSONValue, body: [UInt8], contentType: String?) -> JSONValue? {
        let type = contentType?.lowercased() ?? ""
        if type.hasPrefix("text/event-stream") {
            var splitter = ServerSentEventSplitter(maxEventBytes: max(body.count, 1))
            var found: JSONValue?
            var start = 0
            try? body.withUnsafeBytes { bytes in
                try splitter.scan(bytes) { piece, end in
                    defer { start = end }
                    guard found == nil, piece == .eventEnd, let data = ServerSentEvent(parsing: body[start..<end]).data else { return }
                    found = self.match(id: id, in: Array(data.utf8))
                }
            }
            return found
        }
        return self.match(id: id, in: body)
    }

    private static func match(id: JSONValue, in json: [UInt8]) -> JSONValue? {
        guard let value = try? JSONParser(maxDepth: 128).parse(json) else { return nil }
        let messages: [JSONValue]
        if case .array(let batch) = value { messages = batch } else { messages = [value] }
        return messages.first { $0["id"] == id && ($0["result"] != nil || $0["error"] != nil) }
    }
}
