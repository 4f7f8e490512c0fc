import BouncerCore
import Testing

@Suite("JSON parsing")
struct JSONParserTests {
    @Test func numbersKeepTheirSpelling() throws {
        let value = try JSONParser().parse(#"{"a":1.0,"b":-0,"c":12345678901234567890,"d":1e3}"#)
        #expect(value["a"] == .number("1.0"))
        #expect(value["c"] == .number("12345678901234567890"))
        #expect(value["d"]?.int64Value == 1000)
    }

    @Test func escapesAndUnicode() throws {
        let value = try JSONParser().parse(#"["a\"b\\c\/\n", "\u00e9\ud83d\ude00", "ü"]"#)
        #expect(value == .array([.string("a\"b\\c/\n"), .string("é😀"), .string("ü")]))
    }

    @Test("refused input", arguments: [
        #"{"a":1,"a":2}"#, "[1,]", "{\"a\":1}x", "01", "1.", "-", #""\ud800""#, #""\x""#, "\"a\nb\"", "nul", "", "{'a':1}",
    ])
    func refused(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser().parse(text) }
    }

    @Test("the client is told the class of a parse error and where, never text from its body")
    func parseErrorsEchoNothing() {
        for (body, expected) in [
            (#"{"<script>":1,"<script>":2}"#, "Parse error: a duplicate object key at byte 14"),
            ("{\"a\":1}x", "Parse error: not valid JSON at byte 7"),
        ] {
            do {
                _ = try JSONRPCBody.parse(Array(body.utf8), maxDepth: 64)
                Issue.record("\(body) parsed")
            } catch {
                #expect(error.message == expected)
                #expect(!error.message.contains("script"))
            }
        }
    }

    @Test func invalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser().parse([0x22, 0xC3, 0x28, 0x22]) }
    }

    @Test func depthLimit() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSONParser(maxDepth: 64).parse(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSONParser(maxDepth: 64).parse(ok)
    }

    @Test func serialisationRoundTrips() throws {
        let text = #"{"a":[1,true,null,"x\"y"],"b":{"c":-2.5e1}}"#
        #expect(try JSONParser().parse(text).serialized == text)
    }
}

@Suite("JSON-RPC classification")
struct JSONRPCTests {
    func parse(_ text: String) throws(JSONRPCFailure) -> JSONRPCBody {
        try JSONRPCBody.parse(Array(text.utf8), maxDepth: 64)
    }

    @Test func requestNotificationResponse() throws {
        #expect(try self.parse(#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).messages == [.request(id: .string("a"), method: "tools/list", params: nil)])
        #expect(try self.parse(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).messages == [.notification(method: "notifications/initialized", params: nil)])
        #expect(try self.parse(#"{"jsonrpc":"2.0","id":3,"result":{}}"#).messages == [.response(id: .number("3"))])
    }

    /// A single message and a batch read the same through `messages`, whatever holds them.
    @Test func singleAndBatchMessagesReadAlike() throws {
        let single = try self.parse(#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        #expect(!single.isBatch)
        #expect(single.messages.count == 1)
        #expect(single.messages.map(\.method) == ["ping"])
        #expect(single.errorID == .number("1"))
        let batchOfOne = try self.parse(#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        #expect(batchOfOne.isBatch)
        #expect(batchOfOne.errorID == nil)
        #expect(batchOfOne.messages == single.messages)
        let batch = try self.parse(#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#)
        #expect(batch.messages.count == 2)
        #expect(Array(batch.messages.reversed()).map(\.method) == ["notifications/initialized", "ping"])
        #expect(batch.messages != single.messages)
        #expect(JSONRPCMessages([]).isEmpty)
    }

    @Test("invalid requests", arguments: [
        (#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, -32600),
        (#"{"id":1,"method":"x"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":null,"method":"x"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":""}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#, -32600),
        (#"{"jsonrpc":"2.0"}"#, -32600),
        (#"[]"#, -32600),
        (#""hello""#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":"x","method":"y"}"#, -32700),
        (#"{"#, -32700),
    ])
    func invalid(text: String, code: Int) {
        #expect(throws: JSONRPCFailure.self) { try self.parse(text) }
        do {
            _ = try self.parse(text)
        } catch {
            #expect(error.code == code)
            #expect(error.status == 400)
        }
    }

    @Test func invalidRequestKeepsTheIdWhenKnown() {
        do {
            _ = try self.parse(#"{"jsonrpc":"1.0","id":7,"method":"x"}"#)
            Issue.record("expected a failure")
        } catch {
            #expect(error.id == .number("7"))
            #expect(error.body == #"{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"Invalid Request: jsonrpc must be \"2.0\""}}"#)
        }
    }

    @Test func targetOfToolsCall() throws {
        let body = try self.parse(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_issues"}}"#)
        #expect(try body.messages[0].target() == "list_issues")
        let missing = try self.parse(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#)
        #expect(throws: JSONRPCFailure.self) { try missing.messages[0].target() }
    }
}
