import Crypto
import W3CTraceContext

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
        /// An RFC 8693 exchange; the exchanged token's audience, and with a DPoP-bound upstream
        /// leg the RFC 7638 thumbprint of the gateway's key the token is bound to.
        case tokenExchange(audience: String?, dpopKey: String? = nil)
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
    /// The protocol bridge served the request (a 2026-07-28 client, a legacy upstream): what
    /// it did (`answered`, `discover_answered`, `parked`, `resume_refused.<why>`, ...).
    public var bridge: String?
    /// The revision the upstream was spoken to in, when the bridge translated.
    public var upstreamProtocolVersion: String?
    /// The W3C trace id, written as 32 hex digits.
    public var traceID: TraceID?
    /// `x5t#S256` of the client's TLS certificate, when it presented one.
    public var clientCertificate: String?
    /// How the token was bound: `bearer`, `dpop` or `mtls` (stage 4b), and the thumbprint of
    /// the key or certificate it is bound to.
    public var tokenBinding: String?
    public var tokenBindingKey: String?

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
