import BouncerCore

extension FuzzTarget {
    /// Event streams as an upstream sends them: the bytes, cut into reads at a point the input
    /// chooses, split into the same events as in one read, and together the stream byte for
    /// byte (what the gateway relays unchanged is what came); every event's fields read back
    /// the same after rewriting; and the elicitation detector takes whatever schema the data
    /// holds.
    static func sse(_ data: [UInt8]) {
        guard let cutByte = data.first else { return }
        let stream = Array(data.dropFirst())
        func split(_ runs: [ArraySlice<UInt8>]) -> (pieces: [[UInt8]], rest: [UInt8], tooLarge: Bool) {
            var splitter = ServerSentEventSplitter(maxEventBytes: 512)
            var pieces: [[UInt8]] = []
            var held: [UInt8] = []
            for run in runs {
                let bytes = Array(run)
                var start = 0
                do {
                    try bytes.withUnsafeBytes { buffer in
                        try splitter.scan(buffer) { _, end in
                            pieces.append(held + bytes[start..<end])
                            held = []
                            start = end
                        }
                    }
                } catch {
                    return (pieces, held, true)
                }
                held += bytes[start...]
            }
            return (pieces, held, false)
        }
        let cut = stream.isEmpty ? 0 : Int(cutByte) % (stream.count + 1)
        let whole = split([stream[...]])
        let parts = split([stream[..<cut], stream[cut...]])
        require(whole.tooLarge == parts.tooLarge, "the limit depends on where reads end")
        guard !whole.tooLarge else { return }
        require((whole.pieces.flatMap { $0 } + whole.rest) == stream, "one read: the pieces are not the stream")
        require((parts.pieces.flatMap { $0 } + parts.rest) == stream, "two reads: the pieces are not the stream")
        let events = { (pieces: [[UInt8]]) in pieces.map { ServerSentEvent(parsing: $0) }.filter { $0 != ServerSentEvent() } }
        require(events(whole.pieces) == events(parts.pieces), "the events depend on where reads end")
        for event in events(whole.pieces) {
            let rewritten = ServerSentEvent(parsing: Array(event.serialized.utf8))
            require(rewritten.data == event.data?.replacingCRs && rewritten.id == event.id && rewritten.type == event.type, "a rewritten event reads back differently")
            if let data = event.data, let schema = try? JSONParser(maxDepth: 32).parse(Array(data.utf8)) {
                _ = CredentialFields.findings(in: schema)
            }
        }
        for piece in whole.pieces {
            inspect(event: piece)
        }
    }

    /// A resource with every kind of inspection on: lists filtered, one tool pinned, the guard
    /// at its defaults.
    static let inspected: ResourcePolicy = {
        let pins = ToolPins(tools: ["echo": String(repeating: "a", count: 64)]).yaml
        let yaml = """
            listen: 127.0.0.1:8443
            public_url: https://mcp.example.com
            authorization_servers:
              corp: { issuer: "https://as.example" }
            resources:
              - path: /mcp
                authorization_server: corp
                upstream: http://127.0.0.1:8080/mcp
                tool_pins: /pins.yaml
                methods:
                  tools/list: []
                  tools/call:
                    echo: [read]
                  resources/read:
                    "file:///docs/*": [read]
            """
        let secrets = SecretSource(environment: { _ in nil }, readFile: { _ in .success(pins) })
        return try! PolicyLoader.load(yaml: yaml, secrets: secrets).resources[0]
    }()

    static func inspect(event raw: [UInt8]) {
        let post = ResponseInspector(for: try? JSONRPCBody.parse(Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#.utf8), maxDepth: 8),
                                     policy: inspected, granted: ["read"], protocolVersion: "2026-07-28")
        for var inspector in [post, ResponseInspector(for: nil, policy: inspected, granted: ["read"], protocolVersion: nil)] {
            let skipped = raw.withUnsafeBytes { !inspector.mayNeed($0) }
            guard let data = ServerSentEvent(parsing: raw).data else { continue }
            let bytes = Array(data.utf8)
            let verdict = inspector.inspect(bytes) { true }
            let report = inspector.takeReport()
            if skipped { require(verdict == .pass && report.isEmpty, "an event skipped unparsed needed inspection") }
            if case .replace(let text) = verdict {
                require((try? JSONParser(maxDepth: 256).parse(Array(text.utf8))) != nil, "the inspector wrote what is not JSON")
            }
            if report.serverRequests.contains(where: { $0.blocked != nil }) {
                require(verdict != .pass, "a blocked request passed")
            }
        }
    }
}

extension String {
    /// Line breaks as the event stream format reads them back: CRLF and CR become LF.
    fileprivate var replacingCRs: String {
        var out = ""
        var previousCR = false
        for scalar in self.unicodeScalars {
            if scalar == "\n" && previousCR {
                previousCR = false
                continue
            }
            previousCR = scalar == "\r"
            out.unicodeScalars.append(scalar == "\r" ? "\n" : scalar)
        }
        return out
    }
}
