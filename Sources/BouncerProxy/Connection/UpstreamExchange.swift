import BouncerCore
import NIOCore
import NIOHTTP1
import Prometheus
import Logging

/// One request's exchange with its upstream, from the lease of a connection to the end of the
/// response (as async-http-client's channel handler drives a `Transaction`). The connection's
/// handler hands it the upstream's response parts; it relays them to the client, inspecting
/// what the request needs inspected (``InspectedBody``, ``ResponseInspector``), sealing the
/// upstream's session id, and returns what its rules (``UpstreamExchangeStateMachine``) say
/// the connection must do: fail, end a stream, finish. It writes the head and body itself and
/// applies the machine's relay actions; everything else goes back to the handler's `run`.
/// Runs on the connection's event loop, like the upstream connection.
final class UpstreamExchange {
    /// Kept for one retry on a fresh connection (see ``UpstreamExchangeStateMachine``).
    let request: ClientRequest
    /// Its `DPoP` proof is made again when the upstream asks for a nonce.
    private(set) var upstreamHead: UpstreamRequestHead
    /// The DPoP-bound upstream token the head presents, if the leg is bound.
    private let boundToken: String?
    let resource: ResolvedResource
    let keepAlive: Bool
    let startedAt: NIODeadline
    /// The exchange's rules (retry, 1xx, held heads, timeout), as a value.
    var machine: UpstreamExchangeStateMachine
    var lease: UpstreamLease?
    /// The status the client got: 0 until a head went out to it.
    var status: UInt = 0
    /// Response body bytes relayed to the client.
    var bytesOut = 0
    /// The id of the request's single JSON-RPC request, for errors about the exchange.
    let errorID: JSONValue?
    /// Counted in `mcp_bouncer_open_streams` (a `text/event-stream` response).
    private var streaming = false
    /// Reads the response's messages (list filtering, pins, server-to-client requests); nil
    /// when nothing in the request needs it, and the response is relayed unread.
    private var inspector: ResponseInspector?
    /// How the body is read: as it comes, held whole, or event by event.
    private var body = InspectedBody()
    /// The head of a held body, until the body is inspected.
    private var heldHead: RelayedResponseHead?
    /// Server-to-client requests judged in this response (``maxServerRequestsPerResponse``).
    private var serverRequests = 0

    /// More server-to-client requests than this in one response is a flood, not a
    /// conversation: the stream ends (and each one past it is neither recorded nor answered).
    static let maxServerRequestsPerResponse = 100

    var log: RequestLog { self.request.log }

    init(
        request: ClientRequest, upstreamHead: UpstreamRequestHead, boundToken: String?, resource: ResolvedResource, machine: UpstreamExchangeStateMachine,
        errorID: JSONValue?, inspector: ResponseInspector?
    ) {
        self.request = request
        self.upstreamHead = upstreamHead
        self.boundToken = boundToken
        self.resource = resource
        self.keepAlive = request.head.isKeepAlive
        self.machine = machine
        self.errorID = errorID
        self.inspector = inspector
        self.startedAt = .now()
    }

    /// The request as the upstream sees it: the client's fields that ``Enforcement/ClientFieldFilter``
    /// passes, copied from the bytes the codec read, then the gateway's own
    /// (``Enforcement/gatewayFields(facts:resource:peer:peerIsTrustedProxy:publicURL:bodyLength:isPOST:upstreamToken:upstreamSessionID:traceparent:add:)``).
    /// `peer` is the TCP peer, whose forwarding headers count when `peerIsTrustedProxy`.
    static func upstreamHead(
        for request: ClientRequest, resource: ResolvedResource, upstreamToken: String?, peer: String, peerIsTrustedProxy: Bool, publicURL: CanonicalURI
    ) -> UpstreamRequestHead {
        let upstream = resource.upstream
        var uri = upstream.requestPath
        if let query = request.query, !query.isEmpty { uri += (uri.contains("?") ? "&" : "?") + query }
        let traceparent = request.trace?.replacement
        let filter = Enforcement.ClientFieldFilter(facts: request.facts, resource: resource.policy, replacesTrace: traceparent != nil)
        var head = UpstreamRequestHead(method: request.head.method, uri: uri, client: (request.head.wire, filter))
        head.fields.reserveCapacity(8)
        // A DPoP-bound upstream token goes as `Authorization: DPoP` with its proof, below.
        let dpop = upstreamToken == nil ? nil : resource.upstreamDPoP
        Enforcement.gatewayFields(
            facts: request.facts, resource: resource.policy, peer: peer, peerIsTrustedProxy: peerIsTrustedProxy,
            publicURL: publicURL, bodyLength: request.body?.readableBytes, isPOST: request.head.method == .POST, upstreamToken: dpop == nil ? upstreamToken : nil,
            upstreamSessionID: request.upstreamSessionID, traceparent: traceparent
        ) { name, value in
            head.fields.append((name, value))
        }
        if let dpop, let upstreamToken {
            head.fields.append(("Authorization", "DPoP \(upstreamToken)"))
            dpop.prove(&head, token: upstreamToken)
        }
        return head
    }

