import Crypto
import W3CTraceContext

/// Turns entries into records, without `hash` (the chain adds it). Request records, nearly
/// all of them, are written straight out with their members in canonical order (their names
/// are fixed); gateway events go through a ``CanonicalObjectBuilder``.
public struct AuditRecordFormatter: Sendable {
    /// The schema version, `v` in every record.
    public static let version = 1
    public var arguments: AuditArgumentsMode
    /// Token digests already computed: a client sends the same token for many requests, and
    /// comparing it costs far less than hashing it again. Bounded; emptied when full.
    private var tokenDigests: [String: UInt64] = [:]
    static let tokenDigestCapacity = 1024
    /// The canonical form of the arguments being digested; its storage is kept.
    private var scratch: [UInt8] = []

    public init(arguments: AuditArgumentsMode) {
        self.arguments = arguments
        self.scratch.reserveCapacity(1024)
    }

    mutating func tokenDigest(_ token: AuditDigestSource) -> UInt64 {
        if let known = token.knownDigest { return known }
        if let known = self.tokenDigests[token.value] { return known }
        if self.tokenDigests.count >= Self.tokenDigestCapacity { self.tokenDigests.removeAll(keepingCapacity: true) }
        let digest = token.digest
        self.tokenDigests[token.value] = digest
        return digest
    }

    /// The members of a gateway event's record, but for those of the chain.
    public static func members(of event: AuditEvent, _ members: [String: JSONValue], into object: inout CanonicalObjectBuilder) {
        object.add("event", event.rawValue)
        for (key, value) in members where !Self.reservedKeys.contains(key) {
            object.add(key, value)
        }
    }

    /// Members the chain writes; an event's own members never replace them.
    static let reservedKeys: Set<String> = ["v", "seq", "ts", "event", "prev", "hash"]

