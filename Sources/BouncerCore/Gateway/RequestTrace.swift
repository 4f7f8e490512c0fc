import W3CTraceContext

/// W3C Trace Context for a request: a valid `traceparent` from the client is kept (and reaches
/// the upstream unchanged); without one, or with one that is malformed or repeated, the gateway
/// starts a trace and sends the upstream its own `traceparent` instead (Trace Context 4.3: a
/// malformed `traceparent` restarts the trace, and `tracestate` goes with it). The trace id is
/// in the audit record, so an audit line, the upstream's logs and a tracing backend meet on it.
public struct RequestTrace: Sendable {
    public var traceID: TraceID
    /// The `traceparent` the upstream gets in place of the client's `traceparent` and
    /// `tracestate`; `nil` when the client's are forwarded as they are.
    public var replacement: String?

    public static func resolve(_ facts: RequestHeadFacts, using generator: inout some RandomNumberGenerator) -> RequestTrace {
        if let header = facts.traceparent, let context = try? TraceContext(traceParentHeaderValue: header) {
            return RequestTrace(traceID: context.traceID, replacement: nil)
        }
        let context = TraceContext(
            traceID: .random(using: &generator), spanID: .random(using: &generator), flags: [], state: TraceState()
        )
        return RequestTrace(traceID: context.traceID, replacement: context.traceParentHeaderValue)
    }

    /// Whether `name` is a trace context field (replaced with ``replacement``).
    public static func isTraceField(_ name: String) -> Bool {
        let count = name.utf8.count
        return (count == 11 && name.equalsIgnoringASCIICase("traceparent")) || (count == 10 && name.equalsIgnoringASCIICase("tracestate"))
    }
}
