import BouncerCore
import Testing

/// `subscriptions/listen` served from a legacy upstream (issue 26): what a client asks for,
/// what the upstream lets the bridge honour, and which upstream notifications reach the
/// listening client, tagged.
@Suite("Subscription filters")
struct SubscriptionFilterTests {
    static func json(_ text: String) -> JSONValue { try! JSONParser(maxDepth: 32).parse(text) }

    @Test func aRequestedFilterIsReadStrictly() {
        let filter = SubscriptionFilter(requested: Self.json(#"{"toolsListChanged":true,"resourceSubscriptions":["a://1","a://1","b://2"],"taskIds":["x"]}"#))
        #expect(filter == SubscriptionFilter(toolsListChanged: true, resourceSubscriptions: ["a://1", "b://2"]), "duplicates once; extension keys ignored")
        #expect(SubscriptionFilter(requested: Self.json(#"{}"#)) == SubscriptionFilter())
        for bad in [#"[]"#, #"{"toolsListChanged":"yes"}"#, #"{"resourceSubscriptions":"a://1"}"#, #"{"resourceSubscriptions":[1]}"#, #"{"resourceSubscriptions":[""]}"#] {
            #expect(SubscriptionFilter(requested: Self.json(bad)) == nil, "\(bad)")
        }
        #expect(SubscriptionFilter(requested: nil) == nil)
        let many = JSONValue.object(["resourceSubscriptions": .array((0...100).map { .string("r://\($0)") })])
        #expect(SubscriptionFilter(requested: many) == nil, "at most 100 URIs")
    }

    @Test func onlyWhatTheUpstreamAnnouncedIsHonoured() {
        let requested = SubscriptionFilter(toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true, resourceSubscriptions: ["a://1", "b://2"])
        let initialize = Self.json(#"{"capabilities":{"tools":{"listChanged":true},"prompts":{"listChanged":false},"resources":{"subscribe":true}}}"#)
        let honoured = requested.honoured(byUpstream: initialize, subscribed: ["b://2"])
        #expect(honoured == SubscriptionFilter(toolsListChanged: true, resourceSubscriptions: ["b://2"]))
        #expect(honoured.acknowledgment(subscriptionID: .string("l-1")) == Self.json("""
            {"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged",
             "params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["b://2"]},"_meta":{"io.modelcontextprotocol/subscriptionId":"l-1"}}}
            """))
    }

    @Test func notificationsAreTaggedOrDropped() {
        let filter = SubscriptionFilter(toolsListChanged: true, resourceSubscriptions: ["file:///docs", "x://a"])
        let id = JSONValue.number("7")
        #expect(filter.relay(Self.json(#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#), subscriptionID: id)
                == Self.json(#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":7}}}"#))
        #expect(filter.relay(Self.json(#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#), subscriptionID: id) == nil, "not honoured")
        let update = { (uri: String) in Self.json(#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"\#(uri)","_meta":{"k":1}}}"#) }
        #expect(filter.relay(update("file:///docs/a.md"), subscriptionID: id)?["params"]?["_meta"] == Self.json(#"{"k":1,"io.modelcontextprotocol/subscriptionId":7}"#))
        #expect(filter.relay(update("x://a"), subscriptionID: id) != nil)
        #expect(filter.relay(update("file:///docs2/a.md"), subscriptionID: id) == nil, "a sibling is not under the subscribed URI")
        #expect(filter.relay(update("x://ab"), subscriptionID: id) == nil)
        #expect(filter.relay(Self.json(#"{"jsonrpc":"2.0","id":1,"method":"notifications/tools/list_changed"}"#), subscriptionID: id) == nil, "a request")
        #expect(filter.relay(Self.json(#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#), subscriptionID: id) == nil)
    }
}
