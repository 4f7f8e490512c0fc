import Foundation
import NIOCore
import BouncerCore
import BouncerTestSupport
import Testing

@testable import BouncerProxy

@Suite("Authorization-server call metrics")
struct FetchMetricsTests {
    @Test func callsAreCountedAndTimedByPurposeAndOutcome() throws {
        let metrics = GatewayMetrics()
        metrics.authorizationServerRequest(purpose: "token", outcome: "2xx", duration: .milliseconds(12))
        metrics.authorizationServerRequest(purpose: "token", outcome: "2xx", duration: .milliseconds(8))
        metrics.authorizationServerRequest(purpose: "token", outcome: "error", duration: .milliseconds(5000))
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(text, "mcp_bouncer_authorization_server_requests_total", ["purpose": "token", "outcome": "2xx"]) == 2)
        #expect(PrometheusText.value(text, "mcp_bouncer_authorization_server_requests_total", ["purpose": "token", "outcome": "error"]) == 1)
        #expect(PrometheusText.value(text, "mcp_bouncer_authorization_server_request_duration_seconds_count", ["purpose": "token"]) == 3)
        #expect(PrometheusText.value(text, "mcp_bouncer_authorization_server_request_duration_seconds_bucket", ["purpose": "token", "le": "0.01"]) == 1)
    }
}

@Suite("Verified-token cache")
struct VerifiedTokenCacheTests {
    @Test func entriesLiveUntilExpiryPlusLeeway() {
        let cache = VerifiedTokenCache(capacity: 10)
        let claims = AccessTokenClaims(issuer: "i", subject: "s", clientID: nil, audiences: ["a"], expiresAt: 100, notBefore: nil, issuedAt: nil, tokenID: nil, scopes: [])
        let key = VerifiedTokenCache.Key(resource: "/a/mcp", token: "t")
        cache.store(key, claims, leeway: 60, now: 50)
        #expect(cache.lookup(key, now: 159) == claims)
        #expect(cache.lookup(key, now: 160) == nil)
        #expect(VerifiedTokenCache(capacity: 0).lookup(key, now: 0) == nil)
    }

    @Test func aTokenIsCachedForOneResourceOnly() {
        let cache = VerifiedTokenCache(capacity: 10)
        let claims = AccessTokenClaims(issuer: "i", subject: "s", clientID: nil, audiences: ["a"], expiresAt: 100, notBefore: nil, issuedAt: nil, tokenID: nil, scopes: [])
        cache.store(VerifiedTokenCache.Key(resource: "/a/mcp", token: "t"), claims, leeway: 0, now: 50)
        #expect(cache.lookup(VerifiedTokenCache.Key(resource: "/b/mcp", token: "t"), now: 50) == nil)
        // Not a concatenation: "/a/mcp" + "x t" and "/a/mcp x" + "t" are different keys.
        cache.store(VerifiedTokenCache.Key(resource: "/a/mcp", token: "x t"), claims, leeway: 0, now: 50)
        #expect(cache.lookup(VerifiedTokenCache.Key(resource: "/a/mcp x", token: "t"), now: 50) == nil)
    }
}

@Suite("Metrics reference")
struct MetricsReferenceTests {
    /// docs/metrics.md lists every metric the code defines, with its type, and no other.
    @Test func everyMetricIsDocumented() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/metrics.md")
        let text = try String(contentsOf: file, encoding: .utf8)
        let rows = text.split(separator: "\n").filter { $0.hasPrefix("| `mcp_bouncer_") }.map { line in
            line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        #expect(rows.map { String($0[0].dropFirst().dropLast()) } == GatewayMetrics.catalogue.map(\.name))
        #expect(rows.map { $0[1] } == GatewayMetrics.catalogue.map(\.type))
        // Every name follows the conventions.
        for (name, type, _) in GatewayMetrics.catalogue {
            #expect(name.hasPrefix("mcp_bouncer_"))
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name)")
        }
    }

    /// Each metric in the catalogue is exposed once the gateway counts something.
    @Test func theExpositionCarriesTheHelpText() {
        let metrics = GatewayMetrics()
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains("# HELP mcp_bouncer_open_connections Client connections open now."))
        #expect(text.contains("# TYPE mcp_bouncer_audit_records_total counter"))
    }
}

@Suite("Metric labels")
struct MetricLabelTests {
    /// The one resource of a policy whose `methods:` block holds `methods` (YAML lines indented
    /// by six spaces).
    static func resource(methods: String) throws -> ResourcePolicy {
        try PolicyLoader.load(yaml: """
            listen: 127.0.0.1:0
            public_url: http://127.0.0.1:8443
            authorization_servers:
              local: { issuer: http://127.0.0.1:1/issuer }
            resources:
              - path: /mcp
                authorization_server: local
                upstream: http://127.0.0.1:2/mcp
                methods:
            \(methods)
            """, secrets: .empty).resources[0]
    }