    /// Before the request goes again for a nonce: a new proof carrying it.
    func proveAgain() {
        guard let dpop = self.resource.upstreamDPoP, let token = self.boundToken else { return }
        dpop.prove(&self.upstreamHead, token: token)
    }

    // MARK: The response, part by part

    /// A proxy forwards 1xx responses (RFC 9110 15.2), connection-scoped headers removed, but
    /// never to an HTTP/1.0 client. One whose headers cannot be sent is dropped, not relayed.
    /// A 101 answers an upgrade the gateway never asks for (it forwards no Upgrade): the
    /// upstream broke the protocol, and the client gets a 502.
    func receiveInterim(_ head: RelayedResponseHead, keepAlive: Bool, writer: inout ResponseWriter, context: ChannelHandlerContext) -> UpstreamExchangeStateMachine.Action {
        let action = self.machine.interimReceived(status: Int(head.status.code))
        guard case .relayInterim = action else { return action }
        do {
            try writer.writeInterim(head, keepAlive: keepAlive, context: context)
        } catch {
            self.log.debug("interim response not relayed", metadata: ["status": "\(head.status.code)", "reason": "\(error)"])
        }
        return .none
    }

    /// The final head: relayed at once, or held while an `application/json` body is read
    /// whole (its length may change). `keepAlive` is the connection's answer for the client.
    func receiveHead(_ head: RelayedResponseHead, keepAlive: Bool, gateway: Gateway, writer: inout ResponseWriter, context: ChannelHandlerContext) -> UpstreamExchangeStateMachine.Action {
        if let dpop = self.resource.upstreamDPoP {
            // The DPoP-bound leg: the upstream's nonce is kept for the next proof; asked for
            // one, the gateway sends the request again with it (once), and the client sees
            // only the second answer.
            let headers = head.decoded.headers
            dpop.noteNonce(headers)
            if UpstreamDPoP.asksForNonce(status: head.status.code, headers: headers), self.machine.nonceRequested() {
                self.log.debug("upstream asked for a DPoP nonce; sending the request again with it")
                return .none
            }
        }
        var head = head
        let sessionIDs = head.elements("mcp-session-id")
        if !sessionIDs.isEmpty {
            // The client gets the upstream's session id sealed to its user, never the id itself.
            guard let sealed = self.sealSession(sessionIDs, gateway: gateway) else {
                return self.machine.headUnrelayable(reason: "an Mcp-Session-Id that is not one visible-ASCII value of at most \(SessionSealer.maxUpstreamIDLength) bytes")
            }
            head.replace("Mcp-Session-Id", with: sealed)
        }
        // Only 2026-07-28 requests can contradict an era: a legacy client's path takes no lock.
        if self.request.facts.protocolVersion == MCPProtocol.statelessVersion, self.resource.policy.upstreamProtocol == .auto,
           UpstreamDiscovery.contradicts(era: self.resource.era.era, requestVersion: self.request.facts.protocolVersion, status: Int(head.status.code)) {
            gateway.rediscoverEra(of: self.resource)
        }
        // The content type is looked up once, and compared on its bytes.
        let type = head.mediaType
        if !self.streaming, type == .eventStream {
            self.streaming = true
            gateway.metrics.openStreams.increment()
            // A stream may stay open for hours: its heads stop holding the reads they came in.
            self.request.compact()
            self.upstreamHead.client?.head = self.request.head.wire
        }
        var rewritten: RewrittenBody?
        if self.inspector != nil, head.status == .ok, let type {
            if type == .json {
                self.body = .json(limit: gateway.policy.limits.maxEventBytes)
                self.heldHead = head
                return self.machine.headReceived(hold: true)
            }
            if type == .eventStream {
                self.body = .events(maxEventBytes: gateway.policy.limits.maxEventBytes)
                rewritten = .unknownLength
            }
        }
        return self.relayHead(head, keepAlive: keepAlive, rewritten: rewritten, writer: &writer, context: context) { $0.headReceived() }
    }

