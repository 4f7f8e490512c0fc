import Crypto

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
}

/// A value that is digested on its way into the audit trail and never written: the bearer
/// token (`token_id`) and the upstream's session id (`session`). It has no description, so
/// interpolating it by mistake prints nothing of it.
public struct AuditDigestSource: Sendable, CustomStringConvertible {
    fileprivate let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "[digested]" }

    /// The first 16 hex digits of SHA-256 of the value: enough to correlate records, too short
    /// and one-way to recover the value (a token is high-entropy; its hash is not an oracle).
    public var shortDigest: String {
        var value = self.value
        let digest = value.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return String(Hex.encode(digest.prefix(8)))
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
    /// `upstream_error` (the gateway answered 502/504 or cut a response short) or
    /// `client_closed` (the client left first).
    public enum Outcome: String, Sendable {
        case forwarded
        case refused
        case upstreamError = "upstream_error"
        case clientClosed = "client_closed"
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
    /// The parsed JSON-RPC body: `mcp_method`, `target` and the arguments are read from it on
    /// the writer thread.
    public var body: JSONRPCBody?
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
    public var traceID: String?
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

/// Builds a JSON object in RFC 8785 form: members sorted by the UTF-16 code units of their
/// names, values already canonical.
public struct CanonicalObjectBuilder: Sendable {
    private var members: [(key: String, value: String)] = []

    public init() {
        self.members.reserveCapacity(32)
    }

    public mutating func add(_ key: String, _ value: String?) {
        guard let value else { return }
        var quoted = ""
        CanonicalJSON.appendString(value, to: &quoted)
        self.members.append((key, quoted))
    }

    public mutating func add(_ key: String, _ value: Int) {
        self.members.append((key, String(value)))
    }

    public mutating func add(_ key: String, _ value: Int64) {
        self.members.append((key, String(value)))
    }

    public mutating func add(_ key: String, milliseconds nanoseconds: Int64) {
        // Microsecond resolution, written as milliseconds (12.345).
        self.members.append((key, CanonicalJSON.number(Double(nanoseconds / 1000) / 1000)))
    }

    public mutating func add(_ key: String, _ value: JSONValue) {
        self.members.append((key, CanonicalJSON.serialize(value)))
    }

    /// The object in canonical form.
    public func build() -> String {
        let sorted = self.members.sorted { $0.key.utf16.lexicographicallyPrecedes($1.key.utf16) }
        var out = "{"
        for (index, member) in sorted.enumerated() {
            if index > 0 { out += "," }
            CanonicalJSON.appendString(member.key, to: &out)
            out += ":"
            out += member.value
        }
        out += "}"
        return out
    }
}

/// Turns entries into the members of records (everything but `seq`, `ts`, `prev` and `hash`,
/// which the chain adds).
public struct AuditRecordFormatter: Sendable {
    /// The schema version, `v` in every record.
    public static let version = 1
    public var arguments: AuditArgumentsMode

    public init(arguments: AuditArgumentsMode) {
        self.arguments = arguments
    }

    public func members(of entry: AuditEntry, into object: inout CanonicalObjectBuilder) {
        switch entry {
        case .request(let request):
            object.add("event", AuditEvent.request.rawValue)
            self.requestMembers(request, into: &object)
        case .gateway(let event, let members):
            object.add("event", event.rawValue)
            for (key, value) in members where !Self.reservedKeys.contains(key) {
                object.add(key, value)
            }
        case .dropped(let count):
            object.add("event", AuditEvent.dropped.rawValue)
            object.add("count", count)
        }
    }

    /// Members the chain writes; an event's own members never replace them.
    static let reservedKeys: Set<String> = ["v", "seq", "ts", "event", "prev", "hash"]

    private func requestMembers(_ request: AuditRequest, into object: inout CanonicalObjectBuilder) {
        object.add("request_id", request.requestID)
        object.add("http_method", request.httpMethod)
        object.add("peer", request.peer)
        object.add("resource", request.resource)
        object.add("subject", request.subject)
        object.add("client_id", request.clientID)
        object.add("issuer", request.issuer)
        object.add("token_id", request.token?.shortDigest)
        object.add("client_cert", request.clientCertificate)
        if let body = request.body, let message = body.messages.first {
            object.add("mcp_method", message.method)
            if let target = try? message.target() { object.add("target", target) }
            if body.isBatch { object.add("batch_size", body.messages.count) }
            if let arguments = message.params?["arguments"] {
                switch self.arguments {
                case .none:
                    break
                case .hash:
                    let canonical = CanonicalJSON.serialize(arguments)
                    object.add("arguments_sha256", String(Hex.encode(SHA256.hash(data: Array(canonical.utf8)))))
                case .full:
                    object.add("arguments", AuditRedaction.redact(arguments))
                }
            }
        }
        object.add("decision", request.decision.rawValue)
        object.add("outcome", request.outcome.rawValue)
        object.add("reason", request.reason)
        object.add("status", request.status)
        object.add("bytes_in", request.bytesIn)
        object.add("bytes_out", request.bytesOut)
        object.add("duration_ms", milliseconds: request.durationNanoseconds)
        if let upstream = request.upstreamNanoseconds { object.add("upstream_ms", milliseconds: upstream) }
        switch request.upstreamCredential {
        case .none:
            object.add("upstream_credential", "none")
        case .static:
            object.add("upstream_credential", "static")
        case .tokenExchange(let audience):
            object.add("upstream_credential", "token_exchange")
            object.add("upstream_audience", audience)
        }
        object.add("session", request.session?.shortDigest)
        object.add("protocol_version", request.protocolVersion)
        object.add("trace_id", request.traceID)
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
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
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
