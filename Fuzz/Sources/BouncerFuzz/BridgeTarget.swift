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
        guard let value = try? JSONParser(maxDepth: 32).parse(data) else { return }
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