    /// Serialises `head` and, when `event` lets it go out, writes it. A head that cannot be
    /// relayed safely (a header that could split the response) fails the exchange: a 502.
    private func relayHead(
        _ head: RelayedResponseHead, keepAlive: Bool, rewritten: RewrittenBody?, writer: inout ResponseWriter, context: ChannelHandlerContext,
        _ event: (inout UpstreamExchangeStateMachine) -> UpstreamExchangeStateMachine.Action
    ) -> UpstreamExchangeStateMachine.Action {
        let serialised: ByteBuffer
        do {
            // The next DPoP nonce before the client's expires (RFC 9449 §8.2); the upstream's own
            // is dropped with the hop-by-hop fields (it was never the gateway's to hand out).
            let extra = self.request.nextNonce.map { [("DPoP-Nonce", $0)] } ?? []
            serialised = try writer.serialiseHead(head, keepAlive: keepAlive, allocator: context.channel.allocator, rewritten: rewritten, extra: extra)
        } catch {
            return self.machine.headUnrelayable(reason: "response head cannot be relayed: \(error)")
        }
        let action = event(&self.machine)
        guard case .relayHead = action else { return action }
        self.status = head.status.code
        writer.writeHead(serialised, context: context)
        return .none
    }

    /// A read of the body: relayed as it came, held, or event by event as the inspector saw it.
    func receiveBody(_ buffer: ByteBuffer, gateway: Gateway, writer: inout ResponseWriter, context: ChannelHandlerContext) -> UpstreamExchangeStateMachine.Action {
        if self.machine.isDiscarding { return .none }
        if self.body.isPassThrough {
            self.relay(buffer, writer: &writer, context: context)
            return .none
        }
        var flooded = false
        let received = self.body.receive(buffer) { piece in
            switch piece {
            case .bytes(let bytes):
                self.relay(bytes, writer: &writer, context: context)
                return true
            case .event(let event):
                switch self.inspectEvent(event, gateway: gateway, context: context) {
                case .some(let relayed):
                    self.relay(relayed, writer: &writer, context: context)
                    return true
                case .none where self.serverRequests > Self.maxServerRequestsPerResponse:
                    flooded = true
                    return false
                case .none:
                    // Nothing of it reaches the client: not its data, not its id.
                    return true
                }
            }
        }
        switch received {
        case .relayed, .held:
            return .none
        case .tooLarge(let limit):
            self.log.error("upstream message too large", metadata: ["limit": "\(limit)"])
            return self.machine.messageTooLarge(limit: limit)
        case .stopped:
            guard flooded else { return .none }
            self.log.error("upstream flooded the stream with requests for the client; stream ended", metadata: ["limit": "\(Self.maxServerRequestsPerResponse)"])
            return self.machine.serverRequestFlood(limit: Self.maxServerRequestsPerResponse)
        }
    }

    /// The end of the response: a held body is inspected and goes out with its head, now that
    /// its length is known. `upstreamKeepAlive` is what the upstream said of its connection.
    func receiveEnd(
        upstreamKeepAlive: Bool, keepAlive: Bool, gateway: Gateway, writer: inout ResponseWriter, context: ChannelHandlerContext
    ) -> UpstreamExchangeStateMachine.Action {
        if self.machine.isDiscarding { return self.machine.responseEnded(keepAlive: upstreamKeepAlive) }
        // An event the stream ended in the middle of is not an event: it is dropped.
        if var held = self.body.end(), let head = self.heldHead {
            self.heldHead = nil
            switch held.withUnsafeReadableBytes({ self.inspect($0, gateway: gateway, context: context) }) {
            case .pass:
                break
            case .replace(let message):
                held = context.channel.allocator.buffer(string: message)
            case .drop:
                // The body held nothing the client may read: its request fails instead.
                held = context.channel.allocator.buffer(string: JSONRPCFailure.errorBody(
                    code: JSONRPCErrorCode.upstreamError, message: GatewayRejection.upstreamResponseWithheldMessage, id: self.errorID
                ))
            }
            let action = self.relayHead(head, keepAlive: keepAlive, rewritten: .length(held.readableBytes), writer: &writer, context: context) { $0.heldBodyReady() }
            guard case .none = action else { return action }
            self.relay(held, writer: &writer, context: context)
        }
        return self.machine.responseEnded(keepAlive: upstreamKeepAlive)
    }

