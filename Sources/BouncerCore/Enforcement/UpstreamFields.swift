// MARK: 6. The upstream head

extension Enforcement {
    /// Which of the client's header fields go upstream: not the hop-by-hop ones (nor those its
    /// `Connection` names, RFC 9110 7.6.1), not its credentials and proof (no token
    /// passthrough), not a field the static credential replaces, not its forwarding fields
    /// (the gateway writes its own), not its (sealed) `Mcp-Session-Id`, and not its trace
    /// context when the gateway replaces it. Judged on the name's bytes, so the gateway's
    /// codec copies the fields that go on without making a String of them.
    public struct ClientFieldFilter: Sendable {
        public let connection: ConnectionOptions
        let staticHeaderName: String?
        let replacesTrace: Bool

        public init(facts: RequestHeadFacts, resource: ResourcePolicy, replacesTrace: Bool) {
            self.connection = facts.connection
            if case .staticHeader(let name, _) = resource.credentials { self.staticHeaderName = name } else { self.staticHeaderName = nil }
            self.replacesTrace = replacesTrace
        }

        /// Whether the field named `name` goes upstream.
        public func forwards(_ name: UnsafeRawBufferPointer) -> Bool {
            switch name.count {
            case 15 where HTTP1Lines.equals(name, 0..<15, lowercase: "x-forwarded-for"): return false
            case 14 where HTTP1Lines.equals(name, 0..<14, lowercase: "mcp-session-id"): return false
            case 11 where self.replacesTrace && HTTP1Lines.equals(name, 0..<11, lowercase: "traceparent"): return false
            case 10 where self.replacesTrace && HTTP1Lines.equals(name, 0..<10, lowercase: "tracestate"): return false
            default: break
            }
            if HopByHop.isRequestHeader(bytes: name, connection: self.connection) { return false }
            if let replaced = self.staticHeaderName, HTTP1Lines.equals(name, ignoringCase: replaced) { return false }
            return true
        }

        public func forwards(_ name: String) -> Bool {
            var name = name
            return name.withUTF8 { self.forwards(UnsafeRawBufferPointer($0)) }
        }
    }

    /// The header fields the gateway adds to what the client's head passes on
    /// (``ClientFieldFilter``), in order, handed to `add`: the upstream's own session id, Host,
    /// Content-Length, `X-Forwarded-For`, `Forwarded` (when a trusted proxy sent one),
    /// `X-Forwarded-Proto`, `X-Forwarded-Host`, and the gateway's own credential: the static
    /// header or the exchanged `upstreamToken`; then the replaced trace context.
    ///
    /// `X-Forwarded-For` and `Forwarded` are believed only from a trusted proxy
    /// (`peerIsTrustedProxy`, ``TrustedProxies``) and unless the client nominated them as
    /// hop-by-hop: then the gateway appends `peer` to the chain; otherwise `X-Forwarded-For`
    /// is `peer` alone.
    public static func gatewayFields(
        facts: RequestHeadFacts, resource: ResourcePolicy, peer: String, peerIsTrustedProxy: Bool = false, publicURL: CanonicalURI,
        bodyLength: Int?, isPOST: Bool, upstreamToken: String?, upstreamSessionID: String? = nil, traceparent: String? = nil, add: (String, String) -> Void
    ) {
        if let upstreamSessionID {
            add("Mcp-Session-Id", upstreamSessionID)
        }
        add("Host", resource.upstream.hostHeader)
        if let bodyLength {
            add("Content-Length", String(bodyLength))
        } else if isPOST {
            add("Content-Length", "0")
        }
        func chain(_ values: [String], _ name: String) -> String? {
            guard peerIsTrustedProxy, !values.isEmpty, !facts.connection.names(name) else { return nil }
            return values.joined(separator: ", ")
        }
        add("X-Forwarded-For", chain(facts.forwardedFor, "x-forwarded-for").map { "\($0), \(peer)" } ?? peer)
        if let forwarded = chain(facts.forwarded, "forwarded") {
            // RFC 7239 4: an IPv6 node is quoted and bracketed.
            add("Forwarded", "\(forwarded), for=\(peer.utf8.contains(UInt8(ascii: ":")) ? "\"[\(peer)]\"" : peer)")
        }
        add("X-Forwarded-Proto", publicURL.scheme)
        add("X-Forwarded-Host", facts.host ?? publicURL.host)
        if case .staticHeader(let name, let value) = resource.credentials {
            add(name, value)
        }
        if let upstreamToken {
            add("Authorization", "Bearer \(upstreamToken)")
        }
        if let traceparent {
            add("traceparent", traceparent)
        }
    }

    /// The header fields the upstream gets, in order: the client's `fields` that
    /// ``ClientFieldFilter`` passes, then ``gatewayFields(facts:resource:peer:peerIsTrustedProxy:publicURL:bodyLength:isPOST:upstreamToken:upstreamSessionID:traceparent:add:)``.
    /// For heads given as Strings (the gateway's own path copies the client's fields from the
    /// bytes its codec read).
    public static func upstreamHeaders<Fields: Sequence>(
        from fields: Fields, facts: RequestHeadFacts, resource: ResourcePolicy, peer: String, peerIsTrustedProxy: Bool = false, publicURL: CanonicalURI,
        bodyLength: Int?, isPOST: Bool, upstreamToken: String?, upstreamSessionID: String? = nil, traceparent: String? = nil, add: (String, String) -> Void
    ) where Fields.Element == (name: String, value: String) {
        let filter = ClientFieldFilter(facts: facts, resource: resource, replacesTrace: traceparent != nil)
        for (name, value) in fields where filter.forwards(name) {
            add(name, value)
        }
        Self.gatewayFields(
            facts: facts, resource: resource, peer: peer, peerIsTrustedProxy: peerIsTrustedProxy, publicURL: publicURL, bodyLength: bodyLength, isPOST: isPOST,
            upstreamToken: upstreamToken, upstreamSessionID: upstreamSessionID, traceparent: traceparent, add: add
        )
    }
}
