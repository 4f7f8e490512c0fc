import BouncerCore
import Testing

/// What an upstream's answer to `server/discover` says of its era: modern only with 2026-07-28
/// in `supportedVersions`, legacy when it plainly does not know the method, and nothing at all
/// from an answer that is an error of access, load or the network.
@Suite("Upstream era from server/discover")
struct UpstreamDiscoveryTests {
    static func judge(_ status: Int, _ body: String, type: String? = "application/json") -> UpstreamDiscovery.Verdict {
        UpstreamDiscovery.judge(status: status, contentType: type, body: Array(body.utf8))
    }

    @Test func onlyAStatelessVersionMakesAModernServer() {
        let modern = #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28","2025-11-25"],"capabilities":{},"resultType":"complete"}}"#
        #expect(Self.judge(200, modern) == .modern(versions: ["2026-07-28", "2025-11-25"]))
        let sse = "event: message\ndata: \(modern)\n\n"
        #expect(Self.judge(200, sse, type: "text/event-stream") == .modern(versions: ["2026-07-28", "2025-11-25"]), "Streamable HTTP may answer on a stream")
        guard case .legacy = Self.judge(200, #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"]}}"#) else {
            Issue.record("a server/discover without 2026-07-28 is not modern")
            return
        }
        guard case .legacy = Self.judge(200, #"{"jsonrpc":"2.0","id":1,"result":{}}"#) else {
            Issue.record("a result without supportedVersions is not modern")
            return
        }
    }

    @Test func aLegacyServerSaysItDoesNotKnowTheMethod() {
        for (status, body) in [
            (200, #"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#),
            (400, #"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#),
            (404, ""), (405, ""), (406, "Not Acceptable"), (415, ""),
        ] {
            guard case .legacy = Self.judge(status, body) else {
                Issue.record("\(status) \(body) is a legacy answer")
                continue
            }
        }
    }

    /// The MCP Python SDK 2.x answers a request without its `_meta` envelope 400 with -32602:
    /// a modern server refusing the request, not a legacy one.
    @Test func aModernServerRefusingTheRequestIsNotCountedLegacy() {
        for code in [-32602, -32020, -32021, -32022] {
            let body = #"{"jsonrpc":"2.0","id":1,"error":{"code":\#(code),"message":"params._meta is missing the required envelope key(s)"}}"#
            guard case .inconclusive(let reason) = Self.judge(400, body) else {
                Issue.record("\(code) is not a legacy answer")
                continue
            }
            #expect(reason.contains("\(code)"))
        }
    }

    @Test func accessLoadAndNetworkErrorsSayNothing() {
        for status in [401, 403, 407, 408, 429, 500, 502, 503, 504, 301, 302] {
            #expect(Self.judge(status, #"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}"#) == .inconclusive(reason: "HTTP \(status)"))
        }
        guard case .inconclusive = Self.judge(200, "<html>hello</html>", type: "text/html") else {
            Issue.record("a page is not an answer")
            return
        }
        guard case .inconclusive = Self.judge(200, #"{"jsonrpc":"2.0","id":7,"result":{"supportedVersions":["2026-07-28"]}}"#) else {
            Issue.record("an answer to another request id says nothing")
            return
        }
    }

    @Test func answersThatContradictTheEraMakeTheGatewayAskAgain() {
        let modern = MCPProtocol.statelessVersion
        #expect(UpstreamDiscovery.contradicts(era: .legacy, requestVersion: modern, status: 200), "a legacy server cannot serve a 2026-07-28 request")
        #expect(!UpstreamDiscovery.contradicts(era: .legacy, requestVersion: modern, status: 400))
        #expect(!UpstreamDiscovery.contradicts(era: .legacy, requestVersion: "2025-11-25", status: 200))
        #expect(UpstreamDiscovery.contradicts(era: .modern, requestVersion: modern, status: 404))
        #expect(!UpstreamDiscovery.contradicts(era: .modern, requestVersion: modern, status: 400), "a modern server may refuse one request")
        #expect(UpstreamDiscovery.contradicts(era: .unknown, requestVersion: modern, status: 503))
    }

    @Test func theSettingFixesTheEraOrLeavesItToDiscovery() throws {
        #expect(UpstreamEra(.auto) == .unknown && UpstreamEra(.legacy) == .legacy && UpstreamEra(.modern) == .modern)
        let base = responseTestPolicy(methods: "tools/list: []")
        #expect(try PolicyLoader.load(yaml: base, secrets: noSecrets).resources[0].upstreamProtocol == .auto)
        let legacy = responseTestPolicy(resource: "upstream_protocol: legacy", methods: "tools/list: []")
        #expect(try PolicyLoader.load(yaml: legacy, secrets: noSecrets).resources[0].upstreamProtocol == .legacy)
        let wrong = responseTestPolicy(resource: "upstream_protocol: 2026-07-28", methods: "tools/list: []")
        #expect(throws: PolicyValidationError.self) { try PolicyLoader.load(yaml: wrong, secrets: noSecrets) }
    }
}
