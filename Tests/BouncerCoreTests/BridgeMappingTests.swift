import BouncerCore
import Testing

/// The protocol bridge's message rules (issue 26), each alone: discover from initialize, result
/// completion, error mapping, `_meta` stripping.
@Suite("Bridge mapping")
struct BridgeMappingTests {
    static func json(_ text: String) -> JSONValue { try! JSONParser(maxDepth: 32).parse(text) }

    @Test func discoverIsAnsweredFromTheUpstreamsInitializeResult() {
        let initialize = Self.json("""
            {"protocolVersion":"2025-06-18","serverInfo":{"name":"jira","version":"3.1"},"instructions":"Use list_issues first.",
             "capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true,"listChanged":true},"prompts":{},
                             "logging":{},"experimental":{"x":{}},"tasks":{"list":{}}}}
            """)
        let discover = BridgeMapping.discoverResult(fromInitialize: initialize)
        #expect(discover["supportedVersions"] == .array([.string("2026-07-28"), .string("2025-06-18")]))
        #expect(discover["capabilities"] == Self.json(#"{"tools":{},"resources":{},"prompts":{},"logging":{}}"#),
                "only what the bridge carries; no listChanged or subscribe before subscriptions are bridged")
        #expect(discover["instructions"] == .string("Use list_issues first."))
        #expect(discover["_meta"]?["io.modelcontextprotocol/serverInfo"]?["name"] == .string("jira"))
        #expect(discover["resultType"] == .string("complete") && discover["ttlMs"] == .number("0") && discover["cacheScope"] == .string("private"))
        let bare = BridgeMapping.discoverResult(fromInitialize: Self.json(#"{"protocolVersion":"2026-07-28"}"#))
        #expect(bare["supportedVersions"] == .array([.string("2026-07-28")]) && bare["capabilities"] == .object([:]) && bare["_meta"] == nil)
    }

    @Test func resultsAreCompletedForAModernClient() {
        let list = Self.json(#"{"tools":[{"name":"echo"}]}"#)
        let shared = BridgeMapping.completeResult(list, method: "tools/list", variesByCaller: false)
        #expect(shared == Self.json(#"{"tools":[{"name":"echo"}],"resultType":"complete","ttlMs":0,"cacheScope":"public"}"#))
        let filtered = BridgeMapping.completeResult(Self.json(#"{"tools":[],"cacheScope":"public"}"#), method: "tools/list", variesByCaller: true)
        #expect(filtered["cacheScope"] == .string("private"), "a filtered list is private whatever the upstream said")
        let call = BridgeMapping.completeResult(Self.json(#"{"content":[]}"#), method: "tools/call", variesByCaller: true)
        #expect(call == Self.json(#"{"content":[],"resultType":"complete"}"#), "no cache hints on a call")
        let own = BridgeMapping.completeResult(Self.json(#"{"contents":[],"ttlMs":5000,"resultType":"complete"}"#), method: "resources/read", variesByCaller: false)
        #expect(own["ttlMs"] == .number("5000") && own["cacheScope"] == .string("public"))
        #expect(BridgeMapping.completeResult(.array([]), method: "tools/list", variesByCaller: false) == .array([]))
    }

    @Test func legacyErrorsAreMapped() {
        let notFound = Self.json(#"{"code":-32002,"message":"Resource not found","data":{"uri":"x://y"}}"#)
        #expect(BridgeMapping.mapError(notFound) == Self.json(#"{"code":-32602,"message":"Resource not found","data":{"uri":"x://y"}}"#))
        let other = Self.json(#"{"code":-32601,"message":"no"}"#)
        #expect(BridgeMapping.mapError(other) == other)
    }

    @Test func theUpstreamGetsNoReservedMetaKeys() {
        let params = Self.json("""
            {"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},
             "io.modelcontextprotocol/logLevel":"info","progressToken":7,"traceparent":"00-abc-def-01","vendor/x":true}}
            """)
        #expect(BridgeMapping.legacyParams(params) == Self.json(#"{"name":"echo","_meta":{"progressToken":7,"traceparent":"00-abc-def-01","vendor/x":true}}"#))
        let only = Self.json(#"{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#)
        #expect(BridgeMapping.legacyParams(only) == Self.json(#"{"name":"echo"}"#))
        #expect(BridgeMapping.legacyParams(nil) == nil)
        #expect(BridgeMapping.legacyParams(Self.json(#"{"name":"echo"}"#)) == Self.json(#"{"name":"echo"}"#))
    }
}
