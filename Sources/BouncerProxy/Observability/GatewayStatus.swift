import BouncerCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import UnixSignals
import Prometheus

/// What `/readyz` and `/metrics` read of the running gateway.
struct GatewayStatus: Sendable {
    let current: GatewayReference
    let server: GatewayServer
    var gateway: Gateway { self.current.gateway }

    /// The exposition, with the gauges read at scrape time brought up to date.
    func metrics() -> [UInt8] {
        let metrics = self.gateway.metrics
        metrics.openConnections.set(Int64(self.server.openConnections))
        if let audit = self.gateway.audit { metrics.auditQueueDepth.set(Int64(audit.queueDepth)) }
        return metrics.exposition()
    }
}
