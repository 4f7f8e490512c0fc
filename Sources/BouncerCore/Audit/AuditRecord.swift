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
}

/// A value that is digested on its way into the audit trail and never written: the bearer
/// token (`token_id`) and the upstream's session id (`session`). It has no description, so
/// interpolating it by mistake prints nothing of it.
public struct AuditDigestSource: Sendable, CustomStringConvertible {
    let value: String
    /// ``digest``, when the caller already has it (the gateway remembers its connection's last
    /// token).
    let knownDigest: UInt64?

    public init(_ value: String) {
        self.value = value
        self.knownDigest = nil
    }

    /// A value whose ``digest`` is already known: the value itself is not kept. A plain
    /// integer, so the entry shares no storage with the event loop that made it.
    public init(digest: UInt64) {
        self.value = ""
        self.knownDigest = digest
    }
    public var description: String { "[digested]" }

    /// The first 16 hex digits of SHA-256 of the value: enough to correlate records, too short
    /// and one-way to recover the value (a token is high-entropy; its hash is not an oracle).
    public var shortDigest: String {
        var out: [UInt8] = []
        Hex.append(self.digest, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The first 8 bytes of SHA-256 of the value, big-endian.
    public var digest: UInt64 { self.knownDigest ?? Self.digest(of: self.value) }

    /// ``shortDigest`` of `value`.
    public static func hex(of value: String) -> String {
        AuditDigestSource(value).shortDigest
    }

    public static func digest(of value: String) -> UInt64 {
        var value = value
        let digest = value.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return digest.withUnsafeBytes { bytes in bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }
    }
}

/// What the gateway knows about one request when it is done with it.
public struct AuditRequest: Sendable {
    public enum Decision: String, Sendable {
        /// Authorised and forwarded (the upstream may still have failed: see `outcome`).
        case allowed
        /// Refused by the gateway; nothing reached the upstream.
        case denied
    }

    /// How the request ended: `forwarded` (a response was relayed), `refused`,
    /// `upstream_error` (the gateway answered 502/504 or cut a response short),
    /// `client_closed` (the client left first) or `connection_closed` (the gateway closed the
    /// connection mid-exchange: a timeout, a protocol error, shutdown).
    public enum Outcome: String, Sendable {
        case forwarded
        case refused
        case upstreamError = "upstream_error"
        case clientClosed = "client_closed"
        case connectionClosed = "connection_closed"
    }

    /// The credential the upstream received.
    public enum UpstreamCredential: Sendable, Equatable {
        case none
        case `static`
        /// An RFC 8693 exchange; the exchanged token's audience.
        case tokenExchange(audience: String?)
    }

    public var requestID: String
    public var httpMethod: String
    public var peer: String
    public var resource: String?
    public var subject: String?
    public var clientID: String?
    public var issuer: String?
    public var token: AuditDigestSource?
    /// The first JSON-RPC message's method, target (tool, prompt or resource URI) and
    /// `params.arguments` (digested or redacted on the writer thread): ``describe(_:keepingArguments:)``.
    public var mcpMethod: String?
    public var target: String?
    public var arguments: JSONValue?
    /// The number of messages of a JSON-RPC batch.
    public var batchSize: Int?
    public var decision: Decision
    public var outcome: Outcome
    /// The stable code of the refusal or failure (``GatewayRejection/code``).
    public var reason: String?
    public var status: Int
    public var bytesIn: Int
    public var bytesOut: Int
    public var durationNanoseconds: Int64
    public var upstreamNanoseconds: Int64?
    public var upstreamCredential: UpstreamCredential
    public var session: AuditDigestSource?
    public var protocolVersion: String?
    /// The W3C trace id, written as 32 hex digits.
    public var traceID: TraceID?
    /// `x5t#S256` of the client's TLS certificate, when it presented one.
    public var clientCertificate: String?

    public init(requestID: String, httpMethod: String, peer: String) {
        self.requestID = requestID
        self.httpMethod = httpMethod
        self.peer = peer
        self.decision = .denied
        self.outcome = .refused
        self.status = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self.durationNanoseconds = 0
        self.upstreamCredential = .none
    }

    /// Takes `mcp_method`, `target`, `batch_size` and (unless `audit.arguments` is `none`)
    /// the arguments from a parsed body. The body itself stays with the event loop: the writer
    /// thread frees nothing but the arguments.
    public mutating func describe(_ body: JSONRPCBody, keepingArguments: Bool = true) {
        let message = body.messages.first
        self.mcpMethod = message?.method
        self.target = try? message?.target()
        self.arguments = keepingArguments ? message?.params?["arguments"] : nil
        self.batchSize = body.isBatch ? body.messages.count : nil
    }
}

/// What `audit.arguments` keeps of a `tools/call`'s `params.arguments`.
public enum AuditArgumentsMode: String, Sendable, CaseIterable {
    /// Nothing.
    case none
    /// `arguments_sha256`: SHA-256 (hex) of their RFC 8785 form.
    case hash
    /// `arguments`: the arguments, with values under secret-looking keys (and strings that look
    /// like bearer tokens or JWTs) replaced by `"[redacted]"`.
    case full
}

/// Builds a JSON object in RFC 8785 form: members sorted by their names, values already
/// canonical. Bytes throughout (the writer thread builds one per record): names and values
/// are kept in one buffer and sorted by comparing bytes.
///
/// Names must be ASCII (the gateway's own), for which byte order is RFC 8785's UTF-16 order;
/// objects with arbitrary names (tool arguments) go through ``CanonicalJSON``.
public struct CanonicalObjectBuilder: Sendable {
    private var members: [(key: Range<Int>, value: Range<Int>)] = []
    private var bytes: [UInt8] = []

    public init() {
        self.members.reserveCapacity(32)
        self.bytes.reserveCapacity(1536)
    }

    /// Empties the builder, keeping its storage for the next object.
    public mutating func removeAll() {
        self.members.removeAll(keepingCapacity: true)
        self.bytes.removeAll(keepingCapacity: true)
    }

    private mutating func add(_ key: String, writing value: (inout [UInt8]) -> Void) {
        assert(key.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x80 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }, "\(key): names must be plain ASCII")
        let keyStart = self.bytes.count
        self.bytes.append(contentsOf: key.utf8)
        let valueStart = self.bytes.count
        value(&self.bytes)
        self.members.append((keyStart..<valueStart, valueStart..<self.bytes.count))
    }

    public mutating func add(_ key: String, _ value: String?) {
        guard let value else { return }
        self.add(key) { CanonicalJSON.appendString(value, to: &$0) }
    }

    public mutating func add(_ key: String, _ value: Int) {
        self.add(key) { CanonicalJSON.appendInteger(Int64(value), to: &$0) }
    }

    public mutating func add(_ key: String, _ value: Int64) {
        self.add(key) { CanonicalJSON.appendInteger(value, to: &$0) }
    }

    /// An RFC 3339 time, from milliseconds since the epoch.
    public mutating func add(_ key: String, time milliseconds: Int64) {
        self.add(key) { out in
            out.append(UInt8(ascii: "\""))
            RFC3339.append(millisecondsSinceEpoch: milliseconds, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    public mutating func add(_ key: String, _ value: JSONValue) {
        self.add(key) { CanonicalJSON.append(value, to: &$0) }
    }

    /// Appends the object in canonical form (sorting the members in place).
    public mutating func build(into out: inout [UInt8]) {
        // Members mostly arrive in order already: the (stable, run-detecting) sort is then
        // about one comparison per member.
        self.bytes.withUnsafeBufferPointer { buffer in
            self.members.sort { lhs, rhs in
                UnsafeBufferPointer(rebasing: buffer[lhs.key]).lexicographicallyPrecedes(UnsafeBufferPointer(rebasing: buffer[rhs.key]))
            }
        }
        out.append(UInt8(ascii: "{"))
        for (position, member) in self.members.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: self.bytes[member.key])
            out.append(contentsOf: #"":"#.utf8)
            out.append(contentsOf: self.bytes[member.value])
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The object in canonical form.
    public func build() -> String {
        var out: [UInt8] = []
        var copy = self
        copy.build(into: &out)
        return String(decoding: out, as: UTF8.self)
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
        case .tokenExchange(let audience):
            Self.member(#","upstream_audience":"#, audience, to: &out)
            CanonicalJSON.appendLiteral(#","upstream_credential":"token_exchange""#, to: &out)
        }
        if let upstream = request.upstreamNanoseconds {
            CanonicalJSON.appendLiteral(#","upstream_ms":"#, to: &out)
            CanonicalJSON.appendMilliseconds(microseconds: upstream / 1000, to: &out)
        }
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

/// `audit.arguments: full`: what is kept of tool arguments.
public enum AuditRedaction {
    public static let placeholder = "[redacted]"

    /// Key fragments that mark a value as a secret, matched in the key lower-cased with `-`,
    /// `_`, `.` and spaces removed (`API-Key`, `api_key` and `apiKey` all read `apikey`).
    public static let secretKeyFragments = [
        "password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey", "privatekey",
        "authorization", "credential", "cookie", "session", "signature", "bearer",
    ]

    public static func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            var redacted: [String: JSONValue] = [:]
            for (key, member) in members {
                redacted[key] = self.isSecretKey(key) ? .string(self.placeholder) : self.redact(member)
            }
            return .object(redacted)
        case .array(let elements):
            return .array(elements.map(self.redact))
        case .string(let text):
            return self.looksLikeCredential(text) ? .string(self.placeholder) : value
        case .null, .bool, .number:
            return value
        }
    }

    public static func isSecretKey(_ key: String) -> Bool {
        let folded = String(key.lowercased().filter { $0 != "-" && $0 != "_" && $0 != "." && $0 != " " })
        return self.secretKeyFragments.contains { folded.contains($0) }
    }

    /// A value that carries a credential whatever its key: `Bearer ...`, `Basic ...`, or a JWS
    /// compact serialisation (`eyJ...` . ... . ...).
    public static func looksLikeCredential(_ text: String) -> Bool {
        let lowered = text.prefix(7).lowercased()
        if lowered.hasPrefix("bearer ") || lowered.hasPrefix("basic ") { return true }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 3 && text.hasPrefix("eyJ") && parts.allSatisfy { part in
            !part.isEmpty && part.utf8.allSatisfy { Base64URL.isAlphabet($0) }
        }
    }
}

/// Lower-case hexadecimal.
public enum Hex {
    public static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        self.append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func append(_ bytes: some Sequence<UInt8>, to out: inout [UInt8]) {
        for byte in bytes {
            out.append(self.digits[Int(byte >> 4)])
            out.append(self.digits[Int(byte & 0x0F)])
        }
    }

    /// The 16 hex digits of a 64-bit value (big-endian).
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 60, through: 0, by: -4) {
            out.append(self.digits[Int(truncatingIfNeeded: value >> UInt64(shift)) & 0x0F])
        }
    }

    /// A digest's bytes, read through its buffer rather than byte by byte.
    public static func append(_ digest: some Digest, to out: inout [UInt8]) {
        digest.withUnsafeBytes { bytes in
            out.reserveCapacity(out.count + bytes.count * 2)
            for byte in bytes {
                out.append(self.digits[Int(byte >> 4)])
                out.append(self.digits[Int(byte & 0x0F)])
            }
        }
    }

    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 2 == 0 else { return nil }
        func value(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count / 2)
        var index = 0
        while index < bytes.count {
            guard let high = value(bytes[index]), let low = value(bytes[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
