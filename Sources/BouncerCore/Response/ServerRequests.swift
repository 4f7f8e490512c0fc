/// What a resource lets its upstream ask of the client: `elicitation:` and `server_requests:`
/// in the policy. Servers ask in two forms: a JSON-RPC request on an SSE stream (revisions
/// 2025-06-18 and 2025-11-25) and an entry of an `InputRequiredResult`'s `inputRequests`
/// (2026-07-28 multi round-trip requests). Both are judged alike (``ServerRequestGuard``).
public struct ServerRequestPolicy: Sendable, Equatable {
    public enum Rule: String, Sendable, CaseIterable {
        case allow
        case deny
    }

    /// A form may ask for a credential (MCP forbids it; `false` enforces that).
    public var allowCredentialFields: Bool
    /// Elicitations per session (per subject where there is no session) in a rolling hour;
    /// 0 refuses every elicitation.
    public var rateLimitPerSession: Int
    /// The origins a URL-mode elicitation may send the user to (`scheme://host[:port]`).
    public var urlAllowedOrigins: Set<String>
    public var sampling: Rule
    public var roots: Rule

    public init(allowCredentialFields: Bool = false, rateLimitPerSession: Int = 3, urlAllowedOrigins: Set<String> = [], sampling: Rule = .deny, roots: Rule = .allow) {
        self.allowCredentialFields = allowCredentialFields
        self.rateLimitPerSession = rateLimitPerSession
        self.urlAllowedOrigins = urlAllowedOrigins
        self.sampling = sampling
        self.roots = roots
    }

    /// The defaults: no credential fields, 3 elicitations an hour, no URL mode, no sampling,
    /// roots allowed.
    public static let standard = ServerRequestPolicy()

    /// The rolling window of ``rateLimitPerSession``, in milliseconds.
    public static let rateWindowMilliseconds: Int64 = 3_600_000
}

/// One server-to-client request the gateway judged, for the audit trail, the metrics and,
/// when it was blocked on a stream, the answer the gateway gives the upstream in the
/// client's place.
public struct ServerRequestReview: Sendable, Equatable {
    public enum Form: String, Sendable {
        /// A JSON-RPC request on an SSE stream.
        case stream = "sse"
        /// An entry of an `InputRequiredResult`.
        case inputRequired = "input_required"
    }

    /// Why a request was blocked: the `reason` of its audit record and metric.
    public enum Block: String, Sendable, CaseIterable {
        case credentialField = "credential_field"
        case urlOrigin = "url_origin_not_allowed"
        case rateLimited = "rate_limited"
        case samplingDenied = "sampling_denied"
        case rootsDenied = "roots_denied"
        case malformed
    }

    public var method: String
    public var form: Form
    /// The request's JSON-RPC id (stream form), or the id of the client request the
    /// `InputRequiredResult` answers.
    public var id: JSONValue
    /// The `inputRequests` key (input_required form).
    public var key: String?
    /// Nil when it passed.
    public var blocked: Block?
    /// What the gateway found, for people: the credential fields, the origin, the limit.
    public var detail: String?
    /// An elicitation's `requestedSchema` (it describes fields; it carries no values).
    public var schema: JSONValue?
    /// `form` or `url` for an elicitation.
    public var mode: String?
    /// A URL-mode elicitation's origin.
    public var urlOrigin: String?

    /// What the upstream gets instead of the client's answer to a request blocked on a
    /// stream: `decline` for an elicitation (the user said no), -32601 for the rest (the
    /// client offers no such capability).
    public var upstreamReply: String? {
        guard self.blocked != nil, self.form == .stream else { return nil }
        if self.method == ServerRequestGuard.elicitation {
            var result = JSONWriter()
            result.add("action", "decline")
            var body = JSONWriter()
            body.add("jsonrpc", "2.0")
            body.add("id", self.id)
            body.add("result", result)
            return body.string
        }
        return JSONRPCFailure.errorBody(code: JSONRPCErrorCode.methodNotFound, message: "\(self.method) is not available to this server (refused by the gateway's policy)", id: self.id)
    }

    /// The message the client reads when its request's `InputRequiredResult` was refused.
    public var clientMessage: String {
        "Forbidden: the MCP server asked for input the gateway's policy does not allow (\(self.method): \(self.blocked?.rawValue ?? "")\(self.detail.map { ", \($0)" } ?? ""))"
    }
}

/// The elicitation and sampling guard: judges one server-to-client request against the
/// resource's ``ServerRequestPolicy``. Pure; the rate limit's memory lives with the caller
/// (``ServerRequestRateLimiter``), asked through `admit` only for an elicitation that passed
/// every other check.
public enum ServerRequestGuard {
    public static let elicitation = "elicitation/create"
    public static let sampling = "sampling/createMessage"
    public static let roots = "roots/list"
    public static let methods: Set<String> = [elicitation, sampling, roots]

    /// The verdict on `method` with `params`: nil fields of the review are filled by the caller.
    public static func judge(
        method: String, params: JSONValue?, policy: ServerRequestPolicy, form: ServerRequestReview.Form, id: JSONValue, key: String? = nil,
        admit: () -> Bool
    ) -> ServerRequestReview {
        var review = ServerRequestReview(method: method, form: form, id: id, key: key)
        switch method {
        case Self.sampling:
            if policy.sampling == .deny { review.blocked = .samplingDenied }
        case Self.roots:
            if policy.roots == .deny { review.blocked = .rootsDenied }
        default:
            Self.judgeElicitation(params, policy: policy, into: &review)
            if review.blocked == nil, !admit() {
                review.blocked = .rateLimited
                review.detail = "more than \(policy.rateLimitPerSession) elicitations in an hour"
            }
        }
        return review
    }

