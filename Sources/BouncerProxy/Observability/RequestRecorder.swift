import BouncerCore
import NIOCore
import Prometheus
import NIOHTTP1

/// How a request to a protected resource ended, recorded once: its metrics and, when the
/// policy has an audit trail, its audit record, assembled here and nowhere else. One per
/// connection: it keeps the last token's audit digest, since a connection usually carries one
/// token for many requests (hashed once here rather than once per record).
struct RequestRecorder {
    private var lastToken: (token: String, digest: UInt64)?

    /// Records `request`. `status` is what the client got (0 when nothing); `exchange` gives
    /// the status, bytes and upstream time of a forwarded request.
    mutating func record(
        _ request: ClientRequest, resource: ResolvedResource, decision: AuditRequest.Decision, outcome: AuditRequest.Outcome, reason: String?,
        status: Int = 0, bytesOut: Int = 0, exchange: UpstreamExchange? = nil, gateway: Gateway, clientCertificate: String?
    ) {
        guard !request.recorded else { return }
        request.recorded = true
        let now = NIODeadline.now()
        let status = exchange.map { Int($0.status) } ?? status
        let bytesOut = exchange?.bytesOut ?? bytesOut
        let body = request.log.body
        let message = body?.messages.first
        let target = try? message?.target()
        let metrics = gateway.metrics
        resource.metrics.requests.count(httpMethod: request.head.method.rawValue, method: message?.method, target: target, outcome: outcome, decision: decision)
        if let reason, outcome == .refused || outcome == .upstreamError {
            metrics.rejection(resource: resource.policy.path, reason: reason)
        }
        resource.metrics.requestDuration.record(Duration.nanoseconds((now - request.startedAt).nanoseconds))
        resource.metrics.responseSize.record(Double(bytesOut))
        if let exchange {
            resource.metrics.upstreamDuration.record(Duration.nanoseconds((now - exchange.startedAt).nanoseconds))
            exchange.endStreamCount(metrics)
        }
        guard let audit = gateway.audit else { return }
        // Strings every request shares (the policy's path, the connection's peer, the cached
        // claims) are copied: the writer thread would otherwise retain and release the very
        // objects this event loop does on every request, and the contended reference counts
        // cost more than the copies.
        var entry = AuditRequest(requestID: request.log.requestID, httpMethod: request.head.method.rawValue, peer: Self.owned(request.peer))
        entry.resource = Self.owned(resource.policy.path)
        entry.subject = request.claims?.subject.map(Self.owned)
        entry.clientID = request.claims?.clientID.map(Self.owned)
        entry.issuer = request.claims.map { Self.owned($0.issuer) }
        if let token = request.token {
            if let last = self.lastToken, last.token == token {
                entry.token = AuditDigestSource(digest: last.digest)
            } else {
                let digest = AuditDigestSource.digest(of: token)
                self.lastToken = (token, digest)
                entry.token = AuditDigestSource(digest: digest)
            }
        }
        entry.clientCertificate = clientCertificate.map(Self.owned)
        if let body { entry.describe(body, keepingArguments: audit.keepsArguments) }
        entry.decision = decision
        entry.outcome = outcome
        entry.reason = reason
        entry.status = status
        entry.bytesIn = request.body?.readableBytes ?? 0
        entry.bytesOut = bytesOut
        entry.durationNanoseconds = (now - request.startedAt).nanoseconds
        entry.upstreamNanoseconds = exchange.map { (now - $0.startedAt).nanoseconds }
        entry.upstreamCredential = request.credential
        entry.session = request.facts.sessionID.map(AuditDigestSource.init)
        entry.protocolVersion = request.facts.protocolVersion
        entry.tokenBinding = request.binding?.name
        entry.tokenBindingKey = request.binding?.thumbprint
        entry.bridge = request.bridged?.outcome
        entry.upstreamProtocolVersion = request.bridged?.upstreamVersion
        entry.traceID = request.trace?.traceID
        audit.submit(.request(entry), reserved: request.auditSlot)
        request.auditSlot = false
    }

    /// A copy of `text` in storage of its own (see ``record(_:resource:decision:outcome:reason:status:bytesOut:exchange:gateway:clientCertificate:)``).
    private static func owned(_ text: String) -> String {
        let count = text.utf8.count
        return String(unsafeUninitializedCapacity: count) { buffer in
            _ = buffer.initialize(from: text.utf8)
            return count
        }
    }
}
