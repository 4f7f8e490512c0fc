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

    /// The trace a valid `traceparent` value names, as it is forwarded.
    public init?(traceparent: String) {
        guard let context = try? TraceContext(traceParentHeaderValue: traceparent) else { return nil }
        self.init(traceID: context.traceID, replacement: nil)
    }

    public init(traceID: TraceID, replacement: String?) {
        self.traceID = traceID
        self.replacement = replacement
    }

    public static func resolve(_ facts: RequestHeadFacts, using generator: inout some RandomNumberGenerator) -> RequestTrace {
        if let header = facts.traceparent, let context = try? TraceContext(traceParentHeaderValue: header) {
            return RequestTrace(traceID: context.traceID, replacement: nil)
        }
        let traceID = TraceID.random(using: &generator)
        let spanID = SpanID.random(using: &generator)
        return RequestTrace(traceID: traceID, replacement: Self.traceparent(traceID, spanID))
    }

    /// `00-<trace id>-<span id>-00`: version 0, not sampled (the gateway records no spans).
    /// Written into one string (the package's formatter interpolates four).
    static func traceparent(_ traceID: TraceID, _ spanID: SpanID) -> String {
        String(unsafeUninitializedCapacity: 55) { buffer in
            var index = 0
            func put(_ byte: UInt8) {
                buffer[index] = byte
                index += 1
            }
            func hex(_ bytes: UnsafeRawBufferPointer) {
                for byte in bytes {
                    put(Hex.digits[Int(byte >> 4)])
                    put(Hex.digits[Int(byte & 0x0F)])
                }
            }
            put(UInt8(ascii: "0"))
            put(UInt8(ascii: "0"))
            put(UInt8(ascii: "-"))
            withUnsafeBytes(of: traceID.bytes) { hex($0) }
            put(UInt8(ascii: "-"))
            withUnsafeBytes(of: spanID.bytes) { hex($0) }
            put(UInt8(ascii: "-"))
            put(UInt8(ascii: "0"))
            put(UInt8(ascii: "0"))
            return index
        }
    }

    /// The trace id's 16 bytes.
    public var traceIDBytes: [UInt8] {
        withUnsafeBytes(of: self.traceID.bytes) { Array($0) }
    }

    /// Whether `name` is a trace context field (replaced with ``replacement``).
    public static func isTraceField(_ name: String) -> Bool {
        let count = name.utf8.count
        return (count == 11 && name.equalsIgnoringASCIICase("traceparent")) || (count == 10 && name.equalsIgnoringASCIICase("tracestate"))
    }
}