    /// A client spraying tool and method names cannot grow the series: unknown ones are
    /// `other` (the label sets are the policy's, resolved when the gateway is built).
    @Test func sprayedNamesCountAsOther() throws {
        let resource = try Self.resource(methods: """
                  tools/call: { echo: [read], "admin_*": [admin] }
            """)
        let metrics = GatewayMetrics()
        let requests = metrics.resource(resource).requests
        let total = 5000
        for index in 0..<total {
            requests.count(httpMethod: "POST", method: "tools/call", target: "tool-\(index)", outcome: .refused, decision: .denied)
            requests.count(httpMethod: "POST", method: "x/\(index)", target: nil, outcome: .refused, decision: .denied)
            requests.count(httpMethod: "M\(index)", method: nil, target: nil, outcome: .refused, decision: .denied)
        }
        requests.count(httpMethod: "POST", method: "tools/call", target: "admin_purge", outcome: .forwarded, decision: .allowed)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        let series = PrometheusText.samples(text).filter { $0.name == "mcp_bouncer_requests_total" }
        #expect(series.count == 3, "\(series.map(\.labels))")
        #expect(PrometheusText.value(text, "mcp_bouncer_requests_total", ["method": "tools/call", "target": "other"]) == Double(total))
        #expect(PrometheusText.value(text, "mcp_bouncer_requests_total", ["method": "other", "target": ""]) == Double(total * 2))
        #expect(PrometheusText.value(text, "mcp_bouncer_requests_total", ["target": "admin_*", "outcome": "forwarded"]) == 1)
    }

    /// Every way a request is labelled, from the slots resolved when the gateway was built.
    @Test func eachRequestCountsUnderThePolicysLabels() throws {
        let resource = try Self.resource(methods: """
                  tools/list: []
                  "notifications/*": []
                  tools/call: { echo: [read], "admin_*": [admin] }
                  resources/read: { "file:///docs/*": [read] }
            """)
        let metrics = GatewayMetrics()
        let requests = metrics.resource(resource).requests
        requests.count(httpMethod: "POST", method: "tools/call", target: "echo", outcome: .forwarded, decision: .allowed)
        requests.count(httpMethod: "POST", method: "tools/call", target: "admin_x", outcome: .upstreamError, decision: .allowed)
        requests.count(httpMethod: "POST", method: "tools/call", target: nil, outcome: .refused, decision: .denied)
        requests.count(httpMethod: "POST", method: "resources/read", target: "file:///docs/a", outcome: .clientClosed, decision: .allowed)
        requests.count(httpMethod: "POST", method: "tools/list", target: nil, outcome: .connectionClosed, decision: .allowed)
        requests.count(httpMethod: "POST", method: "tools/list", target: nil, outcome: .refused, decision: .allowed)
        requests.count(httpMethod: "POST", method: "prompts/get", target: "p", outcome: .refused, decision: .denied)
        requests.count(httpMethod: "POST", method: "notifications/x", target: nil, outcome: .forwarded, decision: .allowed)
        requests.count(httpMethod: "GET", method: nil, target: nil, outcome: .forwarded, decision: .allowed)
        requests.count(httpMethod: "DELETE", method: nil, target: nil, outcome: .forwarded, decision: .allowed)
        requests.count(httpMethod: "PUT", method: nil, target: nil, outcome: .refused, decision: .denied)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        let series = PrometheusText.samples(text).filter { $0.name == "mcp_bouncer_requests_total" }
        let labels = Set(series.map { "\($0.labels["method"] ?? "?") \($0.labels["target"] ?? "?") \($0.labels["outcome"] ?? "?") \($0.value)" })
        #expect(labels == [
            "tools/call echo forwarded 1.0", "tools/call admin_* upstream_error 1.0", "tools/call  denied 1.0",
            "resources/read file:///docs/* client_closed 1.0", "tools/list  connection_closed 1.0", "tools/list  refused 1.0",
            "prompts/get  denied 1.0", "other  forwarded 1.0", "GET  forwarded 1.0", "DELETE  forwarded 1.0", "other  denied 1.0",
        ])
        #expect(series.allSatisfy { $0.labels["resource"] == "/mcp" })
    }

    /// A reloaded policy's gateway resolves its slots again and counts into the same series.
    @Test func aReloadCountsIntoTheSameSeries() throws {
        let resource = try Self.resource(methods: """
                  tools/call: { echo: [read] }
            """)
        let metrics = GatewayMetrics()
        metrics.resource(resource).requests.count(httpMethod: "POST", method: "tools/call", target: "echo", outcome: .forwarded, decision: .allowed)
        metrics.resource(resource).requests.count(httpMethod: "POST", method: "tools/call", target: "echo", outcome: .forwarded, decision: .allowed)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(PrometheusText.value(text, "mcp_bouncer_requests_total", ["target": "echo", "outcome": "forwarded"]) == 2)
    }
}
