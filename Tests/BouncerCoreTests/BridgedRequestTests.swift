import BouncerCore
import Testing

/// The bridge's side of a 2026-07-28 request (issue 26): the checks a 2026-07-28 server makes,
/// what identifies a request across its retries, the message the legacy upstream gets, and how
/// the upstream's answer is read and classified.
@Suite("Bridged requests")
struct BridgedRequestTests {
    static func json(_ text: String) -> JSONValue { try! JSONParser(maxDepth: 32).parse(text) }

    static func body(_ text: String) -> JSONRPCBody { try! JSONRPCBody.parse(Array(text.utf8), maxDepth: 32) }

    static func facts(method: String? = "tools/call", name: String? = "echo") -> RequestHeadFacts {
        var facts = RequestHeadFacts(target: "/mcp")
        facts.observe(name: "MCP-Protocol-Version", value: "2026-07-28")
        if let method { facts.observe(name: "Mcp-Method", value: method) }
        if let name { facts.observe(name: "Mcp-Name", value: name) }
        return facts
    }

    static let meta = #""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"form":{}},"sampling":{"tools":{}},"roots":{"listChanged":true},"experimental":{}},"io.modelcontextprotocol/logLevel":"info","progressToken":7}"#

    static func call(_ extra: String = "") -> String {
        #"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"a":1},"# + Self.meta + extra + "}}"
    }

    @Test func aWellFormedRequestIsReadWithItsEnvelope() throws {
        let request = try BridgedRequest.check(Self.body(Self.call()), facts: Self.facts()).get()
        #expect(request.id == .number("3") && request.method == "tools/call")
        #expect(Set(request.declaredCapabilities.keys) == ["elicitation", "sampling", "roots", "experimental"])
        #expect(request.logLevel == "info" && request.requestState == nil && request.inputResponses.isEmpty)
        // Only what the bridge can relay, roots without listChanged, nothing else declared.
        #expect(request.sessionCapabilities == Self.json(#"{"elicitation":{"form":{}},"sampling":{"tools":{}},"roots":{}}"#))
    }

    @Test func whatA2026ServerRefusesIsRefused() {
        func code(_ body: String, _ facts: RequestHeadFacts = Self.facts()) -> Int? {
            guard case .failure(let failure) = BridgedRequest.check(Self.body(body), facts: facts) else { return nil }
            #expect(failure.status == 400)
            return failure.code
        }
        #expect(code(Self.call(), Self.facts(method: nil)) == JSONRPCErrorCode.headerMismatch, "Mcp-Method missing")
        #expect(code(Self.call(), Self.facts(name: nil)) == JSONRPCErrorCode.headerMismatch, "Mcp-Name missing for tools/call")
        #expect(code(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#) == JSONRPCErrorCode.invalidParams, "no envelope")
        #expect(code(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#) == JSONRPCErrorCode.invalidParams, "no capabilities")
        #expect(code(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":[]}}}"#) == JSONRPCErrorCode.invalidParams, "capabilities not an object")
        #expect(code(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2027-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#) == JSONRPCErrorCode.unsupportedProtocolVersion)
        #expect(code(#"{"jsonrpc":"2.0","id":3,"result":{}}"#, Self.facts(method: nil, name: nil)) == JSONRPCErrorCode.invalidRequest, "no client responses in 2026-07-28")
        #expect(code(Self.call(#","requestState":7"#)) == JSONRPCErrorCode.invalidParams)
        #expect(code(Self.call(#","inputResponses":[]"#)) == JSONRPCErrorCode.invalidParams)
        // A notification needs its header, not an envelope.
        #expect(code(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#, Self.facts(method: "notifications/cancelled", name: nil)) == nil)
    }

    @Test func unsupportedVersionsNameWhatIsServed() {
        let failure = BridgedRequest.unsupportedVersion("2027-01-01", id: .number("1"))
        #expect(failure.data == Self.json(#"{"supported":["2026-07-28"],"requested":"2027-01-01"}"#))
        #expect(Self.json(failure.body)["error"]?["data"]?["supported"] == .array([.string("2026-07-28")]))
    }

