import BouncerCore
import BouncerTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Testing

@testable import BouncerProxy

/// `upstream_protocol: auto` on loopback: the gateway asks each upstream `server/discover`
/// (as a 2026-07-28 client, with the static credential), remembers only a conclusive answer,
/// and reports the era in `/readyz` and `mcp_bouncer_upstream_era`.
@Suite("Upstream era discovery on loopback", .serialized)
struct UpstreamEraLoopbackTests {
    let harness: LoopbackHarness

    init() throws {
        self.harness = try LoopbackHarness()
    }

    func discover(_ replies: [(reply: String, close: Bool)]) async throws -> (LoopbackHarness.Running, [String]) {
        let recorded = NIOLockedValueBox<[String]>([])
        let (upstream, _) = try scriptedUpstream(group: self.harness.group, replies: replies, recorded: recorded)
        var policy = LoopbackPolicy(self.harness).upstream("http://127.0.0.1:\(upstream.localAddress!.port!)/mcp")
            .resource("upstream_credentials:\n  static: { header: X-Api-Key, value: gateway-secret }")
        policy.upstreamProtocol = nil
        let running = try self.harness.start(policy)
        await running.gateway.discoverUpstreamEras()
        try await upstream.close().get()
        return (running, recorded.withLockedValue { $0 })
    }

    static func reply(_ status: String, _ body: String) -> (reply: String, close: Bool) {
        ("HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", true)
    }

    @Test func aModernUpstreamIsKnownAsOneAndSaysSo() async throws {
        let (running, requests) = try await self.discover([Self.reply("200 OK", #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#)])
        defer { running.stop() }
        let request = try #require(requests.first)
        #expect(request.hasPrefix("POST /mcp HTTP/1.1\r\n") && request.contains("MCP-Protocol-Version: 2026-07-28") && request.contains("Mcp-Method: server/discover"))
        #expect(request.contains("X-Api-Key: gateway-secret") && !request.contains("Mcp-Session-Id"))
        #expect(request.contains(#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#))
        let resource = try #require(running.gateway.resources.first)
        #expect(resource.era.era == .modern)
        #expect(running.gateway.readiness.text.contains("upstream /mcp: modern (server/discover: 2026-07-28)"))
        let metrics = String(decoding: running.gateway.metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(metrics, "mcp_bouncer_upstream_era", ["resource": "/mcp", "era": "modern"]) == 1)
        #expect(PrometheusText.value(metrics, "mcp_bouncer_upstream_era", ["resource": "/mcp", "era": "legacy"]) == 0)
    }

    @Test func aLegacyUpstreamRefusingTheMethodIsLegacy() async throws {
        let (running, _) = try await self.discover([Self.reply("400 Bad Request", #"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#)])
        defer { running.stop() }
        #expect(running.gateway.resources.first?.era.era == .legacy)
    }

    /// 401, 5xx and no answer say nothing: the era stays unknown and the next discovery asks again.
    @Test func anInconclusiveAnswerIsNeverRemembered() async throws {
        let (running, _) = try await self.discover([Self.reply("503 Service Unavailable", "")])
        defer { running.stop() }
        let resource = try #require(running.gateway.resources.first)
        #expect(resource.era.era == .unknown && resource.era.detail.contains("HTTP 503"))
        #expect(!running.gateway.notReadyReasons.contains { $0.contains("upstream") }, "an unknown era does not make the gateway unready")
        #expect(running.gateway.readiness.text.contains("upstream /mcp: unknown (server/discover inconclusive: HTTP 503)"))
        // Nobody listening now: still unknown, still asked.
        await running.gateway.discoverUpstreamEras()
        #expect(resource.era.era == .unknown)
    }

    /// An upstream taken for legacy is asked again when the bridge opens a session on it (it
    /// may have been upgraded since), in the background and only once a minute however often;
    /// once it is known as modern, 2026-07-28 requests pass through.
    @Test func aBridgedSessionMakesTheGatewayAskAgain() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let modern = #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#
        let initialize = #"{"jsonrpc":"2.0","id":{id},"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}"#
        let upstream = try routedUpstream(group: self.harness.group, routes: [
            ("server/discover", [("400 Bad Request", #"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#), ("200 OK", modern)]),
            (#""method":"initialize""#, [("200 OK\r\nMcp-Session-Id: s-1", initialize)]),
            ("notifications/initialized", [("202 Accepted", "")]),
            ("tools/call", [("200 OK", #"{"jsonrpc":"2.0","id":{id},"result":{"content":[]}}"#)]),
        ], recorded: recorded)
        defer { upstream.close(promise: nil) }
        var policy = LoopbackPolicy(self.harness).upstream("http://127.0.0.1:\(upstream.localAddress!.port!)/mcp").methods("tools/call: { echo: [read] }")
        policy.upstreamProtocol = nil
        let running = try self.harness.start(policy)
        defer { running.stop() }
        await running.gateway.discoverUpstreamEras()
        let resource = try #require(running.gateway.resources.first)
        #expect(resource.era.era == .legacy)
        let headers = [("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")]
        let body = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#
        let call = try TestClient(group: self.harness.group).send(port: running.port, uri: "/mcp", headers: headers + [("Authorization", "Bearer \(self.harness.token())")], body: body)
        #expect(call.status == .ok, "\(call.body)")
        #expect(call.body.contains(#""resultType":"complete""#), "bridged: \(call.body)")
        #expect(await eventually { resource.era.era == .modern }, "asked again: \(resource.era.detail)")
        #expect(recorded.withLockedValue { $0.filter { $0.contains("server/discover") }.count } == 2)
        // Now modern: passed through (the upstream's own result, no session), and not asked again.
        let again = try TestClient(group: self.harness.group).send(port: running.port, uri: "/mcp", headers: headers + [("Authorization", "Bearer \(self.harness.token())")], body: body)
        #expect(again.status == .ok && !again.body.contains("resultType"), "\(again.body)")
        #expect(recorded.withLockedValue { $0.filter { $0.contains("server/discover") }.count } == 2)
        #expect(recorded.withLockedValue { $0.last?.contains("Mcp-Session-Id") == false })
    }

    @Test func aFixedEraIsNotAsked() async throws {
        let recorded = NIOLockedValueBox<[String]>([])
        let (upstream, _) = try scriptedUpstream(group: self.harness.group, replies: [Self.reply("200 OK", "{}")], recorded: recorded)
        defer { upstream.close(promise: nil) }
        let running = try self.harness.start(LoopbackPolicy(self.harness).upstream("http://127.0.0.1:\(upstream.localAddress!.port!)/mcp"))
        defer { running.stop() }
        await running.gateway.discoverUpstreamEras()
        #expect(recorded.withLockedValue { $0 }.isEmpty)
        #expect(running.gateway.resources.first?.era.era == .legacy && running.gateway.resources.first?.era.detail == "upstream_protocol: legacy")
    }
}