    /// Writes the JSON-RPC error event that ends an inspected stream the gateway will not
    /// relay further (``UpstreamExchangeStateMachine/Action/endStream(_:)``).
    func writeErrorEvent(_ rejection: GatewayRejection, writer: inout ResponseWriter, context: ChannelHandlerContext) {
        let error = ServerSentEvent(type: "message", data: rejection.response(resource: nil).body)
        self.relay(context.channel.allocator.buffer(string: error.serialized), writer: &writer, context: context)
    }

    /// Relays a piece of the body as it is; a client that cannot take more pauses the upstream.
    private func relay(_ buffer: ByteBuffer, writer: inout ResponseWriter, context: ChannelHandlerContext) {
        self.bytesOut += buffer.readableBytes
        if !writer.writeBody(buffer, context: context) {
            self.lease?.handler.pause()
        }
    }

    /// Takes the exchange out of `mcp_bouncer_open_streams`, once, when it is recorded.
    func endStreamCount(_ metrics: GatewayMetrics) {
        guard self.streaming else { return }
        self.streaming = false
        metrics.openStreams.decrement()
    }

    // MARK: Inspection

    /// The event as it goes to the client (itself, or as the inspector rewrote it), or nil
    /// when nothing of it may.
    private func inspectEvent(_ slice: ByteBuffer, gateway: Gateway, context: ChannelHandlerContext) -> ByteBuffer? {
        // Most events need nothing (a result, a progress notice): relayed unparsed.
        guard slice.withUnsafeReadableBytes({ self.inspector?.mayNeed($0) ?? false }) else { return slice }
        var event = ServerSentEvent(parsing: slice.readableBytesView)
        guard var data = event.data else { return slice }
        switch data.withUTF8({ self.inspect(UnsafeRawBufferPointer($0), gateway: gateway, context: context) }) {
        case .pass:
            return slice
        case .replace(let message):
            event.data = message
            return context.channel.allocator.buffer(string: event.serialized)
        case .drop:
            return nil
        }
    }

    /// Runs one upstream message (a JSON body, an event's data) through the inspector and acts
    /// on what it saw: tools to the gateway's memory (``Gateway/noteTools(_:seen:findings:)``),
    /// a `tools/list_changed` to a new listing, server-to-client requests to the audit trail
    /// and, when blocked, to the gateway's own answer upstream.
    private func inspect(_ message: UnsafeRawBufferPointer, gateway: Gateway, context: ChannelHandlerContext) -> ResponseInspector.Verdict {
        // The inspector tells itself whether the message needs it (``ResponseInspector/mayNeed(_:)``).
        guard var inspector = self.inspector else { return .pass }
        self.inspector = nil  // its tables stay uniquely referenced while they change
        let verdict = inspector.inspect(message) { gateway.serverRequests.admitElicitation(self.serverRequestOrigin) }
        let report = inspector.takeReport()
        self.inspector = inspector
        guard !report.isEmpty else { return verdict }
        self.serverRequests += report.serverRequests.count
        guard self.serverRequests <= Self.maxServerRequestsPerResponse else {
            // An upstream asking without end: not another audit record or answer each.
            return .drop
        }
        gateway.act(on: report, resource: self.resource, origin: self.serverRequestOrigin, on: context.eventLoop)
        if report.hiddenCount > 0 {
            self.log.debug("list filtered", metadata: ["hidden": "\(inspector.hidden.joined(separator: ", "))"])
        }
        if report.unreadable > 0 {
            self.log.error("upstream message not relayed: not strict JSON", metadata: ["outcome": "upstream_error"])
        }
        return verdict
    }

    private var serverRequestOrigin: ServerRequestOrigin {
        ServerRequestOrigin(
            resource: self.resource, session: self.request.facts.sessionID, subject: self.request.claims?.subject,
            requestID: self.request.log.requestID,
            upstreamHeaders: ServerRequestOrigin.headers(of: self.upstreamHead, resource: self.resource)
        )
    }

    // MARK: Sessions

    /// The sealed id for the session id(s) an upstream response carries; nil when it is not one
    /// value the transport allows.
    private func sealSession(_ values: [String], gateway: Gateway) -> String? {
        guard values.count == 1, let binding = self.request.sessionBinding(self.resource) else { return nil }
        // Servers repeat the session id on every response: the client keeps the id it sent,
        // so one session has one id (its audit digest, its elicitation count).
        if let sent = self.request.upstreamSessionID, values[0] == sent, let sealed = self.request.facts.sessionID {
            return sealed
        }
        return gateway.sessions.seal(values[0], for: binding, now: gateway.wallClock.seconds())
    }
}

@available(*, unavailable)
extension UpstreamExchange: Sendable {}