    @Test func aRetryIsTheSameRequestWhateverItsEnvelopeStateAndAnswers() throws {
        let first = try BridgedRequest.check(Self.body(Self.call()), facts: Self.facts()).get()
        let retry = try BridgedRequest.check(
            Self.body(Self.call(#","requestState":"r1.k.x","inputResponses":{"upstream":{"action":"accept"}}"#)), facts: Self.facts()
        ).get()
        #expect(retry.requestState == "r1.k.x" && retry.inputResponses["upstream"]?["action"] == .string("accept"))
        #expect(first.digest == retry.digest)
        let other = try BridgedRequest.check(Self.body(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"a":2},"# + Self.meta + "}}"), facts: Self.facts()).get()
        #expect(other.digest != first.digest, "other arguments are another request")
    }

    @Test func theLegacyUpstreamGetsNoReservedKeysNoStateAndItsOwnID() throws {
        let retry = try BridgedRequest.check(Self.body(Self.call(#","requestState":"r1.k.x","inputResponses":{}"#)), facts: Self.facts()).get()
        let message = retry.legacyMessage(upstreamID: .string("bridge-9"))
        #expect(message == Self.json(#"{"jsonrpc":"2.0","id":"bridge-9","method":"tools/call","params":{"name":"echo","arguments":{"a":1},"_meta":{"progressToken":7}}}"#))
        #expect(retry.legacyMessage(upstreamID: nil)["id"] == nil)
    }

    @Test func upstreamMessagesAreClassified() {
        let id = JSONValue.string("bridge-1")
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","id":"bridge-1","result":{"content":[]}}"#), upstreamID: id)
                == .final(result: Self.json(#"{"content":[]}"#), error: nil))
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","id":"bridge-2","result":{}}"#), upstreamID: id) == .ignored, "another id")
        guard case .final(nil, .some(let error)) = BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","id":"bridge-1","result":{},"error":{}}"#), upstreamID: id) else {
            Issue.record("a response with both result and error is a malformed final answer")
            return
        }
        #expect(error["code"] == .number("-32603"))
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#), upstreamID: id) == .ping(id: .number("5")))
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","id":6,"method":"elicitation/create","params":{"message":"?"}}"#), upstreamID: id)
                == .input(id: .number("6"), method: "elicitation/create", params: Self.json(#"{"message":"?"}"#)))
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","id":7,"method":"tasks/get"}"#), upstreamID: id) == .unsupported(id: .number("7"), method: "tasks/get"))
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#), upstreamID: id)
                == .log(Self.json(#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#)))
        #expect(BridgeUpstreamMessage.classify(Self.json(#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#), upstreamID: id) == .ignored)
        #expect(BridgeUpstreamMessage.classify(.array([]), upstreamID: id) == .ignored)
    }

    @Test func anInputRequiredResultCarriesTheRequestAndTheState() {
        let result = BridgeMapping.inputRequiredResult(method: "elicitation/create", params: Self.json(#"{"message":"?"}"#), requestState: "r1.k.x")
        #expect(result == Self.json(#"{"resultType":"input_required","inputRequests":{"upstream":{"method":"elicitation/create","params":{"message":"?"}}},"requestState":"r1.k.x"}"#))
        #expect(BridgeMapping.neededCapability("sampling/createMessage") == "sampling" && BridgeMapping.neededCapability("ping") == nil)
    }

    // MARK: Reading an answer

    @Test func aJSONAnswerIsOneMessageOrABatchWhenItEnds() throws {
        var reader = try UpstreamMessageReader(contentType: "application/json; charset=utf-8", maxMessageBytes: 64, maxDepth: 8)
        #expect(try reader.feed(Array(#"{"jsonrpc":"2.0","#.utf8)).isEmpty)
        #expect(try reader.feed(Array(#""id":1,"result":{}}"#.utf8)).isEmpty)
        #expect(try reader.finish() == [Self.json(#"{"jsonrpc":"2.0","id":1,"result":{}}"#)])
        var batch = try UpstreamMessageReader(contentType: "application/json", maxMessageBytes: 64, maxDepth: 8)
        _ = try batch.feed(Array("[1,2]".utf8))
        #expect(try batch.finish() == [.number("1"), .number("2")])
    }

    @Test func anEventStreamGivesEachMessageAsItsEventEnds() throws {
        var reader = try UpstreamMessageReader(contentType: "text/event-stream", maxMessageBytes: 256, maxDepth: 8)
        #expect(try reader.feed(Array("event: message\r\ndata: {\"id\":1,".utf8)).isEmpty, "half an event")
        #expect(try reader.feed(Array("\"result\":{}}\r\n\r\n: keep-alive\n\ndata: {\"id\":2,\"method\":\"ping\"}\n".utf8)) == [Self.json(#"{"id":1,"result":{}}"#)])
        #expect(try reader.feed(Array("\n".utf8)) == [Self.json(#"{"id":2,"method":"ping"}"#)], "the comment event carries no data")
        #expect(try reader.feed(Array("data: {\"id\":3}".utf8)).isEmpty)
        #expect(try reader.finish().isEmpty, "an unfinished last event is never dispatched")
    }

    @Test func whatCannotBeReadFailsClosed() throws {
        #expect(throws: UpstreamMessageReader.Failure.unexpectedContentType("text/html")) {
            _ = try UpstreamMessageReader(contentType: "text/html", maxMessageBytes: 64, maxDepth: 8)
        }
        var json = try UpstreamMessageReader(contentType: "application/json", maxMessageBytes: 8, maxDepth: 8)
        #expect(throws: UpstreamMessageReader.Failure.tooLarge(limit: 8)) { _ = try json.feed(Array(#"{"a":"123456"}"#.utf8)) }
        var events = try UpstreamMessageReader(contentType: "text/event-stream", maxMessageBytes: 16, maxDepth: 8)
        #expect(throws: UpstreamMessageReader.Failure.tooLarge(limit: 16)) { _ = try events.feed(Array("data: 123456789012345678\n\n".utf8)) }
        var garbage = try UpstreamMessageReader(contentType: "text/event-stream", maxMessageBytes: 64, maxDepth: 8)
        #expect(throws: UpstreamMessageReader.Failure.self) { _ = try garbage.feed(Array("data: {\"a\":1,\"a\":2}\n\n".utf8)) }
        var deep = try UpstreamMessageReader(contentType: "application/json", maxMessageBytes: 64, maxDepth: 2)
        _ = try deep.feed(Array("[[[[1]]]]".utf8))
        #expect(throws: UpstreamMessageReader.Failure.self) { _ = try deep.finish() }
    }
}
