import BouncerCore
import Logging

/// The one place where the gateway reports what happens to it apart from requests (whose
/// record is ``RequestRecorder``'s): each event is one method that writes its log line, its
/// metric and its audit record together, so no other type submits an audit event or names a
/// metric. The audit trail's own `start`, `stop` and `dropped` records are written by the
/// trail (``AuditTrail/start(details:)``).
package struct GatewayEvents: Sendable {
    package let audit: AuditTrail?
    package let metrics: GatewayMetrics
    let logger: Logger

    package init(audit: AuditTrail? = nil, metrics: GatewayMetrics = GatewayMetrics(), logger: Logger = Logger(label: "mcp-bouncer")) {
        self.audit = audit
        self.metrics = metrics
        self.logger = logger
    }

    private func record(_ event: AuditEvent, _ details: [String: JSONValue]) {
        self.audit?.submit(.gateway(event, details))
    }

    // MARK: Authorization servers

    /// An authorization server's keys or metadata could (not) be loaded; called on changes only.
    func authorizationServer(_ issuer: String, reachable: Bool, reason: String?) {
        self.metrics.authorizationServerUp(issuer: issuer, up: reachable)
        var details: [String: JSONValue] = ["issuer": .string(issuer)]
        if let reason { details["reason"] = .string(reason) }
        if reachable {
            self.logger.notice("authorization server reachable", metadata: ["issuer": "\(issuer)"])
        } else {
            self.logger.error("authorization server unreachable: tokens it issued cannot be verified", metadata: ["issuer": "\(issuer)", "reason": "\(reason ?? "-")"])
        }
        self.record(reachable ? .authorizationServerReachable : .authorizationServerUnreachable, details)
    }

    /// The circuit breaker in front of an authorization server opened (calls fail fast) or closed.
    func circuit(_ issuer: String, open: Bool, reason: String?) {
        self.metrics.circuitOpen(issuer: issuer, open: open)
        var details: [String: JSONValue] = ["issuer": .string(issuer)]
        if let reason { details["reason"] = .string(reason) }
        if open {
            self.logger.error("authorization server failing; calls fail fast for a while", metadata: ["issuer": "\(issuer)", "reason": "\(reason ?? "-")"])
        } else {
            self.logger.notice("authorization server answering again", metadata: ["issuer": "\(issuer)"])
        }
        self.record(open ? .circuitOpen : .circuitClosed, details)
    }

    // MARK: Reloads

    /// A policy reload took effect (SIGHUP, `run --watch`); `kept` are the restart-only
    /// settings it changed, whose running values stay.
    func policyReloaded(file: String, reason: String, resources: [ResourcePolicy], kept: [String]) {
        self.metrics.reload(what: "policy", succeeded: true)
        for setting in kept {
            self.logger.warning("a reloaded policy changed a setting that takes a restart; the running value is kept", metadata: ["setting": "\(setting)"])
            self.record(.reloadKept, ["setting": .string(setting)])
        }
        self.logger.notice("policy reloaded", metadata: [
            "file": "\(file)", "reason": "\(reason)", "resources": "\(resources.map(\.path).joined(separator: ", "))",
        ])
        self.record(.reload, [
            "what": .string("policy"), "reason": .string(reason), "file": .string(file), "resources": .array(resources.map { .string($0.uri.description) }),
        ])
    }

    /// A policy reload failed: the previous policy stays in force.
    func policyReloadFailed(file: String, reason: String, problems: [String]) {
        self.metrics.reload(what: "policy", succeeded: false)
        self.logger.error("policy reload failed; the previous policy stays in force", metadata: [
            "file": "\(file)", "reason": "\(reason)", "problems": "\(problems.joined(separator: "; "))",
        ])
        self.record(.reloadFailed, ["what": .string("policy"), "reason": .string(reason), "file": .string(file), "error": .array(problems.map(JSONValue.string))])
    }

    /// The client-facing certificate was reloaded, or could not be (the previous one stays).
    func certificateReloaded(_ certificate: String, reason: String, error: String?) {
        self.metrics.reload(what: "tls_certificate", succeeded: error == nil)
        var details: [String: JSONValue] = ["what": .string("tls_certificate"), "reason": .string(reason), "file": .string(certificate)]
        if let error {
            self.logger.error("TLS certificate reload failed; keeping the previous certificate", metadata: ["reason": "\(reason)", "error": "\(error)"])
            details["error"] = .string(error)
        } else {
            self.logger.info("TLS certificate reloaded", metadata: ["reason": "\(reason)", "certificate": "\(certificate)"])
        }
        self.record(error == nil ? .reload : .reloadFailed, details)
    }

    // MARK: What upstreams send

    /// What `server/discover` showed of an upstream's era: the metric always, a log line
    /// (info when the era is known, a warning while it is not).
    func upstreamEra(resource: String, era: UpstreamEra, detail: String, changed: Bool) {
        self.metrics.upstreamEra(resource: resource, era: era)
        let metadata: Logger.Metadata = ["resource": "\(resource)", "era": "\(era.rawValue)", "detail": "\(detail)"]
        if era == .unknown {
            self.logger.warning("upstream MCP era unknown; asked again at the next reload", metadata: metadata)
        } else {
            self.logger.info(changed ? "upstream MCP era learnt" : "upstream MCP era confirmed", metadata: metadata)
        }
    }

    /// A tool definition in a list that does not match its pin (`tool_pins`): once per tool
    /// and definition.
    func toolDefinitionChanged(resource: String, _ finding: ToolFinding, action: String) {
        let kind = finding.pinned == nil ? "unpinned" : "changed"
        self.metrics.toolDefinitionChange(resource: resource, finding: kind, action: action)
        self.logger.warning(finding.pinned == nil ? "tool was never approved" : "tool definition changed since it was approved", metadata: [
            "resource": "\(resource)", "tool": "\(finding.name)", "sha256": "\(finding.seen)", "pinned_sha256": "\(finding.pinned ?? "-")", "action": "\(action)",
        ])
        self.record(.toolDefinitionChanged, [
            "resource": .string(resource), "tool": .string(finding.name), "sha256": .string(finding.seen),
            "pinned_sha256": finding.pinned.map(JSONValue.string) ?? .null, "action": .string(action),
        ])
    }

    /// What the elicitation and sampling guard decided on one server-to-client request.
    func serverRequestJudged(_ review: ServerRequestReview, origin: ServerRequestOrigin) {
        let outcome = review.blocked?.rawValue ?? "passed"
        self.metrics.serverRequest(resource: origin.resource.policy.path, method: review.method, outcome: outcome)
        var metadata: Logger.Metadata = [
            "resource": "\(origin.resource.policy.path)", "method": "\(review.method)", "form": "\(review.form.rawValue)", "outcome": "\(outcome)",
            "request_id": "\(origin.requestID)",
        ]
        if let detail = review.detail { metadata["detail"] = "\(detail)" }
        if review.blocked != nil {
            self.logger.warning("server-to-client request blocked", metadata: metadata)
        } else {
            self.logger.info("server-to-client request passed", metadata: metadata)
        }
        self.record(.serverRequest, Gateway.auditDetails(review, origin: origin))
    }

    // MARK: The protocol bridge

    enum BridgeEvent: String {
        case sessionOpened = "session_opened"
        case sessionLost = "session_lost"
        case sessionEnded = "session_ended"
        case parked
        case resumed
        case resumeRefused = "resume_refused"
        case expired
        case listening
        case listenEnded = "listen_ended"
    }

    /// What the bridge did besides answering a request: its log line (info; warning for a
    /// lost session, an expiry or a refused retry), the `mcp_bouncer_bridge_events_total`
    /// metric and a `bridge` audit record with the subject digested.
    func bridge(_ event: BridgeEvent, resource: String, subject: String?, details: [String: JSONValue]) {
        self.metrics.bridgeEvent(resource: resource, event: event.rawValue)
        var metadata: Logger.Metadata = ["resource": "\(resource)", "event": "\(event.rawValue)"]
        for (key, value) in details { metadata[key] = "\(value.stringValue ?? value.serialized)" }
        switch event {
        case .sessionLost, .expired, .resumeRefused: self.logger.warning("bridge: \(event.rawValue)", metadata: metadata)
        default: self.logger.info("bridge: \(event.rawValue)", metadata: metadata)
        }
        var record = details
        record["action"] = .string(event.rawValue)
        record["resource"] = .string(resource)
        if let subject { record["subject"] = .string(AuditDigestSource.hex(of: subject)) }
        self.record(.bridge, record)
    }

    // MARK: Sessions

    /// A session id refused at 5b (``Enforcement/admitCall(_:facts:resource:claims:token:sessions:clock:lastSeen:auditSlots:)``):
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
