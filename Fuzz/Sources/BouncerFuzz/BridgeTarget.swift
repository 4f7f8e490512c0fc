import BouncerCore

extension FuzzTarget {
    /// The protocol bridge (issue 26): a client's `requestState` never opens unless sealed
    /// (``requestState(_:)``); and its rewriting of what a legacy upstream says: for any JSON
    /// an upstream could send, the discover result, the completed result, the mapped error and
    /// the stripped params serialise and read back as themselves; a completed object says
    /// `resultType` and, for a cacheable method, carries cache hints (private when it varies by
    /// caller); completing twice changes nothing; no reserved `_meta` key reaches the upstream.
    static func bridge(_ data: [UInt8]) {
        Self.requestState(data)
        Self.upstreamAnswer(data)
        Self.bridgedRequest(data)
        guard let value = try? JSONParser(maxDepth: 32).parse(data) else { return }
        Self.subscription(value)
        let discover = BridgeMapping.discoverResult(fromInitialize: value)
        Self.requireRoundTrip(discover, "discover result")
        require(discover["supportedVersions"]?.arrayValue?.first == .string(MCPProtocol.statelessVersion), "discover without 2026-07-28 first: \(discover.serialized)")
        for (name, capability) in discover["capabilities"]?.objectValue ?? [:] {
            require(BridgeMapping.bridgedCapabilities.contains(name) && capability.objectValue?.isEmpty == true, "capability \(name) offered: \(capability.serialized)")
        }
        for method in ["tools/list", "tools/call", "resources/read"] {
            for varies in [false, true] {
                let completed = BridgeMapping.completeResult(value, method: method, variesByCaller: varies)
                Self.requireRoundTrip(completed, "completed result")
                require(BridgeMapping.completeResult(completed, method: method, variesByCaller: varies) == completed, "completing twice changed \(completed.serialized)")
                guard completed.objectValue != nil else { continue }
                require(completed["resultType"] != nil, "no resultType in \(completed.serialized)")
                if BridgeMapping.cacheableMethods.contains(method) {
                    require(completed["ttlMs"] != nil && completed["cacheScope"] != nil, "no cache hints in \(completed.serialized)")
                    if varies { require(completed["cacheScope"] == .string("private"), "a result that varies by caller is not private") }
                }
            }
        }
        let error = BridgeMapping.mapError(value)
        Self.requireRoundTrip(error, "mapped error")
        require(error["code"]?.int64Value != -32002, "-32002 left for a modern client")
        let params = BridgeMapping.legacyParams(value)
        if let params { Self.requireRoundTrip(params, "legacy params") }
        for key in (params?["_meta"]?.objectValue ?? [:]).keys {
            require(!key.hasPrefix(BridgeMapping.reservedMetaPrefix), "reserved _meta key \(key) kept for the upstream")
        }
    }

    /// An upstream's answer read message by message: however its bytes are cut into reads, the
    /// same messages come out (an event stream and a JSON body alike), each within the limit,
    /// and a read that fails fails the same way whole.
    static func upstreamAnswer(_ data: [UInt8]) {
        for contentType in ["text/event-stream", "application/json"] {
            func read(_ chunks: [ArraySlice<UInt8>]) -> Result<[JSONValue], UpstreamMessageReader.Failure> {
                do {
                    var reader = try UpstreamMessageReader(contentType: contentType, maxMessageBytes: 512, maxDepth: 16)
                    var messages: [JSONValue] = []
                    for chunk in chunks { messages += try reader.feed(chunk) }
                    return .success(messages + (try reader.finish()))
                } catch {
                    return .failure(error)
                }
            }
            let whole = read([data[...]])
            let cut = data.isEmpty ? 0 : Int(data[0]) % (data.count + 1)
            let split = read([data[..<cut], data[cut...]])
            switch (whole, split) {
            case (.success(let one), .success(let other)):
                require(one == other, "\(contentType): reads cut at \(cut) gave other messages")
                for message in one { require(message.serialized.utf8.count <= 512 * 6, "a message over the limit came out") }
            case (.failure, .failure):
                break
            default:
                require(false, "\(contentType): a read cut at \(cut) \(whole) vs \(split)")
            }
        }
    }

