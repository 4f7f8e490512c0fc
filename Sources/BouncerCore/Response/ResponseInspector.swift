/// What the gateway does with the JSON-RPC messages an upstream sends back on a protected
/// resource: one `application/json` body, or the `data` of one `text/event-stream` event at a
/// time. Pure: the handler feeds it bytes and writes what it says.
///
/// It filters list results to the caller's token (``ListFilter``), compares tool definitions
/// with their pins (``ToolPins``) and judges what the server asks of the client
/// (``ServerRequestGuard``); the messages it has no business with pass as the upstream wrote
/// them, byte for byte.
public struct ResponseInspector: Sendable {
    public let policy: ResourcePolicy
    public let granted: Set<String>
    /// The negotiated revision is 2026-07-28 or later: filtered lists get `cacheScope`.
    public let cacheScoped: Bool
    /// The list requests of the exchange, by JSON-RPC id: whose results are filtered.
    public private(set) var lists: [JSONValue: String]
    /// The server-to-client stream (GET): no request of the exchange awaits an answer there,
    /// yet a resumed stream may replay one, so a list result is known by its shape.
    public let listsByShape: Bool
    /// The entries removed so far, as `method target` (for the audit record and the log).
    public private(set) var hidden: [String] = []

    /// What the inspector saw since the handler last asked (``takeReport()``).
    public struct Report: Sendable {
        /// Every tool definition a `tools/list` result carried, approved or not: name -> digest.
        public var toolsSeen: [String: String] = [:]
        /// Tool definitions that do not match their pins (`tool_pins`).
        public var toolFindings: [ToolFinding] = []
        /// The server-to-client requests judged, passed or blocked.
        public var serverRequests: [ServerRequestReview] = []
        /// The upstream relayed `notifications/tools/list_changed`.
        public var toolsChanged = false
        /// Entries removed from lists in this report's messages.
        public var hiddenCount = 0
        /// Messages not relayed because they could not be read.
        public var unreadable = 0

        public var isEmpty: Bool {
            self.toolsSeen.isEmpty && self.toolFindings.isEmpty && self.serverRequests.isEmpty && !self.toolsChanged && self.hiddenCount == 0 && self.unreadable == 0
        }
    }

    private var report = Report()

    /// The report since the last call, for the gateway to remember, record and act on as soon
    /// as a message went by.
    public mutating func takeReport() -> Report {
        defer { self.report = Report() }
        return self.report
    }

    /// An inspector for the response to `body` (nil: the server-to-client stream a GET opens).
    public init(for body: JSONRPCBody?, policy: ResourcePolicy, granted: Set<String>, protocolVersion: String?) {
        var lists: [JSONValue: String] = [:]
        for message in body?.messages ?? [] {
            guard case .request(let id, let method, _) = message, ListFilter.kinds[method] != nil else { continue }
            if policy.listFiltering || method == "tools/list" { lists[Self.key(id)] = method }
        }
        self.policy = policy
        self.granted = granted
        self.cacheScoped = protocolVersion.map { $0 >= MCPProtocol.statelessVersion } ?? false
        self.lists = lists
        self.listsByShape = body == nil && (policy.listFiltering || policy.toolPinning != nil)
    }

    /// What the client reads instead of a message the gateway could not read.
    public static let unreadableMessage = "Bad Gateway: the MCP server sent a message the gateway cannot read (not strict JSON), so it was not relayed"

    public enum Verdict: Equatable, Sendable {
        /// Relay the bytes as they came.
        case pass
        /// Relay this JSON text instead.
        case replace(String)
        /// Relay nothing of it: what it carried was refused, or it could not be read.
        case drop
    }

    /// Inspects one message or batch. `admit` is asked once per elicitation that passed every
    /// other check: whether the session's rate limit lets it through (it counts it if so).
    ///
    /// Text the gateway cannot read (not strict JSON: a duplicate key, bad UTF-8, too deep)
    /// does not pass when it could matter: while a list result is awaited it is replaced by
    /// a JSON-RPC error for each awaited list (a lenient client parser could read a list out
    /// of it that was never filtered), and when it could hold a request it is dropped (one
    /// could read an elicitation out of it that was never judged).
    public mutating func inspect(_ json: UnsafeRawBufferPointer, admit: () -> Bool = { true }) -> Verdict {
        guard self.mayNeed(json) else { return .pass }
        guard let value = try? JSONParser(maxDepth: 128).parse(json) else {
            self.report.unreadable += 1
            guard !self.lists.isEmpty else { return .drop }
            let errors = self.lists.keys.sorted { $0.serialized < $1.serialized }.map { id in
                JSONRPCFailure.errorValue(code: JSONRPCErrorCode.upstreamError, message: Self.unreadableMessage, id: id)
            }
            self.lists.removeAll()
            return .replace(errors.count == 1 ? errors[0].serialized : JSONValue.array(errors).serialized)
        }
        switch value {
        case .object:
            switch self.inspected(value, admit: admit) {
            case .some(.some(let replaced)): return .replace(replaced.serialized)
            case .some(.none): return .drop
            case .none: return .pass
            }
        case .array(let messages):
            var changed = false
            var out: [JSONValue] = []
            for message in messages {
                switch self.inspected(message, admit: admit) {
                case .some(let replaced):
                    changed = true
                    if let replaced { out.append(replaced) }
                case .none:
                    out.append(message)
                }
            }
            guard changed else { return .pass }
            return out.isEmpty ? .drop : .replace(JSONValue.array(out).serialized)
        default:
            return .pass
        }
    }

    /// The same for text in any collection (tests, tools): copied once.
    public mutating func inspect(_ json: some Collection<UInt8>, admit: () -> Bool = { true }) -> Verdict {
        Array(json).withUnsafeBytes { self.inspect($0, admit: admit) }
    }

