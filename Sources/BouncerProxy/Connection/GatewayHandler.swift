import BouncerCore
import BouncerTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOTLS

/// The gateway's per-connection handler: it applies what three things decide. The
/// connection's rules (pipelining, read gating, idle and header-read timeouts, framing bounds,
/// the staged close) are ``ClientConnectionStateMachine``; what a request may do is
/// ``Enforcement``; an exchange with the upstream (retry, 1xx, timeout) is
/// ``UpstreamExchangeStateMachine``. Responses are written by ``ResponseWriter``. The handler
/// holds the data those values need (the request being read, the exchange, the parts of
/// pipelined requests) and does the IO: timers, token verification and exchange, the upstream
/// pool. Everything here runs on the connection's event loop, including the upstream
/// connection, so there are no locks on the data path.
///
/// The request path is written to keep per-request work small (see Benchmarks/): the request
/// and the exchange are objects (a step moves one reference, not a dozen fields), the route's
/// policy is resolved once, the connection has one timer rather than a promise per write, and
/// decision-log metadata is rendered only when a line is written.
final class GatewayHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    /// Responses are serialised here (``ResponseWriter``), not by NIO's encoder.
    typealias OutboundOut = ByteBuffer

    private final class Request {
        let head: HTTPRequestHead
        /// What the enforcement stages read of the head, gathered in one pass.
        let facts: RequestHeadFacts
        /// The request target's query, split off once.
        let query: Substring?
        let route: Route<ResolvedResource>
        var body: ByteBuffer?
        var log: RequestLog
        let startedAt: NIODeadline
        /// What the audit record and metrics need, gathered as the request goes.
        var token: String?
        var claims: AccessTokenClaims?
        /// The token's scopes with those they imply: what the decisions use.
        var granted: Set<String>?
        var trace: RequestTrace?
        var credential = AuditRequest.UpstreamCredential.none
        /// A slot taken in the audit queue (`on_overflow: refuse`), spent by the record.
        var auditSlot = false
        /// Set once the request's outcome is recorded (``GatewayHandler/record(_:resource:decision:outcome:reason:status:bytesOut:exchange:)``).
        var recorded = false
        /// The upstream's own session id, from the sealed one the client sent.
        var upstreamSessionID: String?
        /// The client's address: the TCP peer, or what a trusted proxy's headers say.
        let peer: String

        init(head: HTTPRequestHead, facts: RequestHeadFacts, query: Substring?, route: Route<ResolvedResource>, log: RequestLog, startedAt: NIODeadline, peer: String) {
            self.head = head
            self.facts = facts
            self.query = query
            self.route = route
            self.log = log
            self.startedAt = startedAt
            self.peer = peer
        }

        var resource: ResolvedResource? {
            if case .resource(let resource) = self.route { return resource }
            return nil
        }
    }

    private final class Exchange {
        /// Kept for one retry on a fresh connection (see ``UpstreamExchangeStateMachine``).
        let request: Request
        let upstreamHead: HTTPRequestHead
        let resource: ResolvedResource
        let keepAlive: Bool
        let startedAt: NIODeadline
        /// The exchange's rules (retry, 1xx, timeout), as a value; applied by ``run(_:_:context:relaying:)``.
        var machine: UpstreamExchangeStateMachine
        var lease: UpstreamLease?
        var status: UInt = 0
        /// Response body bytes relayed to the client.
        var bytesOut = 0
        /// Counted in `mcp_bouncer_open_streams` (a `text/event-stream` response).
        var streaming = false
        /// The id of the request's single JSON-RPC request, for errors about the exchange.
        let errorID: JSONValue?
        /// Reads the response's messages (list filtering); nil when nothing in the request needs
        /// it, and the response is relayed unread.
        var inspector: ResponseInspector?
        var inspection = Inspection.none
        /// Server-to-client requests judged in this response (``maxServerRequestsPerResponse``).
        var serverRequests = 0

        /// How the body of an inspected response is being read.
        enum Inspection {
            case none
            /// An `application/json` body, read whole (up to `limits.max_event_bytes`) before
            /// its head goes out with the length of what the client gets.
            case json(head: HTTPResponseHead, body: ByteBuffer)
            /// An event stream: each complete event goes out at once; the bytes of the one not
            /// complete yet wait here.
            case events(ServerSentEventSplitter, held: ByteBuffer)
        }

        var log: RequestLog { self.request.log }

        init(request: Request, upstreamHead: HTTPRequestHead, resource: ResolvedResource, machine: UpstreamExchangeStateMachine, errorID: JSONValue?) {
            self.request = request
            self.upstreamHead = upstreamHead
            self.resource = resource
            self.keepAlive = request.head.isKeepAlive
            self.machine = machine
            self.errorID = errorID
            self.startedAt = .now()
        }
    }

    /// The gateway in force when the current request's head arrived (``current`` at that time).
    private var gateway: Gateway
    private let current: GatewayReference
    private let remoteAddress: String
    /// Whether the TCP peer is one of `trusted_proxies` (its forwarding headers name the client).
    private var peerIsTrustedProxy: Bool
    /// The connection's rules (pipelining, read gating, timeouts, framing bounds, closing), as a
    /// value; applied by ``run(_:context:)``.
    private var machine: ClientConnectionStateMachine
    /// The request being read or decided (from its accepted head to its response).
    private var request: Request?
    /// The exchange with the upstream, while the machine is ``ClientConnectionStateMachine/State/forwarding``.
    private var exchange: Exchange?
    /// Parts of requests that arrived while an earlier one was being answered, each head with
    /// its facts, gathered once when it arrives. The machine counts them.
    private var pipelined = CircularBuffer<(part: HTTPServerRequestPart, facts: RequestHeadFacts?)>()
    private var servingPipelined = false
    private var writer = ResponseWriter()
    private var context: ChannelHandlerContext?
    private var requestCounter = 0
    private let connectionID: String
    /// Trace and span ids for requests without a valid `traceparent`.
    private var random = SplitMix64()
    /// The last token's audit digest: a connection usually carries one token for many
    /// requests, so it is hashed once here rather than once per record.
    private var lastToken: (token: String, digest: UInt64)?
    /// `x5t#S256` of the client's verified TLS certificate, when it sent one (RFC 8705):
    /// what certificate-bound tokens will be compared with.
    private(set) var clientCertificateThumbprint: String?
    /// This event loop's upstream pool, looked up once.
    private var pool: UpstreamConnectionPool?
    /// The connection's one timer (idle, header read, linger), and when it fires. Armed for
    /// the earliest deadline the machine names and re-armed when it fires, never cancelled for
    /// a later one.
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture
    /// Bytes the request decoder has parsed (see ``RequestByteMeter``), and the count at the
    /// end of the last read.
    private let meter: RequestByteMeter
    private var meterReading = 0
    /// The upstream-response timer: armed for the earliest deadline that matters and re-armed
    /// when it fires, never cancelled per request (NIO cancels a scheduled task by scanning
    /// every task on the loop, and a task per request is three allocations).
    private var responseTimer: Scheduled<Void>?
    private var responseTimerDeadline: NIODeadline?
    private var responseTimerGeneration = 0

    /// A copy of `text` in storage of its own (see ``record(_:resource:decision:outcome:reason:status:bytesOut:exchange:)``).
    private static func owned(_ text: String) -> String {
        let count = text.utf8.count
        return String(unsafeUninitializedCapacity: count) { buffer in
            _ = buffer.initialize(from: text.utf8)
            return count
        }
    }

    /// How long a connection lingers after its last response (see ``ClientConnectionStateMachine/State/closing``).
    static let lingerTime = TimeAmount.seconds(2)

    /// - Parameter meter: the one the connection's ``MeteredRequestDecoder`` counts into.
    init(gateway current: GatewayReference, remoteAddress: String, meter: RequestByteMeter = RequestByteMeter()) {
        let gateway = current.gateway
        self.current = current
        self.gateway = gateway
        self.remoteAddress = remoteAddress
        self.peerIsTrustedProxy = gateway.policy.trustedProxies.trusts(peer: remoteAddress)
        self.connectionID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let limits = gateway.policy.limits
        self.machine = ClientConnectionStateMachine(
            idleTimeout: .seconds(limits.clientIdleTimeoutSeconds), headerReadTimeout: .seconds(limits.headerReadTimeoutSeconds),
            maxHeaderBytes: limits.maxHeaderBytes, maxBodyBytes: limits.maxBodyBytes, lingerTime: Self.lingerTime
        )
        self.meter = meter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.run(self.machine.connected(now: context.eventLoop.now), context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelTimers()
        self.context = nil
    }

    // MARK: The connection

    /// Applies what the connection's state machine decided.
    private func run(_ action: ClientConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .refuse(let rejection):
            let log = self.request?.log ?? self.connectionLog(method: "-")
            if self.request == nil { self.writer.answerUnreadRequest() }
            let response = rejection.response(resource: nil)
            log.debug("request refused", metadata: ["outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)"])
            if let request = self.request, let resource = request.resource {
                self.record(request, resource: resource, decision: .denied, outcome: .refused, reason: rejection.code, status: response.status, bytesOut: response.body.utf8.count)
            }
            self.write(response, keepAlive: false, context: context)
        case .close:
            self.closeConnection(context: context)
        case .closeIdle:
            self.gateway.logger.debug("closing idle client connection", metadata: ["peer": "\(self.remoteAddress)"])
            self.closeConnection(context: context)
        case .armTimer(let deadline):
            self.armTimer(for: deadline, context: context)
        case .decide:
            if let request = self.request { self.process(request, context: context) }
        case .servePipelined:
            self.request = nil
            self.servePipelined(context: context)
        case .closeAfterWrite:
            // Only `responseEnded` returns it, and `endResponse` applies it (it needs the end's
            // write future). Should another path ever return it, closing is the safe reading.
            self.closeConnection(context: context)
        case .abandonExchange:
            if let exchange = self.exchange {
                self.abandon(exchange)
                exchange.log.debug("client disconnected during the exchange", metadata: ["outcome": "client_closed"])
                self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .clientClosed, reason: "client_closed", exchange: exchange)
            }
        }
    }

    /// Makes sure the connection's timer fires no later than `deadline`. A timer armed for an
    /// earlier moment is kept: the machine re-arms it when it fires.
    private func armTimer(for deadline: NIODeadline, context: ChannelHandlerContext) {
        if self.timer != nil, self.timerDeadline <= deadline { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timer = nil
            self.timerDeadline = .distantFuture
            guard let context = self.context else { return }
            self.run(self.machine.timerFired(now: context.eventLoop.now), context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let parsed = self.meter.parsed - self.meterReading
        self.meterReading = self.meter.parsed
        self.run(self.machine.readComplete(parsedBytes: parsed, now: context.eventLoop.now), context: context)
        context.fireChannelReadComplete()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        var facts: RequestHeadFacts?
        let delivery: ClientConnectionStateMachine.Delivery
        switch part {
        case .head(let head):
            // The one pass over the head's fields (see ``Enforcement``); its size is also what
            // the decoder parsed for it, near enough (plus the request line's framing).
            let gathered = Self.facts(of: head)
            delivery = self.machine.partReceived(.head(bytes: gathered.headerBytes + 16))
            facts = gathered
        case .body(let buffer):
            delivery = self.machine.partReceived(.body(bytes: buffer.readableBytes))
        case .end:
            delivery = self.machine.partReceived(.end)
        }
        switch delivery {
        case .handle:
            self.handle(part, facts: facts, context: context)
        case .queue:
            // A pipelined request: its turn comes when the current response is done.
            self.pipelined.append((part, facts))
        case .drop:
            // The answer is out and the connection is closing: nothing more is served.
            break
        }
    }

    /// Reading pauses while pipelined requests wait, so a client cannot queue without bound.
    func read(context: ChannelHandlerContext) {
        if self.machine.read() { context.read() }
    }

    /// Called when a response is complete: serves the requests that were pipelined behind it.
    private func servePipelined(context: ChannelHandlerContext) {
        guard !self.servingPipelined else { return }
        self.servingPipelined = true
        defer { self.servingPipelined = false }
        loop: while true {
            switch self.machine.takePipelined() {
            case .take:
                guard let (part, facts) = self.pipelined.popFirst() else { break loop }
                self.handle(part, facts: facts, context: context)
            case .wait:
                break loop
            case .discardAll:
                self.pipelined.removeAll()
                break loop
            }
        }
        if self.machine.releaseHeldRead() { context.read() }
    }

    /// What the enforcement stages read of a head, in one pass over its fields.
    private static func facts(of head: HTTPRequestHead) -> RequestHeadFacts {
        var facts = RequestHeadFacts(target: head.uri)
        for (name, value) in head.headers { facts.observe(name: name, value: value) }
        return facts
    }

    /// - Parameter facts: a head's, gathered when it arrived.
    private func handle(_ part: HTTPServerRequestPart, facts: RequestHeadFacts?, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            self.receivedHead(head, facts: facts ?? Self.facts(of: head), context: context)
        case .body(let buffer):
            let action = self.machine.bodyReceived(bytes: buffer.readableBytes, now: context.eventLoop.now)
            guard case .none = action else { return self.run(action, context: context) }
            guard let request = self.request else { return }
            if request.body == nil {
                request.body = buffer
            } else {
                var incoming = buffer
                request.body!.writeBuffer(&incoming)
            }
        case .end:
            self.run(self.machine.endReceived(), context: context)
        }
    }

    private func receivedHead(_ head: HTTPRequestHead, facts: RequestHeadFacts, context: ChannelHandlerContext) {
        let accepted = self.machine.headReceived()
        guard case .none = accepted else { return self.run(accepted, context: context) }
        self.requestCounter += 1
        let gateway = self.current.gateway
        if gateway !== self.gateway {
            // A reload: this request and the next ones are decided under the new policy.
            self.gateway = gateway
            self.peerIsTrustedProxy = gateway.policy.trustedProxies.trusts(peer: self.remoteAddress)
            self.pool = nil
        }
        self.writer.answer(method: head.method, version: head.version)
        let peer = self.peerIsTrustedProxy
            ? self.gateway.policy.trustedProxies.clientAddress(peer: self.remoteAddress, forwardedFor: facts.forwardedFor, forwarded: facts.forwarded)
            : self.remoteAddress
        var log = RequestLog(
            logger: self.gateway.logger, connectionID: self.connectionID, sequence: self.requestCounter,
            method: head.method.rawValue, peer: peer
        )
        log.clientCertificate = self.clientCertificateThumbprint

        let target: Enforcement.Target
        switch Enforcement.checkHead(facts, method: head.method.rawValue, isHTTP11OrLater: head.version.isHTTP11OrLater, target: head.uri, limits: self.gateway.policy.limits) {
        case .failure(let rejection):
            self.request = Request(head: head, facts: facts, query: nil, route: .notFound, log: log, startedAt: context.eventLoop.now, peer: peer)
            self.run(self.machine.refused(rejection, now: context.eventLoop.now), context: context)
            return
        case .success(let admitted):
            target = admitted
        }
        let route = self.gateway.router.route(target.path)
        if case .resource(let resource) = route {
            log.resource = resource.policy.path
        }
        self.request = Request(head: head, facts: facts, query: target.query, route: route, log: log, startedAt: context.eventLoop.now, peer: peer)
        if Enforcement.answersContinue(facts, isHTTP11OrLater: head.version.isHTTP11OrLater) {
            // Oversized bodies are still refused with 413 as they arrive.
            self.writer.writeContinue(context: context)
        }
    }

    /// The log of the connection's next request, for refusals made before its head is known.
    private func connectionLog(method: String) -> RequestLog {
        RequestLog(logger: self.gateway.logger, connectionID: self.connectionID, sequence: self.requestCounter + 1, method: method, peer: self.remoteAddress)
    }

    // MARK: Decision

    private func process(_ request: Request, context: ChannelHandlerContext) {
        let keepAlive = request.head.isKeepAlive
        switch request.route {
        case .notFound:
            self.finish(request, with: .notFound, resource: nil, context: context)
        case .health:
            self.write(GatewayResponse(status: 200, headers: [("Content-Type", "text/plain")], body: "ok\n"), keepAlive: keepAlive, context: context)
        case .readiness:
            let reasons = self.gateway.notReadyReasons
            let body = reasons.isEmpty ? "ready\n" : reasons.joined(separator: "\n") + "\n"
            self.write(GatewayResponse(status: reasons.isEmpty ? 200 : 503, headers: [("Content-Type", "text/plain")], body: body), keepAlive: keepAlive, context: context)
        case .metadata(let resource):
            guard request.head.method == .GET || request.head.method == .HEAD else {
                return self.finish(request, with: .methodNotAllowed(allow: "GET"), resource: nil, context: context)
            }
            // Browser-based MCP clients fetch this cross-origin.
            let response = GatewayResponse(status: 200, headers: [
                ("Content-Type", "application/json"), ("Cache-Control", "max-age=300"), ("Access-Control-Allow-Origin", "*"),
            ], body: resource.metadataDocument)
            self.write(response, keepAlive: keepAlive, context: context)
        case .resource(let resource):
            self.processProtected(request, resource: resource, context: context)
        }
    }

    private func processProtected(_ request: Request, resource: ResolvedResource, context: ChannelHandlerContext) {
        request.trace = RequestTrace.resolve(request.facts, using: &self.random)
        let token: String
        switch Enforcement.admit(request.facts, method: request.head.method.rawValue, query: request.query, body: request.body, resource: resource.policy) {
        case .failure(let rejection):
            self.finish(request, with: rejection, resource: resource, context: context)
            return
        case .success(let admitted):
            token = admitted
        }
        request.token = token
        if let claims = self.gateway.cachedClaims(token: token, resource: resource) {
            self.gateway.metrics.tokenVerification(result: "valid", cached: true)
            self.authorize(request, resource: resource, token: token, claims: claims, context: context)
            return
        }
        self.gateway.authenticate(token: token, resource: resource, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                guard self.machine.state == .authorizing, self.request === request, let context = self.context else { return }
                switch result {
                case .success(let claims):
                    self.gateway.metrics.tokenVerification(result: "valid", cached: false)
                    self.authorize(request, resource: resource, token: token, claims: claims, context: context)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .authorizationServerUnavailable("\(error)")
                    self.gateway.metrics.tokenVerification(result: rejection.response(resource: nil).status >= 500 ? "unavailable" : "invalid", cached: false)
                    self.finish(request, with: rejection, resource: resource, context: context)
                }
            }
    }

    private func authorize(_ request: Request, resource: ResolvedResource, token: String, claims: AccessTokenClaims, context: ChannelHandlerContext) {
        request.log.subject = claims.subject ?? "-"
        request.log.clientID = claims.clientID ?? "-"
        request.claims = claims
        // Before anything is parsed: a client over its rate costs as little as possible.
        if resource.rateLimiter != nil, let refusal = resource.rateLimit(user: "\(claims.issuer) \(Self.user(claims, token: token))", now: context.eventLoop.now) {
            return self.finish(request, with: refusal, resource: resource, context: context)
        }
        let method = request.head.method.rawValue
        // Scopes the token's scopes imply count too (`scope_implies`); challenges still name
        // the policy's.
        let granted = resource.server.scopeImplications.expand(claims.scopes)
        request.granted = granted
        let (body, decision) = Enforcement.authorize(request.facts, method: method, body: request.body, scopes: granted, resource: resource.policy, limits: self.gateway.policy.limits)
        request.log.body = body
        switch decision {
        case .failure(let rejection):
            self.finish(request, with: rejection, resource: resource, context: context)
        case .success(let authorization):
            if request.facts.sessionIDCount > 0 {
                switch self.openSession(request, resource: resource, claims: claims) {
                case .success(let upstreamID):
                    request.upstreamSessionID = upstreamID
                case .failure(let mismatch):
                    self.reportSessionMismatch(mismatch, request: request, resource: resource, claims: claims)
                    return self.finish(request, with: .sessionMismatch(mismatch, id: authorization.errorID), resource: resource, context: context)
                }
            }
            if let pinning = resource.policy.toolPinning, let body, let refusal = pinning.refusal(for: body, lastSeen: resource.tools.lastSeen) {
                return self.finish(request, with: .toolNotApproved(tool: refusal.tool, refusal.reason, id: authorization.errorID), resource: resource, context: context)
            }
            if let audit = self.gateway.audit, audit.settings.onOverflow == .refuse {
                // Nothing is forwarded that could go unrecorded.
                guard audit.reserve() else {
                    self.gateway.metrics.auditRefused.increment()
                    return self.finish(request, with: .auditUnavailable(id: authorization.errorID), resource: resource, context: context)
                }
                request.auditSlot = true
            }
            if body == nil {
                // GET opens the server-to-client stream, DELETE ends a session.
                request.log.debug("request allowed", metadata: ["outcome": "allowed", "operation": "\(method) stream"])
            } else {
                request.log.debug("request allowed", metadata: ["outcome": "allowed"])
            }
            self.obtainUpstreamCredential(request, resource: resource, token: token, claims: claims, tool: authorization.tool, errorID: authorization.errorID, context: context)
        }
    }

    /// Runs one upstream message (a JSON body, an event's data) through the exchange's
    /// inspector and acts on what it saw: tools to the gateway's memory
    /// (``Gateway/noteTools(_:seen:findings:logger:)``), a `tools/list_changed` to a new
    /// listing, server-to-client requests to the audit trail and, when blocked, to the
    /// gateway's own answer upstream.
    private func inspect(_ message: UnsafeRawBufferPointer, _ exchange: Exchange, context: ChannelHandlerContext) -> ResponseInspector.Verdict {
        // The inspector tells itself whether the message needs it (``ResponseInspector/mayNeed(_:)``).
        guard var inspector = exchange.inspector else { return .pass }
        exchange.inspector = nil  // its tables stay uniquely referenced while they change
        let gateway = self.gateway
        let verdict = inspector.inspect(message) { gateway.serverRequests.admitElicitation(self.serverRequestOrigin(exchange)) }
        let report = inspector.takeReport()
        exchange.inspector = inspector
        guard !report.isEmpty else { return verdict }
        let resource = exchange.resource
        if !report.toolsSeen.isEmpty || !report.toolFindings.isEmpty {
            gateway.noteTools(resource, seen: report.toolsSeen, findings: report.toolFindings, logger: gateway.logger)
        }
        if report.toolsChanged { gateway.relistTools(of: resource) }
        if !report.serverRequests.isEmpty {
            exchange.serverRequests += report.serverRequests.count
            guard exchange.serverRequests <= Self.maxServerRequestsPerResponse else {
                // An upstream asking without end: not another audit record or answer each.
                return .drop
            }
            gateway.judged(report.serverRequests, origin: self.serverRequestOrigin(exchange), logger: gateway.logger, on: context.eventLoop)
        }
        if report.hiddenCount > 0 {
            exchange.log.debug("list filtered", metadata: ["hidden": "\(inspector.hidden.joined(separator: ", "))"])
        }
        if report.unreadable > 0 {
            exchange.log.error("upstream message not relayed: not strict JSON", metadata: ["outcome": "upstream_error"])
        }
        return verdict
    }

    /// More server-to-client requests than this in one response is a flood, not a
    /// conversation: the stream ends (and each one past it is neither recorded nor answered).
    static let maxServerRequestsPerResponse = 100

    static let serverRequestFloodMessage = "Bad Gateway: the MCP server sent more requests for the client than the gateway relays in one response (\(maxServerRequestsPerResponse)); the stream was ended"

    private func serverRequestOrigin(_ exchange: Exchange) -> ServerRequestOrigin {
        ServerRequestOrigin(
            resource: exchange.resource, session: exchange.request.facts.sessionID, subject: exchange.request.claims?.subject,
            requestID: exchange.request.log.requestID,
            upstreamHeaders: ServerRequestOrigin.headers(of: exchange.upstreamHead, resource: exchange.resource)
        )
    }

    /// Answers a request with a refusal, logged (at debug, or error for a 5xx) and, on a
    /// protected resource, recorded with its reason.
    private func finish(_ request: Request, with rejection: GatewayRejection, resource: ResolvedResource?, context: ChannelHandlerContext) {
        let response = rejection.response(resource: resource?.policy)
        let level: Logger.Level = response.status >= 500 ? .error : .debug
        request.log.log(level: level, "request refused", metadata: [
            "outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)",
        ])
        if let resource {
            self.record(request, resource: resource, decision: .denied, outcome: .refused, reason: rejection.code, status: response.status, bytesOut: response.body.utf8.count)
        }
        self.write(response, keepAlive: request.head.isKeepAlive, context: context)
    }

    /// Records how a request to a protected resource ended, once: its audit record (when the
    /// policy has an audit trail) and its metrics. `exchange` gives the status, bytes and
    /// upstream time of a forwarded request.
    private func record(
        _ request: Request, resource: ResolvedResource, decision: AuditRequest.Decision, outcome: AuditRequest.Outcome, reason: String?,
        status: Int = 0, bytesOut: Int = 0, exchange: Exchange? = nil
    ) {
        guard !request.recorded else { return }
        request.recorded = true
        let now = NIODeadline.now()
        let status = exchange.map { Int($0.status) } ?? status
        let bytesOut = exchange?.bytesOut ?? bytesOut
        let body = request.log.body
        let message = body?.messages.first
        let target = try? message?.target()
        let metrics = self.gateway.metrics
        metrics.countRequest(resource: resource.policy, httpMethod: request.head.method.rawValue, method: message?.method, target: target, outcome: outcome, decision: decision)
        if let reason, outcome == .refused || outcome == .upstreamError {
            metrics.rejection(resource: resource.policy.path, reason: reason)
        }
        resource.metrics.requestDuration.record(Duration.nanoseconds((now - request.startedAt).nanoseconds))
        resource.metrics.responseSize.record(Double(bytesOut))
        if let exchange {
            resource.metrics.upstreamDuration.record(Duration.nanoseconds((now - exchange.startedAt).nanoseconds))
            if exchange.streaming {
                exchange.streaming = false
                metrics.openStreams.decrement()
            }
        }
        guard let audit = self.gateway.audit else { return }
        // Strings every request shares (the policy's path, the connection's peer, the cached
        // claims) are copied: the writer thread would otherwise retain and release the very
        // objects this event loop does on every request, and the contended reference counts
        // cost more than the copies.
        var entry = AuditRequest(requestID: request.log.requestID, httpMethod: request.head.method.rawValue, peer: Self.owned(request.peer))
        entry.resource = Self.owned(resource.policy.path)
        entry.subject = request.claims?.subject.map(Self.owned)
        entry.clientID = request.claims?.clientID.map(Self.owned)
        entry.issuer = request.claims.map { Self.owned($0.issuer) }
        if let token = request.token {
            if let last = self.lastToken, last.token == token {
                entry.token = AuditDigestSource(digest: last.digest)
            } else {
                let digest = AuditDigestSource.digest(of: token)
                self.lastToken = (token, digest)
                entry.token = AuditDigestSource(digest: digest)
            }
        }
        entry.clientCertificate = self.clientCertificateThumbprint.map(Self.owned)
        if let body { entry.describe(body, keepingArguments: audit.keepsArguments) }
        entry.decision = decision
        entry.outcome = outcome
        entry.reason = reason
        entry.status = status
        entry.bytesIn = request.body?.readableBytes ?? 0
        entry.bytesOut = bytesOut
        entry.durationNanoseconds = (now - request.startedAt).nanoseconds
        entry.upstreamNanoseconds = exchange.map { (now - $0.startedAt).nanoseconds }
        entry.upstreamCredential = request.credential
        entry.session = request.facts.sessionID.map(AuditDigestSource.init)
        entry.protocolVersion = request.facts.protocolVersion
        entry.traceID = request.trace?.traceID
        audit.submit(.request(entry), reserved: request.auditSlot)
        request.auditSlot = false
    }

    // MARK: Sessions

    /// Whom a session of `resource` used with `claims` belongs to.
    private static func binding(_ resource: ResolvedResource, _ claims: AccessTokenClaims, token: String?) -> SessionBinding {
        SessionBinding(resource: resource.policy.path, issuer: claims.issuer, subject: Self.user(claims, token: token), clientID: claims.clientID ?? "")
    }

    /// The user a token speaks for (``AccessTokenClaims/user``); a token that names nobody is
    /// its own user.
    private static func user(_ claims: AccessTokenClaims, token: String?) -> String {
        claims.user ?? "token:\(AuditDigestSource.hex(of: token ?? ""))"
    }

    /// The upstream's session id in the request's sealed one, if it is this user's.
    private func openSession(_ request: Request, resource: ResolvedResource, claims: AccessTokenClaims) -> Result<String, SessionMismatch> {
        guard request.facts.sessionIDCount == 1, let sealed = request.facts.sessionID else { return .failure(.malformed) }
        return self.gateway.sessions.open(sealed, expecting: Self.binding(resource, claims, token: request.token), now: Self.wallClockSeconds())
    }

    /// The sealed id for the session id(s) an upstream response carries; nil when it is not one
    /// value the transport allows.
    private func sealSession(_ values: [Substring], exchange: Exchange) -> String? {
        guard values.count == 1, let claims = exchange.request.claims else { return nil }
        // Servers repeat the session id on every response: the client keeps the id it sent,
        // so one session has one id (its audit digest, its elicitation count).
        if let sent = exchange.request.upstreamSessionID, values[0] == sent, let sealed = exchange.request.facts.sessionID {
            return sealed
        }
        return self.gateway.sessions.seal(String(values[0]), for: Self.binding(exchange.resource, claims, token: exchange.request.token), now: Self.wallClockSeconds())
    }

    private static func wallClockSeconds() -> Int64 {
        Int64(AuditTrail.wallClockMilliseconds() / 1000)
    }

    /// `session_mismatch`: the audit record (both users digested, never written), a warning.
    private func reportSessionMismatch(_ mismatch: SessionMismatch, request: Request, resource: ResolvedResource, claims: AccessTokenClaims) {
        let subject = AuditDigestSource.hex(of: "\(claims.issuer) \(Self.user(claims, token: request.token))")
        let sealedSubject = mismatch.sealedBinding.map { AuditDigestSource.hex(of: "\($0.issuer) \($0.subject)") }
        request.log.log(level: .warning, "session id refused", metadata: [
            "reason": "\(mismatch.code)", "subject_sha256": "\(subject)", "sealed_subject_sha256": "\(sealedSubject ?? "-")",
        ])
        self.gateway.audit?.submit(.gateway(.sessionMismatch, [
            "request_id": .string(request.log.requestID), "resource": .string(resource.policy.path), "reason": .string(mismatch.code),
            "subject": .string(subject), "sealed_subject": sealedSubject.map(JSONValue.string) ?? .null,
            "session": request.facts.sessionID.map { .string(AuditDigestSource.hex(of: $0)) } ?? .null,
        ]))
    }

    // MARK: Forwarding

    /// Token exchange when the resource asks for it (the client's token is the subject, never
    /// the credential), then forwarding.
    private func obtainUpstreamCredential(
        _ request: Request, resource: ResolvedResource, token: String, claims: AccessTokenClaims, tool: String?, errorID: JSONValue?, context: ChannelHandlerContext
    ) {
        guard case .tokenExchange(let policy, let client) = resource.credential else {
            if case .staticHeader = resource.policy.credentials { request.credential = .static }
            self.forward(request, resource: resource, upstreamToken: nil, errorID: errorID, context: context)
            return
        }
        if self.gateway.audit != nil {
            let target = policy.target(forTool: tool)
            request.credential = .tokenExchange(audience: (target.resources + target.audiences).joined(separator: " "))
        }
        if let upstreamToken = self.gateway.exchanger.cachedUpstreamToken(subjectToken: token, policy: policy, tool: tool, client: client) {
            self.gateway.metrics.tokenExchange(result: "cached")
            self.forward(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, context: context)
            return
        }
        self.gateway.exchanger.upstreamToken(subjectToken: token, subjectClaims: claims, policy: policy, tool: tool, client: client, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                guard self.machine.state == .authorizing, self.request === request, let context = self.context else { return }
                switch result {
                case .success(let upstreamToken):
                    self.gateway.metrics.tokenExchange(result: "ok")
                    self.forward(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, context: context)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .upstreamCredentialUnavailable("\(error)", id: nil)
                    let result = if case .upstreamCredentialRefused = rejection { "refused" } else { "unavailable" }
                    self.gateway.metrics.tokenExchange(result: result)
                    self.finish(request, with: rejection.answering(errorID), resource: resource, context: context)
                }
            }
    }

    private func forward(_ request: Request, resource: ResolvedResource, upstreamToken: String?, errorID: JSONValue?, context: ChannelHandlerContext) {
        let upstreamHead = self.upstreamHead(for: request, resource: resource, upstreamToken: upstreamToken)
        let machine = UpstreamExchangeStateMachine(
            responseTimeout: .seconds(self.gateway.policy.limits.upstreamResponseTimeoutSeconds), errorID: errorID,
            clientTakesInterim: self.writer.requestVersion.isHTTP11OrLater
        )
        let exchange = Exchange(request: request, upstreamHead: upstreamHead, resource: resource, machine: machine, errorID: errorID)
        if resource.policy.inspectResponses, let granted = request.granted, request.log.body != nil || request.head.method == .GET {
            // Everything a protected upstream sends back is inspected: a list to filter, a
            // tool to compare with its pin, a request for the client to judge.
            exchange.inspector = ResponseInspector(for: request.log.body, policy: resource.policy, granted: granted, protocolVersion: request.facts.protocolVersion)
        }
        self.exchange = exchange
        self.machine.forwardingStarted()
        self.sendUpstream(exchange, fresh: false, context: context)
    }

    private func upstreamPool(_ context: ChannelHandlerContext) -> UpstreamConnectionPool {
        if let pool { return pool }
        let pool = self.gateway.pools.pool(for: context.eventLoop)
        self.pool = pool
        return pool
    }

    /// Leases a connection (a pooled one unless `fresh`) and writes the exchange's request.
    private func sendUpstream(_ exchange: Exchange, fresh: Bool, context: ChannelHandlerContext) {
        let pool = self.upstreamPool(context)
        let target = exchange.resource.upstream
        if !fresh, let lease = pool.idleConnection(to: target) {
            self.leased(lease, for: exchange, context: context)
            return
        }
        pool.connect(
            to: target, tls: exchange.resource.upstreamTLS, serverName: exchange.resource.policy.upstreamTLS.serverName
        ).assumeIsolated().whenComplete { result in
            guard self.exchange === exchange, let context = self.context else {
                // The client left while we were connecting.
                if case .success(let lease) = result { lease.channel.close(promise: nil) }
                return
            }
            switch result {
            case .failure(let error):
                self.run(exchange.machine.connectFailed("\(error)"), exchange, context: context)
            case .success(let lease):
                self.leased(lease, for: exchange, context: context)
            }
        }
    }

    private func leased(_ lease: UpstreamLease, for exchange: Exchange, context: ChannelHandlerContext) {
        exchange.lease = lease
        lease.handler.sink = self
        self.run(exchange.machine.leased(reused: lease.reused, now: context.eventLoop.now), exchange, context: context)
    }

    /// Applies what the exchange's state machine decided. `relaying` is the serialised head
    /// for ``UpstreamExchangeStateMachine/Action/relayInterim`` and `relayHead`.
    private func run(_ action: UpstreamExchangeStateMachine.Action, _ exchange: Exchange, context: ChannelHandlerContext, relaying head: ByteBuffer? = nil) {
        switch action {
        case .none:
            break
        case .sendRequest(let deadline):
            guard let lease = exchange.lease else { return }
            self.armResponseTimer(for: deadline, context: context)
            lease.handler.send(exchange.upstreamHead, body: exchange.request.body)
        case .retryOnFreshConnection:
            exchange.log.debug("pooled upstream connection failed before the request was written; retrying on a new connection")
            exchange.lease?.handler.sink = nil
            exchange.lease?.channel.close(promise: nil)
            exchange.lease = nil
            self.sendUpstream(exchange, fresh: true, context: context)
        case .relayInterim:
            if let head { context.writeAndFlush(self.wrapOutboundOut(head), promise: nil) }
        case .relayHead:
            if let head { self.writer.writeHead(head, context: context) }
        case .fail(let rejection):
            self.abandon(exchange)
            self.exchange = nil
            let response = rejection.response(resource: nil)
            exchange.log.error("upstream failed", metadata: ["outcome": "upstream_error", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)"])
            exchange.status = UInt(response.status)
            exchange.bytesOut = response.body.utf8.count
            self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .upstreamError, reason: rejection.code, exchange: exchange)
            self.write(response, keepAlive: exchange.keepAlive, context: context)
        case .closeClient:
            exchange.log.error("upstream failed mid-response", metadata: ["outcome": "upstream_error"])
            self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .upstreamError, reason: "upstream_closed_mid_response", exchange: exchange)
            self.run(self.machine.close(), context: context)
        case .finish(let reusable):
            if let lease = exchange.lease {
                self.upstreamPool(context).release(lease, target: exchange.resource.upstream, reusable: reusable)
            }
            self.exchange = nil
            if exchange.log.isEnabled(.debug) {
                let elapsed = NIODeadline.now() - exchange.startedAt
                exchange.log.debug("response relayed", metadata: ["outcome": "forwarded", "status": "\(exchange.status)", "upstream_ms": "\(elapsed.nanoseconds / 1_000_000)"])
            }
            self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .forwarded, reason: nil, exchange: exchange)
            self.endResponse(keepAlive: exchange.keepAlive, context: context)
        case .rearmTimer(let deadline):
            self.armResponseTimer(for: deadline, context: context)
        }
    }

    /// The request as the upstream sees it (``Enforcement/upstreamHeaders(from:facts:resource:peer:publicURL:bodyLength:isPOST:upstreamToken:add:)``).
    private func upstreamHead(for request: Request, resource: ResolvedResource, upstreamToken: String?) -> HTTPRequestHead {
        let upstream = resource.upstream
        var uri = upstream.requestPath
        if let query = request.query, !query.isEmpty { uri += (uri.contains("?") ? "&" : "?") + query }
        var head = HTTPRequestHead(version: .http1_1, method: request.head.method, uri: uri)
        head.headers.reserveCapacity(request.head.headers.count + 7)
        Enforcement.upstreamHeaders(
            from: request.head.headers, facts: request.facts, resource: resource.policy, peer: self.remoteAddress, peerIsTrustedProxy: self.peerIsTrustedProxy,
            publicURL: self.gateway.policy.publicURL, bodyLength: request.body?.readableBytes, isPOST: request.head.method == .POST, upstreamToken: upstreamToken,
            upstreamSessionID: request.upstreamSessionID, traceparent: request.trace?.replacement
        ) { name, value in
            head.headers.add(name: name, value: value)
        }
        return head
    }

    /// Makes sure the response timer fires no later than `deadline`. A timer already armed for
    /// an earlier moment (a previous request's deadline) is kept: it re-arms when it fires.
    private func armResponseTimer(for deadline: NIODeadline, context: ChannelHandlerContext) {
        if let armed = self.responseTimerDeadline, armed <= deadline { return }
        // A later timer (rare: a shorter deadline than before) is left to fire and be ignored.
        self.responseTimerGeneration &+= 1
        let generation = self.responseTimerGeneration
        self.responseTimerDeadline = deadline
        self.responseTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            guard generation == self.responseTimerGeneration else { return }
            self.responseTimerFired()
        }
    }

    private func responseTimerFired() {
        self.responseTimer = nil
        self.responseTimerDeadline = nil
        guard let exchange = self.exchange, let context = self.context else { return }
        self.run(exchange.machine.timerFired(now: context.eventLoop.now), exchange, context: context)
    }

    private func cancelTimers() {
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = .distantFuture
        self.responseTimer?.cancel()
        self.responseTimer = nil
        self.responseTimerDeadline = nil
    }

    /// Drops the upstream side of an exchange the client will not see finish: its connection
    /// is closed, not returned to the pool.
    private func abandon(_ exchange: Exchange) {
        exchange.lease?.handler.sink = nil
        exchange.lease?.channel.close(promise: nil)
    }

    // MARK: Writing

    /// Writes a response the gateway wrote itself and ends it.
    private func write(_ response: GatewayResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        let keepAlive = self.machine.keepAlive(keepAlive)
        do {
            try self.writer.write(response, keepAlive: keepAlive, context: context)
        } catch {
            // The gateway's own headers come from code and validated policy: a bug, not input.
            self.gateway.logger.error("gateway response not sent", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
            self.run(self.machine.close(), context: context)
            return
        }
        self.endResponse(keepAlive: keepAlive, context: context)
    }

    /// Ends the current response: serves what was pipelined behind it, or closes the
    /// connection in stages once it is written (nothing after a "Connection: close" response
    /// is answered).
    private func endResponse(keepAlive: Bool, context: ChannelHandlerContext) {
        let (keptAlive, written) = self.writer.end(keepAlive: self.machine.keepAlive(keepAlive), context: context)
        let action = self.machine.responseEnded(keepAlive: keptAlive, now: context.eventLoop.now)
        guard case .closeAfterWrite = action else { return self.run(action, context: context) }
        self.pipelined.removeAll()
        written?.assumeIsolated().whenComplete { _ in self.linger(context: context) }
    }

    /// Closes in stages once the last response is written (RFC 9112 9.6): the output is
    /// half-closed, then the client's remaining bytes are read and dropped until it closes or
    /// ``lingerTime`` passes. Closing at once, with unread bytes from the client (the rest
    /// of a refused body), would reset the connection and could destroy the answer before the
    /// client reads it.
    private func linger(context: ChannelHandlerContext) {
        guard self.machine.state == .closing else { return }
        context.close(mode: .output).assumeIsolated().whenComplete { result in
            guard self.machine.state == .closing else { return }
            if case .failure = result {
                // No half-close on this channel (or it is already gone): close outright.
                self.run(self.machine.close(), context: context)
                return
            }
            self.run(self.machine.outputClosed(now: context.eventLoop.now), context: context)
        }
        // Reading goes on even if it was held for pipelined requests: they are dropped.
        if self.machine.releaseHeldRead() { context.read() }
    }

    private func closeConnection(context: ChannelHandlerContext) {
        self.cancelTimers()
        if let exchange = self.exchange {
            self.abandon(exchange)
            self.exchange = nil
            self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .connectionClosed, reason: "connection_closed", exchange: exchange)
        } else if let request = self.request, !request.recorded, request.token != nil, let resource = request.resource {
            // Closed while its token or credential was being checked: nothing was forwarded.
            self.record(request, resource: resource, decision: .denied, outcome: .connectionClosed, reason: "connection_closed")
        }
        self.pipelined.removeAll()
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimers()
        // Client disconnect cancels the upstream exchange (MCP: closing the stream is cancellation).
        self.exchange?.machine.clientClosed()
        self.run(self.machine.clientClosed(), context: context)
        if let request = self.request, !request.recorded, let resource = request.resource, request.token != nil || self.exchange != nil {
            // The client left while its request was being decided.
            self.record(request, resource: resource, decision: .denied, outcome: .clientClosed, reason: "client_closed", exchange: self.exchange)
        }
        self.exchange = nil
        self.pipelined.removeAll()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let exchange = self.exchange {
            exchange.lease?.handler.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Graceful shutdown (see ``GatewayServer/run()``): a connection with nothing under
            // way closes now; one answering a request (or streaming) finishes that response,
            // with `Connection: close` if its head is still to be written, and closes after it.
            self.run(self.machine.quiesce(), context: context)
            return
        }
        if case .handshakeCompleted = event as? TLSUserEvent {
            if let tls = try? context.pipeline.syncOperations.handler(type: TLSHandler.self), let der = tls.peerCertificate {
                self.clientCertificateThumbprint = CertificateThumbprint.sha256(der: der)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            let action = self.machine.parserError("\(error)", now: context.eventLoop.now)
            if case .none = action { return }
            self.gateway.logger.info("malformed HTTP request", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
            return self.run(action, context: context)
        }
        // Whatever the client still sends to a closing connection is being dropped.
        guard self.machine.state != .closing else { return }
        // TLS failures carry OpenSSL's error queue: worth a line when a client cannot connect.
        let level: Logger.Level = error is TLSError ? .info : .debug
        self.gateway.logger.log(level: level, "connection error", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
        self.run(self.machine.close(), context: context)
    }
}

// MARK: Upstream response relay

extension GatewayHandler: UpstreamResponseSink {
    /// A proxy forwards 1xx responses (RFC 9110 15.2), connection-scoped headers removed, but
    /// never to an HTTP/1.0 client. One whose headers cannot be sent is dropped, not relayed.
    /// A 101 answers an upgrade the gateway never asks for (it forwards no Upgrade): the
    /// upstream broke the protocol, and the client gets a 502.
    func upstreamInterimResponse(_ upstreamHead: HTTPResponseHead) {
        guard let exchange = self.exchange, let context = self.context else { return }
        let action = exchange.machine.interimReceived(status: Int(upstreamHead.status.code))
        guard case .relayInterim = action else {
            self.run(action, exchange, context: context)
            return
        }
        do {
            try self.writer.writeInterim(upstreamHead, keepAlive: self.machine.keepAlive(exchange.keepAlive), context: context)
        } catch {
            exchange.log.debug("interim response not relayed", metadata: ["status": "\(upstreamHead.status.code)", "reason": "\(error)"])
        }
    }

    func upstreamResponseHead(_ upstreamHead: HTTPResponseHead) {
        guard let exchange = self.exchange, let context = self.context else { return }
        var upstreamHead = upstreamHead
        if upstreamHead.headers.contains(name: "mcp-session-id") {
            // The client gets the upstream's session id sealed to its user, never the id itself.
            guard let sealed = self.sealSession(upstreamHead.headers[canonicalForm: "mcp-session-id"], exchange: exchange) else {
                self.run(exchange.machine.headReceived(valid: false, reason: "an Mcp-Session-Id that is not one visible-ASCII value of at most \(SessionSealer.maxUpstreamIDLength) bytes"), exchange, context: context)
                return
            }
            upstreamHead.headers.replaceOrAdd(name: "Mcp-Session-Id", value: sealed)
        }
        exchange.status = upstreamHead.status.code
        if !exchange.streaming, upstreamHead.headers.first(name: "content-type")?.lowercased().hasPrefix("text/event-stream") == true {
            exchange.streaming = true
            self.gateway.metrics.openStreams.increment()
        }
        var rewritten: RewrittenBody?
        if exchange.inspector != nil, upstreamHead.status == .ok, let type = upstreamHead.headers.first(name: "content-type") {
            if type.hasPrefixIgnoringASCIICase("application/json") {
                // The head waits for the body: its length may change.
                exchange.inspection = .json(head: upstreamHead, body: ByteBuffer())
                self.run(exchange.machine.headReceived(), exchange, context: context, relaying: nil)
                return
            }
            if type.hasPrefixIgnoringASCIICase("text/event-stream") {
                exchange.inspection = .events(ServerSentEventSplitter(maxEventBytes: self.gateway.policy.limits.maxEventBytes), held: ByteBuffer())
                rewritten = .unknownLength
            }
        }
        do {
            let head = try self.writer.serialiseHead(upstreamHead, keepAlive: self.machine.keepAlive(exchange.keepAlive), allocator: context.channel.allocator, rewritten: rewritten)
            self.run(exchange.machine.headReceived(), exchange, context: context, relaying: head)
        } catch {
            // Relaying it could split the response: the client gets a 502 instead.
            self.run(exchange.machine.headReceived(valid: false, reason: "\(error)"), exchange, context: context)
        }
    }

    func upstreamReadComplete() {
        guard let exchange = self.exchange, exchange.machine.responseStarted, let context = self.context else { return }
        context.flush()
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard let exchange = self.exchange, let context = self.context else { return }
        switch exchange.inspection {
        case .none:
            self.relay(buffer, exchange, context: context)
        case .json(let head, var body):
            exchange.inspection = .none  // the buffer stays uniquely referenced while it grows
            let limit = self.gateway.policy.limits.maxEventBytes
            guard body.readableBytes + buffer.readableBytes <= limit else {
                exchange.log.error("upstream message too large", metadata: ["limit": "\(limit)"])
                return self.run(.fail(.upstreamMessageTooLarge(limit: limit, id: exchange.errorID)), exchange, context: context)
            }
            if body.readableBytes == 0 {
                // Most bodies come in one read: kept as it is, not copied.
                body = buffer
            } else {
                var buffer = buffer
                body.writeBuffer(&buffer)
            }
            exchange.inspection = .json(head: head, body: body)
        case .events(var splitter, var held):
            exchange.inspection = .none
            self.relayEvents(buffer, splitter: &splitter, held: &held, exchange, context: context)
            if self.exchange === exchange { exchange.inspection = .events(splitter, held: held) }
        }
    }

    /// Relays a piece of the body as it came.
    private func relay(_ buffer: ByteBuffer, _ exchange: Exchange, context: ChannelHandlerContext) {
        exchange.bytesOut += buffer.readableBytes
        if !self.writer.writeBody(buffer, context: context) {
            exchange.lease?.handler.pause()
        }
    }

    /// Relays the events a read completes, each as it came or as the inspector rewrote it;
    /// the bytes of an event not complete yet are held. An event over the limit ends the
    /// stream with a JSON-RPC error event: nothing of it goes out.
    private func relayEvents(_ buffer: ByteBuffer, splitter: inout ServerSentEventSplitter, held: inout ByteBuffer, _ exchange: Exchange, context: ChannelHandlerContext) {
        var ends: [(piece: ServerSentEventSplitter.Piece, end: Int)] = []
        var tooLarge = false
        do {
            try buffer.withUnsafeReadableBytes { bytes in
                try splitter.scan(bytes) { piece, end in ends.append((piece, end)) }
            }
        } catch {
            // The events that ended before it still go out.
            tooLarge = true
        }
        var start = buffer.readerIndex
        for (piece, end) in ends {
            var slice = buffer.getSlice(at: start, length: buffer.readerIndex + end - start)!
            start = buffer.readerIndex + end
            guard piece == .eventEnd else {
                self.relay(slice, exchange, context: context)
                continue
            }
            if held.readableBytes > 0 {
                held.writeBuffer(&slice)
                slice = held
                held = ByteBuffer()
            }
            // Most events need nothing (a result, a progress notice): relayed unparsed.
            guard slice.withUnsafeReadableBytes({ exchange.inspector?.mayNeed($0) ?? false }) else {
                self.relay(slice, exchange, context: context)
                continue
            }
            var event = ServerSentEvent(parsing: slice.readableBytesView)
            if var data = event.data {
                switch data.withUTF8({ self.inspect(UnsafeRawBufferPointer($0), exchange, context: context) }) {
                case .pass:
                    break
                case .replace(let message):
                    event.data = message
                    slice = context.channel.allocator.buffer(string: event.serialized)
                case .drop:
                    if exchange.serverRequests > Self.maxServerRequestsPerResponse {
                        exchange.log.error("upstream flooded the stream with requests for the client; stream ended", metadata: ["limit": "\(Self.maxServerRequestsPerResponse)"])
                        return self.endStream(exchange, message: Self.serverRequestFloodMessage, reason: "upstream_request_flood", context: context)
                    }
                    // Nothing of it reaches the client: not its data, not its id.
                    continue
                }
            }
            self.relay(slice, exchange, context: context)
        }
        if tooLarge { return self.endStreamWithError(exchange, limit: splitter.maxEventBytes, context: context) }
        if var rest = buffer.getSlice(at: start, length: buffer.writerIndex - start), rest.readableBytes > 0 {
            held.writeBuffer(&rest)
        }
    }

    /// Ends an inspected event stream whose next event is over the limit: an error event for
    /// the request, the end of the body, the upstream dropped.
    private func endStreamWithError(_ exchange: Exchange, limit: Int, context: ChannelHandlerContext) {
        exchange.log.error("upstream event too large; stream ended", metadata: ["limit": "\(limit)"])
        self.endStream(exchange, message: GatewayRejection.upstreamMessageTooLargeMessage, reason: GatewayRejection.upstreamMessageTooLarge(limit: limit, id: nil).code, context: context)
    }

    /// Ends an inspected event stream the gateway will not relay further: an error event for
    /// the request with `message`, the end of the body, the upstream dropped, the request
    /// recorded with `reason`.
    private func endStream(_ exchange: Exchange, message: String, reason: String, context: ChannelHandlerContext) {
        let error = ServerSentEvent(type: "message", data: JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: message, id: exchange.errorID))
        self.relay(context.channel.allocator.buffer(string: error.serialized), exchange, context: context)
        self.abandon(exchange)
        self.exchange = nil
        self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .upstreamError, reason: reason, exchange: exchange)
        self.endResponse(keepAlive: false, context: context)
    }

    func upstreamResponseEnd(keepAlive upstreamKeepAlive: Bool) {
        guard let exchange = self.exchange, let context = self.context else { return }
        switch exchange.inspection {
        case .none:
            break
        case .json(let head, var body):
            exchange.inspection = .none
            switch body.withUnsafeReadableBytes({ self.inspect($0, exchange, context: context) }) {
            case .pass:
                break
            case .replace(let message):
                body = context.channel.allocator.buffer(string: message)
            case .drop:
                // The body held nothing the client may read: its request fails instead.
                body = context.channel.allocator.buffer(string: JSONRPCFailure.errorBody(code: JSONRPCErrorCode.upstreamError, message: GatewayRejection.upstreamResponseWithheldMessage, id: exchange.errorID))
            }
            do {
                let serialised = try self.writer.serialiseHead(head, keepAlive: self.machine.keepAlive(exchange.keepAlive), allocator: context.channel.allocator, rewritten: .length(body.readableBytes))
                self.writer.writeHead(serialised, context: context)
            } catch {
                return self.run(.fail(.upstreamUnavailable("response head cannot be relayed: \(error)", id: exchange.errorID)), exchange, context: context)
            }
            self.relay(body, exchange, context: context)
        case .events:
            // An event the stream ended in the middle of is not an event: it is dropped.
            exchange.inspection = .none
        }
        self.run(exchange.machine.responseEnded(keepAlive: upstreamKeepAlive), exchange, context: context)
    }

    func upstreamRequestWritten() {
        self.exchange?.machine.requestWritten()
    }

    func upstreamFailed(_ error: any Error) {
        guard let exchange = self.exchange, let context = self.context else { return }
        exchange.lease?.channel.close(promise: nil)
        exchange.log.debug("upstream connection failed", metadata: ["reason": "\(error)"])
        self.run(exchange.machine.upstreamFailed("\(error)"), exchange, context: context)
    }
}

@available(*, unavailable)
extension GatewayHandler: Sendable {}
