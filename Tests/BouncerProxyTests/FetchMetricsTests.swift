@testable import CoreMetrics
import MetricsTestKit
import NIOCore
import Testing

@testable import BouncerProxy

@Suite("Authorization-server call metrics")
struct FetchMetricsTests {
    @Test func callsAreCountedAndTimedByPurposeAndOutcome() throws {
        let metrics = TestMetrics()
        MetricsSystem.bootstrapInternal(metrics)
        let recorder = FetchMetrics()
        recorder.record(purpose: "token", outcome: "2xx", duration: .milliseconds(12))
        recorder.record(purpose: "token", outcome: "2xx", duration: .milliseconds(8))
        recorder.record(purpose: "token", outcome: "error", duration: .milliseconds(5000))
        let ok = try metrics.expectCounter("mcp_bouncer_authorization_server_requests_total", [("purpose", "token"), ("outcome", "2xx")])
        #expect(ok.totalValue == 2)
        let failed = try metrics.expectCounter("mcp_bouncer_authorization_server_requests_total", [("purpose", "token"), ("outcome", "error")])
        #expect(failed.totalValue == 1)
        let timer = try metrics.expectTimer("mcp_bouncer_authorization_server_request_duration_seconds", [("purpose", "token")])
        #expect(timer.values.count == 3)
    }
}