    /// Whether `bytes` (a message, or a whole SSE event with its field names) may need
    /// anything of the inspector: false lets the caller relay them without parsing.
    public func mayNeed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        !self.lists.isEmpty || self.listsByShape || Self.mayHoldRequest(bytes)
    }

    /// The literal text each message the inspector acts on (besides awaited lists) must
    /// contain: a server-to-client request's method, an `InputRequiredResult`'s `resultType`,
    /// the notification that tools changed.
    static let markers: [[UInt8]] = [
        ServerRequestGuard.elicitation, ServerRequestGuard.sampling, ServerRequestGuard.roots, "input_required", "tools/list_changed",
    ].map { Array($0.utf8) }

    /// Whether text could hold something the guard or the pins act on, without parsing it:
    /// each such message has one of ``markers`` in it, spelled out, unless it is written with
    /// escapes (a backslash) or with bytes that are never UTF-8 (which a lenient decoder
    /// might read as something else). Text with none of these passes untouched; text with
    /// one is parsed (and dropped when it is not strict JSON). SSE field names have none, so a
    /// whole event can be asked.
    static func mayHoldRequest(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index < count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\\"), 0xC0, 0xC1, 0xF5...0xFF:
                return true
            case UInt8(ascii: "e"), UInt8(ascii: "s"), UInt8(ascii: "r"), UInt8(ascii: "i"), UInt8(ascii: "t"):
                for marker in Self.markers where marker[0] == byte && index + marker.count <= count {
                    var matched = 1
                    while matched < marker.count, bytes[index + matched] == marker[matched] { matched += 1 }
                    if matched == marker.count { return true }
                }
            default:
                break
            }
            index += 1
        }
        return false
    }

    /// An id as the client's JSON-RPC library compares it: a number by its value, so an
    /// upstream that echoes `1` as `1.0` or `1e0` does not slip a list past inspection.
    static func key(_ id: JSONValue) -> JSONValue {
        guard case .number(let text) = id else { return id }
        return .number(CanonicalJSON.number(text))
    }

    /// One message after inspection: nil when it stays as it is, `.some(nil)` when it is not
    /// relayed, else what is relayed instead.
    private mutating func inspected(_ message: JSONValue, admit: () -> Bool) -> JSONValue?? {
        guard case .object(let members) = message else { return nil }
        let reviews = ServerRequestGuard.review(message, policy: self.policy.serverRequests, admit: admit)
        self.report.serverRequests += reviews
        if let refused = reviews.first(where: { $0.blocked != nil }) {
            // A request blocked on a stream never reaches the client (the gateway answers it);
            // a refused InputRequiredResult becomes an error for the client's request.
            guard refused.form == .inputRequired else { return .some(nil) }
            return .some(JSONRPCFailure.errorValue(code: JSONRPCErrorCode.forbidden, message: refused.clientMessage, id: refused.id))
        }
        if let method = members["method"] {
            if method.stringValue == "notifications/tools/list_changed" { self.report.toolsChanged = true }
            return nil
        }
        return reviews.isEmpty ? self.filtered(members).map { .some($0) } : nil
    }

    /// The response message with its list filtered, or nil when it stays as it is.
    private mutating func filtered(_ members: [String: JSONValue]) -> JSONValue? {
        guard let id = members["id"].map(Self.key), var result = members["result"] else { return nil }
        var members = members
        let method: String
        if let awaited = self.lists[id] {
            method = awaited
            self.lists[id] = nil
        } else if self.listsByShape, let shaped = Self.listMethod(ofShape: result) {
            method = shaped
        } else {
            return nil
        }
        var changed = false
        if method == "tools/list", let pinning = self.policy.toolPinning, let checked = self.checkPins(result, pinning) {
            result = checked
            changed = true
        }
        if self.policy.listFiltering {
            let outcome = ListFilter.filter(result, method: method, policy: self.policy, granted: self.granted, cacheScoped: self.cacheScoped)
            if let replaced = outcome.result {
                let kind = ListFilter.kinds[method]!
                self.hidden += outcome.removed.map { "\(kind.useMethod) \($0)" }
                self.report.hiddenCount += outcome.removed.count
                result = replaced
                changed = true
            }
        }
        guard changed else { return nil }
        members["result"] = result
        return .object(members)
    }

    /// The list method whose result `result` looks like: an object with a `tools`, `prompts`,
    /// `resources` or `resourceTemplates` array.
    static func listMethod(ofShape result: JSONValue) -> String? {
        guard case .object(let members) = result else { return nil }
        return ListFilter.kinds.first { _, kind in
            if case .array? = members[kind.member] { return true }
            return false
        }?.key
    }

    /// Compares every tool of a `tools/list` result with its pin. Under `block` the tools
    /// that do not match are removed (the result to send instead is returned); under `alert`
    /// the result passes. Both note what they found.
    private mutating func checkPins(_ result: JSONValue, _ pinning: ToolPinning) -> JSONValue? {
        guard case .object(var members) = result, case .array(let tools)? = members["tools"] else { return nil }
        var kept: [JSONValue] = []
        for tool in tools {
            guard let (name, digest, finding) = pinning.pins.check(tool) else {
                // Nothing a client could call by name: under block it goes.
                if pinning.onChange == .alert { kept.append(tool) }
                continue
            }
            self.report.toolsSeen[name] = digest
            guard let finding else {
                kept.append(tool)
                continue
            }
            self.report.toolFindings.append(finding)
            if pinning.onChange == .alert {
                kept.append(tool)
            } else {
                self.hidden.append("tools/call \(name)")
                self.report.hiddenCount += 1
            }
        }
        guard kept.count != tools.count else { return nil }
        members["tools"] = .array(kept)
        return .object(members)
    }
}