    /// Appends a request's record in RFC 8785 form, `hash` aside. The names are ASCII, so
    /// canonical order is byte order, and the members below are written in it (a test parses
    /// records of every shape and compares them with their canonical form). Optional members
    /// are left out when absent.
    public mutating func write(_ request: AuditRequest, chain: AuditChainMembers, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        if let arguments = request.arguments {
            switch self.arguments {
            case .none:
                break
            case .hash:
                self.scratch.removeAll(keepingCapacity: true)
                CanonicalJSON.append(arguments, to: &self.scratch)
                let digest = self.scratch.withUnsafeBytes { SHA256.hash(data: $0) }
                CanonicalJSON.appendLiteral(#""arguments_sha256":""#, to: &out)
                Hex.append(digest, to: &out)
                CanonicalJSON.appendLiteral(#"","#, to: &out)
            case .full:
                CanonicalJSON.appendLiteral(#""arguments":"#, to: &out)
                CanonicalJSON.append(AuditRedaction.redact(arguments), to: &out)
                out.append(UInt8(ascii: ","))
            }
        }
        if let batchSize = request.batchSize {
            CanonicalJSON.appendLiteral(#""batch_size":"#, to: &out)
            CanonicalJSON.appendInteger(Int64(batchSize), to: &out)
            out.append(UInt8(ascii: ","))
        }
        if let bridge = request.bridge {
            CanonicalJSON.appendLiteral(#""bridge":"#, to: &out)
            CanonicalJSON.appendString(bridge, to: &out)
            out.append(UInt8(ascii: ","))
        }
        CanonicalJSON.appendLiteral(#""bytes_in":"#, to: &out)
        CanonicalJSON.appendInteger(Int64(request.bytesIn), to: &out)
        CanonicalJSON.appendLiteral(#","bytes_out":"#, to: &out)
        CanonicalJSON.appendInteger(Int64(request.bytesOut), to: &out)
        Self.member(#","client_cert":"#, request.clientCertificate, to: &out)
        Self.member(#","client_id":"#, request.clientID, to: &out)
        Self.member(#","decision":"#, request.decision.rawValue, to: &out)
        CanonicalJSON.appendLiteral(#","duration_ms":"#, to: &out)
        CanonicalJSON.appendMilliseconds(microseconds: request.durationNanoseconds / 1000, to: &out)
        CanonicalJSON.appendLiteral(#","event":"request""#, to: &out)
        Self.member(#","http_method":"#, request.httpMethod, to: &out)
        Self.member(#","issuer":"#, request.issuer, to: &out)
        Self.member(#","mcp_method":"#, request.mcpMethod, to: &out)
        Self.member(#","outcome":"#, request.outcome.rawValue, to: &out)
        Self.member(#","peer":"#, request.peer, to: &out)
        CanonicalJSON.appendLiteral(#","prev":""#, to: &out)
        out.append(contentsOf: chain.prev)
        out.append(UInt8(ascii: "\""))
        Self.member(#","protocol_version":"#, request.protocolVersion, to: &out)
        Self.member(#","reason":"#, request.reason, to: &out)
        Self.member(#","request_id":"#, request.requestID, to: &out)
        Self.member(#","resource":"#, request.resource, to: &out)
        CanonicalJSON.appendLiteral(#","seq":"#, to: &out)
        CanonicalJSON.appendInteger(chain.seq, to: &out)
        if let session = request.session {
            CanonicalJSON.appendLiteral(#","session":""#, to: &out)
            Hex.append(session.digest, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        CanonicalJSON.appendLiteral(#","status":"#, to: &out)
        CanonicalJSON.appendInteger(Int64(request.status), to: &out)
        Self.member(#","subject":"#, request.subject, to: &out)
        Self.member(#","target":"#, request.target, to: &out)
        Self.member(#","token_binding":"#, request.tokenBinding, to: &out)
        Self.member(#","token_binding_key":"#, request.tokenBindingKey, to: &out)
        if let token = request.token {
            CanonicalJSON.appendLiteral(#","token_id":""#, to: &out)
            Hex.append(self.tokenDigest(token), to: &out)
            out.append(UInt8(ascii: "\""))
        }
        if let traceID = request.traceID {
            CanonicalJSON.appendLiteral(#","trace_id":""#, to: &out)
            withUnsafeBytes(of: traceID.bytes) { Hex.append($0, to: &out) }
            out.append(UInt8(ascii: "\""))
        }
        CanonicalJSON.appendLiteral(#","ts":""#, to: &out)
        RFC3339.append(millisecondsSinceEpoch: chain.ts, to: &out)
        out.append(UInt8(ascii: "\""))
        switch request.upstreamCredential {
        case .none:
            CanonicalJSON.appendLiteral(#","upstream_credential":"none""#, to: &out)
        case .static:
            CanonicalJSON.appendLiteral(#","upstream_credential":"static""#, to: &out)
        case .tokenExchange(let audience, let dpopKey):
            Self.member(#","upstream_audience":"#, audience, to: &out)
            CanonicalJSON.appendLiteral(#","upstream_credential":"token_exchange""#, to: &out)
            Self.member(#","upstream_dpop_key":"#, dpopKey, to: &out)
        }
        if let upstream = request.upstreamNanoseconds {
            CanonicalJSON.appendLiteral(#","upstream_ms":"#, to: &out)
            CanonicalJSON.appendMilliseconds(microseconds: upstream / 1000, to: &out)
        }
        Self.member(#","upstream_protocol_version":"#, request.upstreamProtocolVersion, to: &out)
        CanonicalJSON.appendLiteral(#","v":1}"#, to: &out)
    }

    /// `,"name":` and the string, when there is one.
    @inline(__always)
    private static func member(_ name: StaticString, _ value: String?, to out: inout [UInt8]) {
        guard let value else { return }
        CanonicalJSON.appendLiteral(name, to: &out)
        CanonicalJSON.appendString(value, to: &out)
    }
}

/// The members the chain gives every record: `prev`, `seq` and `ts` (`v` is constant).
public struct AuditChainMembers {
    /// The previous record's hash, 64 hex digits.
    public var prev: [UInt8]
    public var seq: Int64
    /// Milliseconds since the epoch.
    public var ts: Int64
}
