import BouncerCore

/// Where the gateway's components report events that are not requests (an authorization
/// server unreachable, a circuit opening, a certificate reload): the audit trail, when there
/// is one, and the metrics.
public struct GatewayEvents: Sendable {
    public let audit: AuditTrail?
    public let metrics: GatewayMetrics

    public init(audit: AuditTrail? = nil, metrics: GatewayMetrics = GatewayMetrics()) {
        self.audit = audit
        self.metrics = metrics
    }

    public func record(_ event: AuditEvent, _ details: [String: JSONValue]) {
        self.audit?.submit(.gateway(event, details))
    }

    /// An authorization server's keys or metadata could (not) be loaded; called on changes only.
    func authorizationServer(_ issuer: String, reachable: Bool, reason: String?) {
        self.metrics.gauge("mcp_bouncer_authorization_server_up", [("issuer", issuer)]).set(Int64(reachable ? 1 : 0))
        var details: [String: JSONValue] = ["issuer": .string(issuer)]
        if let reason { details["reason"] = .string(reason) }
        self.record(reachable ? .authorizationServerReachable : .authorizationServerUnreachable, details)
    }

    func circuit(_ issuer: String, open: Bool, reason: String?) {
        self.metrics.gauge("mcp_bouncer_authorization_server_circuit_open", [("issuer", issuer)]).set(Int64(open ? 1 : 0))
        var details: [String: JSONValue] = ["issuer": .string(issuer)]
        if let reason { details["reason"] = .string(reason) }
        self.record(open ? .circuitOpen : .circuitClosed, details)
    }

    func reload(_ what: String, succeeded: Bool, reason: String, error: String?) {
        self.metrics.counter("mcp_bouncer_reloads_total", [("what", what), ("result", succeeded ? "ok" : "failed")]).increment()
        var details: [String: JSONValue] = ["what": .string(what), "reason": .string(reason)]
        if let error { details["error"] = .string(error) }
        self.record(succeeded ? .reload : .reloadFailed, details)
    }

    /// A session id refused at 5b (``Enforcement/admitCall(_:facts:resource:claims:token:sessions:now:lastSeen:reserveAuditSlot:)``):
    /// a warning on the request's log and a `session_mismatch` record, with both users
    /// digested (never written).
    func sessionMismatch(_ mismatch: SessionMismatch, binding: SessionBinding?, session: String?, log: RequestLog) {
        let subject = binding.map { AuditDigestSource.hex(of: "\($0.issuer) \($0.subject)") } ?? "-"
        let sealedSubject = mismatch.sealedBinding.map { AuditDigestSource.hex(of: "\($0.issuer) \($0.subject)") }
        log.log(level: .warning, "session id refused", metadata: [
            "reason": "\(mismatch.code)", "subject_sha256": "\(subject)", "sealed_subject_sha256": "\(sealedSubject ?? "-")",
        ])
        self.record(.sessionMismatch, [
            "request_id": .string(log.requestID), "resource": .string(binding?.resource ?? "-"), "reason": .string(mismatch.code),
            "subject": .string(subject), "sealed_subject": sealedSubject.map(JSONValue.string) ?? .null,
            "session": session.map { .string(AuditDigestSource.hex(of: $0)) } ?? .null,
        ])
    }
}