    /// A client's body as the bridge checks it (headers that mirror it): what passes goes to the
    /// upstream without reserved `_meta` keys or the round-trip members, under the gateway's id,
    /// and its digest ignores the envelope, the state and the answers.
    static func bridgedRequest(_ data: [UInt8]) {
        guard let body = try? JSONRPCBody.parse(data, maxDepth: 32), let message = body.messages.first, !body.isBatch else { return }
        var facts = RequestHeadFacts(target: "/mcp")
        facts.observe(name: "MCP-Protocol-Version", value: MCPProtocol.statelessVersion)
        if let method = message.method { facts.observe(name: "Mcp-Method", value: method) }
        if let name = try? message.target() { facts.observe(name: "Mcp-Name", value: name) }
        guard case .success(let request) = BridgedRequest.check(body, facts: facts) else { return }
        let upstream = request.legacyMessage(upstreamID: .string("bridge-1"))
        Self.requireRoundTrip(upstream, "legacy message")
        require(request.id == nil || upstream["id"] == .string("bridge-1"), "the client's id went upstream")
        require(upstream["params"]?["requestState"] == nil && upstream["params"]?["inputResponses"] == nil, "round-trip members went upstream")
        for key in (upstream["params"]?["_meta"]?.objectValue ?? [:]).keys {
            require(!key.hasPrefix(BridgeMapping.reservedMetaPrefix), "reserved _meta key \(key) went upstream")
        }
        for name in (request.sessionCapabilities.objectValue ?? [:]).keys {
            require(request.declaredCapabilities[name] != nil && BridgeMapping.relayableClientCapabilities.contains(name), "capability \(name) offered upstream")
        }
        if case .object(var params)? = request.params {
            params["requestState"] = .string("r1.x.y")
            params["inputResponses"] = .object([:])
            var retry = request
            retry.params = .object(params)
            require(retry.digest == request.digest, "a retry's digest differs")
        }
        _ = BridgeUpstreamMessage.classify(upstream, upstreamID: .string("bridge-1"))
    }

    /// `subscriptions/listen`: any value as a client's filter and as an upstream notification.
    /// A filter read back from its acknowledgment is itself; what is honoured never exceeds
    /// what was asked; a relayed notification is a notification the filter names, tagged with
    /// the subscription id, and nothing else is relayed.
    static func subscription(_ value: JSONValue) {
        if let filter = SubscriptionFilter(requested: value) {
            let ack = filter.acknowledgment(subscriptionID: .string("l-1"))
            Self.requireRoundTrip(ack, "acknowledgment")
            require(SubscriptionFilter(requested: ack["params"]?["notifications"]) == filter, "an acknowledged filter reads back otherwise")
            let everything = JSONValue.object(["capabilities": .object([
                "tools": .object(["listChanged": .bool(true)]), "prompts": .object(["listChanged": .bool(true)]), "resources": .object(["listChanged": .bool(true), "subscribe": .bool(true)]),
            ])])
            let honoured = filter.honoured(byUpstream: value, subscribed: filter.resourceSubscriptions.filter { $0.count % 2 == 0 })
            require(!honoured.toolsListChanged || filter.toolsListChanged, "honoured more than asked")
            require(honoured.resourceSubscriptions.allSatisfy(filter.resourceSubscriptions.contains), "honoured a resource not asked for")
            require(filter.honoured(byUpstream: everything, subscribed: filter.resourceSubscriptions) == filter, "an upstream with everything does not honour the filter")
        }
        let all = SubscriptionFilter(toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true, resourceSubscriptions: ["file:///a"])
        if let relayed = all.relay(value, subscriptionID: .number("7")) {
            Self.requireRoundTrip(relayed, "relayed notification")
            require(relayed["id"] == nil && relayed["params"]?["_meta"]?[SubscriptionFilter.subscriptionIDKey] == .number("7"), "relayed untagged or a request: \(relayed.serialized)")
            require(SubscriptionFilter().relay(value, subscriptionID: .number("7")) == nil, "an empty filter relayed \(value.serialized)")
        }
    }

    /// A bridged call's `requestState` from a client: any text, and the input spliced into a real
    /// one, never opens unless it is exactly what the gateway sealed.
    static let parkedCall = ParkedCall(
        binding: SessionBinding(resource: "/mcp", issuer: "https://as.example.com", subject: "alice", clientID: "c"),
        replica: "gw-1", parkID: "p-1", requestDigest: "tools/call echo", expiresAt: 1_800_000_600
    )
    static let stateSealer = RequestStateSealer(keys: [try! SessionKey(id: "k1", secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")])
    static let sealedState = stateSealer.seal(parkedCall)!

    static func requestState(_ data: [UInt8]) {
        func opens(_ text: String) -> Bool {
            if case .success = Self.stateSealer.open(text, caller: Self.parkedCall.binding, requestDigest: "tools/call echo", replica: "gw-1", now: 1_800_000_000) {
                return true
            }
            return false
        }
        let text = String(decoding: data, as: UTF8.self)
        require(!opens(text) || text == Self.sealedState, "a requestState opened that was never sealed: \(text)")
        guard !data.isEmpty else { return }
        var mangled = Array(Self.sealedState.utf8)
        let at = Int(data[0]) % mangled.count
        mangled.replaceSubrange(at..<min(mangled.count, at + data.count - 1), with: data.dropFirst())
        let candidate = String(decoding: mangled, as: UTF8.self)
        require(candidate == Self.sealedState || !opens(candidate), "a mangled requestState opened: \(candidate)")
    }

    private static func requireRoundTrip(_ value: JSONValue, _ what: String) {
        let text = value.serialized
        require((try? JSONParser(maxDepth: 64).parse(text)) == value, "\(what) does not read back: \(text)")
    }
}