    private static func judgeElicitation(_ params: JSONValue?, policy: ServerRequestPolicy, into review: inout ServerRequestReview) {
        guard case .object(let members)? = params else {
            review.blocked = .malformed
            review.detail = "params is not an object"
            return
        }
        let mode = members["mode"]?.stringValue ?? "form"
        review.mode = mode
        switch mode {
        case "url":
            // The origin is what a browser opens: query and fragment do not change it; user
            // information, odd hosts and other schemes are refused by the parser.
            guard let text = members["url"]?.stringValue, let url = try? CanonicalURI(String(text.prefix { $0 != "?" && $0 != "#" })) else {
                review.blocked = .malformed
                review.detail = "URL-mode elicitation without an absolute http(s) url"
                return
            }
            review.urlOrigin = url.origin
            if !policy.urlAllowedOrigins.contains(url.origin) {
                review.blocked = .urlOrigin
                review.detail = "\(url.origin) is not in url_allowed_origins"
            }
        case "form":
            guard let schema = members["requestedSchema"] else {
                review.blocked = .malformed
                review.detail = "form elicitation without a requestedSchema"
                return
            }
            review.schema = Self.fieldsOnly(schema)
            guard !policy.allowCredentialFields else { return }
            let findings = CredentialFields.findings(in: schema)
            if !findings.isEmpty {
                review.blocked = .credentialField
                review.detail = findings.map(\.description).joined(separator: "; ")
            }
        default:
            // A mode the gateway cannot judge is not relayed.
            review.blocked = .malformed
            review.detail = "unknown elicitation mode '\(mode)'"
        }
    }

    /// A schema as the audit trail keeps it: what fields there are, not values a server put in
    /// it (`default`, `const`, `examples` are dropped at every depth).
    static func fieldsOnly(_ schema: JSONValue) -> JSONValue {
        switch schema {
        case .object(let members):
            var kept: [String: JSONValue] = [:]
            for (key, value) in members where key != "default" && key != "const" && key != "examples" {
                kept[key] = key == "properties" ? value.objectValue.map { .object($0.mapValues(Self.fieldsOnly)) } ?? value : Self.fieldsOnly(value)
            }
            return .object(kept)
        case .array(let items):
            return .array(items.map(Self.fieldsOnly))
        default:
            return schema
        }
    }

    /// Every server-to-client request in one message the upstream sent, judged: a request on
    /// a stream (`message` is a JSON-RPC request for one of ``methods``), or the entries of an
    /// `InputRequiredResult` (`message` is a response whose result has `resultType:
    /// "input_required"`). Empty for anything else.
    public static func review(_ message: JSONValue, policy: ServerRequestPolicy, admit: () -> Bool) -> [ServerRequestReview] {
        guard case .object(let members) = message, let id = members["id"] else { return [] }
        if let method = members["method"] {
            guard let name = method.stringValue, Self.methods.contains(name) else { return [] }
            return [Self.judge(method: name, params: members["params"], policy: policy, form: .stream, id: id, admit: admit)]
        }
        guard case .object(let result)? = members["result"], result["resultType"]?.stringValue == "input_required" else { return [] }
        guard case .object(let requests)? = result["inputRequests"] else { return [] }
        return requests.sorted { $0.key < $1.key }.map { key, request in
            guard let name = request["method"]?.stringValue, Self.methods.contains(name) else {
                // inputRequests holds only sampling, roots and elicitation: anything else is
                // not something a client should be asked to do.
                var review = ServerRequestReview(method: request["method"]?.stringValue ?? "", form: .inputRequired, id: id, key: key)
                review.blocked = .malformed
                review.detail = "inputRequests entry '\(key)' is not elicitation, sampling or roots"
                return review
            }
            return Self.judge(method: name, params: request["params"], policy: policy, form: .inputRequired, id: id, key: key, admit: admit)
        }
    }
}

/// The memory of ``ServerRequestPolicy/rateLimitPerSession``: when each session (or subject)
/// was last sent an elicitation, over a rolling window. Time comes in as milliseconds from any
/// fixed origin, so tests drive it without a clock. Bounded: past `maxKeys` the key idle
/// longest is forgotten (its next elicitation starts a fresh window, never an unbounded table).
public struct ServerRequestRateLimiter: Sendable {
    public let maxKeys: Int
    public let window: Int64
    private var sent: [String: [Int64]] = [:]
    private var lastUse: [String: Int64] = [:]

    public init(maxKeys: Int = 10_000, window: Int64 = ServerRequestPolicy.rateWindowMilliseconds) {
        self.maxKeys = maxKeys
        self.window = window
    }

    public var count: Int { self.sent.count }

    /// Whether `key` may be sent one more elicitation at `now`; counts it when so.
    public mutating func admit(_ key: String, limit: Int, now: Int64) -> Bool {
        var times = self.sent[key] ?? []
        times.removeAll { $0 <= now - self.window }
        guard times.count < limit else {
            self.sent[key] = times
            return false
        }
        times.append(now)
        if self.sent[key] == nil, self.sent.count >= self.maxKeys, let idle = self.lastUse.min(by: { $0.value < $1.value })?.key {
            self.sent[idle] = nil
            self.lastUse[idle] = nil
        }
        self.sent[key] = times
        self.lastUse[key] = now
        return true
    }
}
