import Crypto
import W3CTraceContext

/// One entry of the audit trail, as the gateway hands it over: plain fields, cheap to build on
/// an event loop. The writer thread turns it into a record (``AuditRecordFormatter``): it
/// digests the token and session id, the tool arguments, formats the time and chains it.
/// The schema is documented field by field in `docs/audit.md`.
public enum AuditEntry: Sendable {
    case request(AuditRequest)
    /// A gateway event (`start`, `stop`, `reload`, ...) with its own members.
    case gateway(AuditEvent, [String: JSONValue])
    /// `count` records were dropped because the queue was full (`audit.on_overflow: drop`).
    case dropped(count: Int)
}

/// The `event` member of gateway records. Request records are `request`; the writer adds
/// `checkpoint` records itself.
public enum AuditEvent: String, Sendable, CaseIterable {
    case request
    case checkpoint
    case start
    case stop
    case reload
    case reloadFailed = "reload_failed"
    case authorizationServerUnreachable = "authorization_server_unreachable"
    case authorizationServerReachable = "authorization_server_reachable"
    case circuitOpen = "circuit_open"
    case circuitClosed = "circuit_closed"
    case dropped
    case sinkReopened = "sink_reopened"
    case toolDefinitionChanged = "tool_definition_changed"
    case serverRequest = "server_request"
    case sessionMismatch = "session_mismatch"
    case reloadKept = "reload_kept"
    /// The protocol bridge: a held upstream session opened, lost or ended; a call parked for
    /// input, resumed, expired; a retry refused.
    case bridge
}
