import BouncerCore
import BouncerTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOTLS

/// The gateway's per-connection handler: routes, authenticates, authorises each JSON-RPC
/// message and forwards to the upstream, streaming the response back.
///
/// One request at a time per connection: pipelined requests (RFC 9112 9.3.2) wait in a queue
/// and are answered in order, and reading from the client pauses while one waits. Malformed
/// HTTP is answered with 400 and the connection closed. Everything here runs on the
/// connection's event loop, including the upstream connection, so there are no locks on the
/// data path.
///
/// The request path is written to keep per-request work small (see Benchmarks/): the request
/// and the exchange are objects the state refers to (a state change moves one reference, not
/// a dozen fields), the route's policy is shared, the idle timer is one scheduled task per
/// connection rather than a promise per write, and decision-log metadata is rendered only
/// when a line is written.
final class GatewayHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    /// Responses are serialised here (``ResponseSerializer``), not by NIO's encoder.
    typealias OutboundOut = ByteBuffer

    /// Where the connection is in its current request.
    private enum State {
        /// Between requests.
        case idle
        /// Reading the request; the body is kept (bounded) for inspection.
        case collecting(Request)
        /// The request was answered early (413, 431): its remaining body is dropped.
        case discarding(closeAfter: Bool)
        /// Waiting for token verification (possibly a key fetch).
        case authorizing(Request)
        /// The upstream has the request; its response is being relayed.
        case forwarding(Exchange)
        /// The last response is written and the connection's output half-closed: what the
        /// client still sends is read and dropped until it closes or ``lingerTime`` ends, so
        /// that it reads the answer instead of a reset (RFC 9112 9.6).
        case lingering
        /// The connection is gone or going.
        case closed
    }

    private final class Request {
        let head: HTTPRequestHead
        /// What the enforcement stages read of the head, gathered in one pass.
        let facts: RequestHeadFacts
        /// The request target's query, split off once.
        let query: Substring?
        let route: Route<ResolvedResource>
        var body: ByteBuffer?
        var log: RequestLog

        init(head: HTTPRequestHead, facts: RequestHeadFacts, query: Substring?, route: Route<ResolvedResource>, log: RequestLog) {
            self.head = head
            self.facts = facts
            self.query = query
            self.route = route
            self.log = log
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

        var log: RequestLog { self.request.log }

        init(request: Request, upstreamHead: HTTPRequestHead, resource: ResolvedResource, machine: UpstreamExchangeStateMachine) {
            self.request = request
            self.upstreamHead = upstreamHead
            self.resource = resource
            self.keepAlive = request.head.isKeepAlive
            self.machine = machine
            self.startedAt = .now()
        }
    }

    private let gateway: Gateway
    private let remoteAddress: String
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var requestCounter = 0
    private let connectionID: String
    /// `x5t#S256` of the client's verified TLS certificate, when it sent one (RFC 8705):
    /// what certificate-bound tokens will be compared with.
    private(set) var clientCertificateThumbprint: String?
    /// This event loop's upstream pool, looked up once.
    private var pool: UpstreamConnectionPool?
    /// How long the client may keep the connection without sending (between requests, or
    /// in the middle of one) before it is closed.
    private let idleTimeout: TimeAmount
    /// When the client last sent bytes or a response finished (event-loop time).
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var idleCheck: Scheduled<Void>?
    /// When `idleCheck` fires.
    private var idleCheckDeadline = NIODeadline.distantFuture
    /// How long a request head may take to arrive, from its first byte
    /// (`limits.header_read_timeout_seconds`): each byte of a slow head is activity, so the
    /// idle timeout alone would let one byte a second hold the connection for ever.
    private let headerReadTimeout: TimeAmount
    /// When the first byte of the head being read arrived, if one is being read.
    private var headStartedAt: NIODeadline?
    /// Bytes the request decoder has parsed (see ``RequestByteMeter``), and the count at the
    /// end of the last read.
    private let meter: RequestByteMeter
    private var meterReading = 0
    /// Parts received, and their bytes, since the last read completed; whether an end was
    /// among them.
    private var partsInRead = 0
    private var partBytesInRead = 0
    private var endInRead = false
    /// Bytes parsed that no part accounts for since the last request ended: chunk sizes,
    /// extensions and trailers, or a head still being read. Bounded (see ``framingAllowance``).
    private var unaccountedBytes = 0
    /// Body bytes of the request being read.
    private var bodyBytes = 0
    /// The gateway is shutting down: the response under way is the connection's last.
    private var quiescing = false
    /// The upstream-response timer: armed for the earliest deadline that matters and re-armed
    /// when it fires, never cancelled per request (NIO cancels a scheduled task by scanning
    /// every task on the loop, and a task per request is three allocations).
    private var responseTimer: Scheduled<Void>?
    private var responseTimerDeadline: NIODeadline?
    private var responseTimerGeneration = 0
    /// Parts of requests that arrived while an earlier one was being answered.
    /// Each head with its facts, gathered once when it arrives.
    private var pipelined = CircularBuffer<(part: HTTPServerRequestPart, facts: RequestHeadFacts?)>()
    /// A read the channel asked for while pipelined requests were waiting.
    private var readPending = false
    private var servingPipelined = false
    /// The method of the request being answered (responses go out in request order), and how
    /// its response's body is framed once the head is written.
    private var responseMethod = HTTPMethod.GET
    private var responseVersion = HTTPVersion.http1_1
    private var responseFraming = ResponseBodyFraming.none
    /// A chunked body's last chunk, and the CRLF after a large chunk: shared, never written into.
    private static let lastChunk = ByteBuffer(string: "0\r\n\r\n")
    private static let crlf = ByteBuffer(string: "\r\n")

    /// How long a connection lingers after its last response (see ``State/lingering``).
    static let lingerTime = TimeAmount.seconds(2)

    /// - Parameter meter: the one the connection's ``MeteredRequestDecoder`` counts into.
    init(gateway: Gateway, remoteAddress: String, meter: RequestByteMeter = RequestByteMeter()) {
        self.gateway = gateway
        self.remoteAddress = remoteAddress
        self.connectionID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        self.idleTimeout = .seconds(gateway.policy.limits.clientIdleTimeoutSeconds)
        self.headerReadTimeout = .seconds(gateway.policy.limits.headerReadTimeoutSeconds)
        self.meter = meter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.lastActivity = context.eventLoop.now
        self.scheduleIdleCheck(at: self.lastActivity + self.idleTimeout, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelTimers()
        self.context = nil
    }

    // MARK: Idle connections

    private func scheduleIdleCheck(at deadline: NIODeadline, context: ChannelHandlerContext) {
        self.idleCheckDeadline = deadline
        self.idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.idleCheckFired()
        }
    }

    /// Closes a connection whose client has sent nothing for `idleTimeout` while the gateway
    /// was waiting on it, or whose request head has taken longer than `headerReadTimeout`
    /// since its first byte. A quiet SSE stream or a slow upstream is not the client idling.
    private func idleCheckFired() {
        guard let context = self.context else { return }
        let now = context.eventLoop.now
        let waitingOnClient: Bool
        switch self.state {
        case .idle, .collecting, .discarding: waitingOnClient = true
        case .authorizing, .forwarding, .lingering, .closed: waitingOnClient = false
        }
        if let started = self.headStartedAt, now >= started + self.headerReadTimeout {
            self.headStartedAt = nil
            self.headReadTimedOut(context: context)
            return
        }
        let expiry = self.lastActivity + self.idleTimeout
        if waitingOnClient, now >= expiry {
            self.gateway.logger.debug("closing idle client connection", metadata: ["peer": "\(self.remoteAddress)"])
            self.closeConnection(context: context)
            return
        }
        var next = waitingOnClient ? expiry : now + self.idleTimeout
        if let started = self.headStartedAt { next = min(next, started + self.headerReadTimeout) }
        self.scheduleIdleCheck(at: next, context: context)
    }

    /// A head that did not arrive in time: 408 when no response is under way (RFC 9110
    /// 15.5.9), else the connection is closed (a 408 now would corrupt the response).
    private func headReadTimedOut(context: ChannelHandlerContext) {
        let rejection = GatewayRejection.headerReadTimeout(seconds: self.gateway.policy.limits.headerReadTimeoutSeconds)
        guard case .idle = self.state else {
            self.connectionLog(method: "-").notice("request refused", metadata: ["outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)"])
            self.closeConnection(context: context)
            return
        }
        self.pipelined.removeAll()
        self.responseMethod = .GET
        self.responseVersion = .http1_1
        self.refuseAndClose(rejection, context: context)
    }

    /// Bytes a request may carry beyond its head and body (chunk sizes, chunk extensions,
    /// trailers; RFC 9112 7.1.1 has a server bound them), or a head still being read: the
    /// header limit plus a read's slack, plus as much again as the body so far (a body sent
    /// in tiny chunks has framing larger than itself).
    private var framingAllowance: Int {
        self.gateway.policy.limits.maxHeaderBytes + 64 * 1024 + self.bodyBytes
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        self.lastActivity = now
        let parsed = self.meter.parsed - self.meterReading
        self.meterReading = self.meter.parsed
        defer {
            self.partsInRead = 0
            self.partBytesInRead = 0
            self.endInRead = false
        }
        // A request that ended in this read takes its framing with it (at most a read's worth
        // of the next head is missed, caught by the next read).
        self.unaccountedBytes = self.endInRead ? 0 : max(0, self.unaccountedBytes + parsed - self.partBytesInRead)
        switch self.state {
        case .idle, .authorizing, .forwarding:
            // Waiting for the next head: bytes parsed with nothing to show for them are one.
            if parsed > 0, self.partsInRead == 0, self.headStartedAt == nil {
                self.headStartedAt = now
                let deadline = now + self.headerReadTimeout
                if deadline < self.idleCheckDeadline {
                    self.idleCheck?.cancel()
                    self.scheduleIdleCheck(at: deadline, context: context)
                }
            }
            if self.unaccountedBytes > self.framingAllowance, self.pipelined.isEmpty, case .idle = self.state {
                // A head still incomplete after more bytes than any head may have.
                self.refuseAndClose(.headersTooLarge, context: context)
            }
        case .collecting(let request) where self.unaccountedBytes > self.framingAllowance:
            self.refuseAndClose(.chunkFramingTooLarge(bytes: self.unaccountedBytes, body: self.bodyBytes), log: request.log, context: context)
        case .collecting, .discarding, .lingering, .closed:
            break
        }
        context.fireChannelReadComplete()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        self.partsInRead += 1
        var facts: RequestHeadFacts?
        switch part {
        case .head(let head):
            self.headStartedAt = nil
            // The one pass over the head's fields (see ``Enforcement``); its size is also what
            // the decoder parsed for it, near enough (plus the request line's framing).
            let gathered = Self.facts(of: head)
            self.partBytesInRead += gathered.headerBytes + 16
            facts = gathered
        case .body(let buffer):
            self.partBytesInRead += buffer.readableBytes
        case .end:
            self.endInRead = true
        }
        switch self.state {
        case .lingering, .closed:
            // The answer is out and the connection is closing: nothing more is served.
            return
        case .idle, .collecting, .discarding, .authorizing, .forwarding:
            break
        }
        if !self.pipelined.isEmpty || self.isAnswering {
            // A pipelined request: its turn comes when the current response is done.
            self.pipelined.append((part, facts))
            return
        }
        self.handle(part, facts: facts, context: context)
    }

    /// A request is being authorised or its response relayed.
    private var isAnswering: Bool {
        switch self.state {
        case .authorizing, .forwarding: return true
        case .idle, .collecting, .discarding, .lingering, .closed: return false
        }
    }

    /// Reading pauses while pipelined requests wait, so a client cannot queue without bound.
    func read(context: ChannelHandlerContext) {
        if self.pipelined.isEmpty {
            context.read()
        } else {
            self.readPending = true
        }
    }

    /// Called when a response is complete: serves the requests that were pipelined behind it.
    private func servePipelined(context: ChannelHandlerContext) {
        guard !self.servingPipelined else { return }
        self.servingPipelined = true
        defer { self.servingPipelined = false }
        while !self.isAnswering, let (part, facts) = self.pipelined.popFirst() {
            if case .closed = self.state {
                self.pipelined.removeAll()
                return
            }
            if case .lingering = self.state {
                self.pipelined.removeAll()
                return
            }
            self.handle(part, facts: facts, context: context)
        }
        if self.pipelined.isEmpty, self.readPending {
            self.readPending = false
            context.read()
        }
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
            self.receivedBody(buffer, context: context)
        case .end:
            self.receivedEnd(context: context)
        }
    }

    private func receivedHead(_ head: HTTPRequestHead, facts: RequestHeadFacts, context: ChannelHandlerContext) {
        guard case .idle = self.state else {
            // Requests are handed over one at a time (pipelined ones wait in `pipelined`);
            // anything else is a bug or a hostile peer. Close rather than guess.
            self.closeConnection(context: context)
            return
        }
        self.requestCounter += 1
        self.bodyBytes = 0
        self.responseMethod = head.method
        self.responseVersion = head.version
        var log = RequestLog(
            logger: self.gateway.logger, connectionID: self.connectionID, sequence: self.requestCounter,
            method: head.method.rawValue, peer: self.remoteAddress
        )
        log.clientCertificate = self.clientCertificateThumbprint

        let target: Enforcement.Target
        switch Enforcement.checkHead(facts, method: head.method.rawValue, isHTTP11OrLater: head.version.isHTTP11OrLater, target: head.uri, limits: self.gateway.policy.limits) {
        case .failure(let rejection):
            self.refuseAndClose(rejection, log: log, context: context)
            return
        case .success(let admitted):
            target = admitted
        }
        let route = self.gateway.router.route(target.path)
        if case .resource(let resource) = route {
            log.resource = resource.policy.path
        }
        self.state = .collecting(Request(head: head, facts: facts, query: target.query, route: route, log: log))
        if Enforcement.answersContinue(facts, isHTTP11OrLater: head.version.isHTTP11OrLater) {
            // Oversized bodies are still refused with 413 as they arrive.
            var interim = context.channel.allocator.buffer(capacity: 32)
            _ = try? ResponseSerializer.writeHead(status: .continue, headers: [:], requestMethod: head.method, requestVersion: head.version, keepAlive: true, into: &interim)
            context.writeAndFlush(self.wrapOutboundOut(interim), promise: nil)
        }
    }

    private func receivedBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        switch self.state {
        case .collecting(let request):
            let size = (request.body?.readableBytes ?? 0) + buffer.readableBytes
            self.bodyBytes = size
            guard size <= self.gateway.policy.limits.maxBodyBytes else {
                self.refuseAndClose(.bodyTooLarge(limit: self.gateway.policy.limits.maxBodyBytes), log: request.log, context: context)
                return
            }
            if request.body == nil {
                request.body = buffer
            } else {
                var incoming = buffer
                request.body!.writeBuffer(&incoming)
            }
        case .discarding, .lingering, .closed:
            break
        case .idle, .authorizing, .forwarding:
            self.closeConnection(context: context)
        }
    }

    /// Answers a request refused while it is being read (its head, or a body too large), drops
    /// the rest of it, and closes the connection once the answer is written.
    private func refuseAndClose(_ rejection: GatewayRejection, log: RequestLog? = nil, context: ChannelHandlerContext) {
        let response = rejection.response(resource: nil)
        let log = log ?? self.connectionLog(method: "-")
        log.notice("request refused", metadata: ["outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)"])
        self.state = .discarding(closeAfter: true)
        self.write(response, keepAlive: false, context: context)
    }

    /// The log of the connection's next request, for refusals made before its head is known.
    private func connectionLog(method: String) -> RequestLog {
        RequestLog(logger: self.gateway.logger, connectionID: self.connectionID, sequence: self.requestCounter + 1, method: method, peer: self.remoteAddress)
    }

    private func receivedEnd(context: ChannelHandlerContext) {
        switch self.state {
        case .collecting(let request):
            self.process(request, context: context)
        case .discarding(let closeAfter):
            if closeAfter {
                self.closeConnection(context: context)
            } else {
                self.state = .idle
                self.servePipelined(context: context)
            }
        case .lingering, .closed:
            break
        case .idle, .authorizing, .forwarding:
            self.closeConnection(context: context)
        }
    }

    // MARK: Decision

    private func process(_ request: Request, context: ChannelHandlerContext) {
        let keepAlive = request.head.isKeepAlive
        switch request.route {
        case .notFound:
            self.finish(request, with: .notFound, resource: nil, context: context)
        case .health:
            self.state = .idle
            self.write(GatewayResponse(status: 200, headers: [("Content-Type", "text/plain")], body: "ok\n"), keepAlive: keepAlive, context: context)
        case .readiness:
            self.state = .idle
            let ready = self.gateway.isReady
            self.write(GatewayResponse(status: ready ? 200 : 503, headers: [("Content-Type", "text/plain")], body: ready ? "ready\n" : "signing keys not loaded\n"), keepAlive: keepAlive, context: context)
        case .metadata(let resource):
            self.state = .idle
            guard request.head.method == .GET || request.head.method == .HEAD else {
                self.write(GatewayResponse(status: 405, headers: [("Allow", "GET")]), keepAlive: keepAlive, context: context)
                return
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
        let token: String
        switch Enforcement.admit(request.facts, method: request.head.method.rawValue, query: request.query, body: request.body, resource: resource.policy) {
        case .failure(let rejection):
            self.finish(request, with: rejection, resource: resource, context: context)
            return
        case .success(let admitted):
            token = admitted
        }
        if let claims = self.gateway.cachedClaims(token: token, resource: resource) {
            self.authorize(request, resource: resource, token: token, claims: claims, context: context)
            return
        }
        self.state = .authorizing(request)
        self.gateway.authenticate(token: token, resource: resource, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                guard case .authorizing(let request) = self.state, let context = self.context else { return }
                switch result {
                case .success(let claims):
                    self.authorize(request, resource: resource, token: token, claims: claims, context: context)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .authorizationServerUnavailable("\(error)")
                    self.finish(request, with: rejection, resource: resource, context: context)
                }
            }
    }

    private func authorize(_ request: Request, resource: ResolvedResource, token: String, claims: AccessTokenClaims, context: ChannelHandlerContext) {
        request.log.subject = claims.subject ?? "-"
        request.log.clientID = claims.clientID ?? "-"
        let method = request.head.method.rawValue
        let (body, decision) = Enforcement.authorize(request.facts, method: method, body: request.body, scopes: claims.scopes, resource: resource.policy, limits: self.gateway.policy.limits)
        request.log.body = body
        switch decision {
        case .failure(let rejection):
            self.finish(request, with: rejection, resource: resource, context: context)
        case .success(let authorization):
            if body == nil {
                // GET opens the server-to-client stream, DELETE ends a session.
                request.log.info("request allowed", metadata: ["outcome": "allowed", "operation": "\(method) stream"])
            } else {
                request.log.info("request allowed", metadata: ["outcome": "allowed"])
            }
            self.obtainUpstreamCredential(request, resource: resource, token: token, claims: claims, tool: authorization.tool, errorID: authorization.errorID, context: context)
        }
    }

    /// Answers a request with a refusal, logged with its reason.
    private func finish(_ request: Request, with rejection: GatewayRejection, resource: ResolvedResource?, context: ChannelHandlerContext) {
        let response = rejection.response(resource: resource?.policy)
        let level: Logger.Level = response.status >= 500 ? .error : .notice
        request.log.log(level: level, "request refused", metadata: [
            "outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)",
        ])
        self.state = .idle
        self.write(response, keepAlive: request.head.isKeepAlive, context: context)
    }

    // MARK: Forwarding

    /// Token exchange when the resource asks for it (the client's token is the subject, never
    /// the credential), then forwarding.
    private func obtainUpstreamCredential(
        _ request: Request, resource: ResolvedResource, token: String, claims: AccessTokenClaims, tool: String?, errorID: JSONValue?, context: ChannelHandlerContext
    ) {
        guard case .tokenExchange(let policy, let client) = resource.credential else {
            self.forward(request, resource: resource, upstreamToken: nil, errorID: errorID, context: context)
            return
        }
        if let upstreamToken = self.gateway.exchanger.cachedUpstreamToken(subjectToken: token, policy: policy, tool: tool, client: client) {
            self.forward(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, context: context)
            return
        }
        self.state = .authorizing(request)
        self.gateway.exchanger.upstreamToken(subjectToken: token, subjectClaims: claims, policy: policy, tool: tool, client: client, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                guard case .authorizing(let request) = self.state, let context = self.context else { return }
                switch result {
                case .success(let upstreamToken):
                    self.forward(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, context: context)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .upstreamCredentialUnavailable("\(error)", id: nil)
                    self.finish(request, with: rejection.answering(errorID), resource: resource, context: context)
                }
            }
    }

    private func forward(_ request: Request, resource: ResolvedResource, upstreamToken: String?, errorID: JSONValue?, context: ChannelHandlerContext) {
        let upstreamHead = self.upstreamHead(for: request, resource: resource, upstreamToken: upstreamToken)
        let machine = UpstreamExchangeStateMachine(
            responseTimeout: .seconds(self.gateway.policy.limits.upstreamResponseTimeoutSeconds), errorID: errorID,
            clientTakesInterim: self.responseVersion.isHTTP11OrLater
        )
        let exchange = Exchange(request: request, upstreamHead: upstreamHead, resource: resource, machine: machine)
        self.state = .forwarding(exchange)
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
            guard case .forwarding(let current) = self.state, current === exchange, let context = self.context else {
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
            // Flushed when the upstream read completes: one write for a response that arrived
            // in one read, and still every SSE event as soon as it arrives.
            if let head { context.write(self.wrapOutboundOut(head), promise: nil) }
        case .fail(let rejection):
            self.abandon(exchange)
            self.state = .idle
            let response = rejection.response(resource: nil)
            exchange.log.error("upstream failed", metadata: ["outcome": "upstream_error", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)"])
            self.write(response, keepAlive: exchange.keepAlive, context: context)
        case .closeClient:
            exchange.log.error("upstream failed mid-response", metadata: ["outcome": "upstream_error"])
            self.closeConnection(context: context)
        case .finish(let reusable):
            if let lease = exchange.lease {
                self.upstreamPool(context).release(lease, target: exchange.resource.upstream, reusable: reusable)
            }
            self.state = .idle
            self.lastActivity = context.eventLoop.now
            let elapsed = NIODeadline.now() - exchange.startedAt
            exchange.log.info("response relayed", metadata: ["outcome": "forwarded", "status": "\(exchange.status)", "upstream_ms": "\(elapsed.nanoseconds / 1_000_000)"])
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
            from: request.head.headers, facts: request.facts, resource: resource.policy, peer: self.remoteAddress, publicURL: self.gateway.policy.publicURL,
            bodyLength: request.body?.readableBytes, isPOST: request.head.method == .POST, upstreamToken: upstreamToken
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
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        self.run(exchange.machine.timerFired(now: context.eventLoop.now), exchange, context: context)
    }

    private func cancelTimers() {
        self.idleCheck?.cancel()
        self.idleCheck = nil
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

    /// A response the gateway wrote itself (errors, metadata, health): head and body in one
    /// buffer. No body is sent in answer to HEAD, though Content-Length still says how long it
    /// would be.
    private func write(_ response: GatewayResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        let keepAlive = keepAlive && !self.quiescing
        var extra = response.headers
        extra.append(("Content-Length", String(response.body.utf8.count)))
        var buffer = context.channel.allocator.buffer(capacity: ResponseSerializer.estimatedSize([:], extra) + response.body.utf8.count)
        do {
            self.responseFraming = try ResponseSerializer.writeHead(
                status: HTTPResponseStatus(statusCode: response.status), headers: [:], extra: extra,
                requestMethod: self.responseMethod, requestVersion: self.responseVersion, keepAlive: keepAlive, into: &buffer
            )
        } catch {
            // The gateway's own headers come from code and validated policy: a bug, not input.
            self.gateway.logger.error("gateway response not sent", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
            self.closeConnection(context: context)
            return
        }
        if self.responseFraming != .none { buffer.writeString(response.body) }
        context.write(self.wrapOutboundOut(buffer), promise: nil)
        self.endResponse(keepAlive: keepAlive, context: context)
    }

    /// Ends the current response (the last chunk of a chunked body): serves what was
    /// pipelined behind it, or closes the connection once it is written (nothing after a
    /// "Connection: close" response is answered).
    private func endResponse(keepAlive: Bool, context: ChannelHandlerContext) {
        let end = self.responseFraming == .chunked ? Self.lastChunk : ByteBuffer()
        // A body delimited by the connection's end is complete only once it closes; a quiescing
        // gateway serves nothing more on this connection.
        let keepAlive = keepAlive && self.responseFraming != .untilClose && !self.quiescing
        self.responseFraming = .none
        if keepAlive {
            context.writeAndFlush(self.wrapOutboundOut(end), promise: nil)
            self.servePipelined(context: context)
        } else {
            self.state = .lingering
            self.pipelined.removeAll()
            context.writeAndFlush(self.wrapOutboundOut(end)).assumeIsolated().whenComplete { _ in self.linger(context: context) }
        }
    }

    /// Closes in stages once the last response is written (RFC 9112 9.6): the output is
    /// half-closed, then the client's remaining bytes are read and dropped until it closes or
    /// ``lingerTime`` passes. Closing at once, with unread bytes from the client (the rest
    /// of a refused body), would reset the connection and could destroy the answer before the
    /// client reads it.
    private func linger(context: ChannelHandlerContext) {
        guard case .lingering = self.state else { return }
        self.cancelTimers()
        context.close(mode: .output).assumeIsolated().whenComplete { result in
            guard case .lingering = self.state else { return }
            if case .failure = result {
                // No half-close on this channel (or it is already gone): close outright.
                self.closeConnection(context: context)
                return
            }
            self.idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: Self.lingerTime) {
                guard case .lingering = self.state else { return }
                self.closeConnection(context: context)
            }
        }
        // Reading goes on even if it was held for pipelined requests: they are dropped.
        if self.readPending {
            self.readPending = false
            context.read()
        }
    }

    private func closeConnection(context: ChannelHandlerContext) {
        self.cancelTimers()
        if case .forwarding(let exchange) = self.state {
            self.abandon(exchange)
        }
        self.state = .closed
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimers()
        if case .forwarding(let exchange) = self.state {
            // Client disconnect cancels the upstream exchange (MCP: closing the stream is
            // cancellation).
            exchange.machine.clientClosed()
            self.abandon(exchange)
            exchange.log.info("client disconnected during the exchange", metadata: ["outcome": "client_closed"])
        }
        self.state = .closed
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .forwarding(let exchange) = self.state {
            exchange.lease?.handler.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.quiesce(context: context)
            return
        }
        if case .handshakeCompleted = event as? TLSUserEvent {
            if let tls = try? context.pipeline.syncOperations.handler(type: TLSHandler.self), let der = tls.peerCertificate {
                self.clientCertificateThumbprint = CertificateThumbprint.sha256(der: der)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Graceful shutdown (see ``GatewayServer/run()``): a connection with nothing under way
    /// closes now; one answering a request (or streaming) finishes that response, with
    /// `Connection: close` if its head is still to be written, and closes after it.
    private func quiesce(context: ChannelHandlerContext) {
        self.quiescing = true
        guard case .idle = self.state, self.pipelined.isEmpty, self.headStartedAt == nil else { return }
        self.closeConnection(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .lingering = self.state {
            // Whatever the client still sends is being dropped; the linger timer closes.
            return
        }
        if error is HTTPParserError {
            // Bytes after a "Connection: close" request are not worth a line: we are hanging up.
            if case .closed = self.state { return }
            self.gateway.logger.info("malformed HTTP request", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
            let answerPending: Bool
            switch self.state {
            case .idle, .collecting: answerPending = !self.pipelined.isEmpty
            case .discarding, .authorizing, .forwarding, .lingering, .closed: answerPending = true
            }
            if answerPending {
                // A response is (or will be) on the wire: a 400 now would corrupt it.
                self.closeConnection(context: context)
            } else {
                // No response has started: say why before hanging up (RFC 9112 2.2).
                self.write(GatewayRejection.malformedHTTP("\(error)").response(resource: nil), keepAlive: false, context: context)
            }
            return
        }
        // TLS failures carry OpenSSL's error queue: worth a line when a client cannot connect.
        let level: Logger.Level = error is TLSError ? .info : .debug
        self.gateway.logger.log(level: level, "connection error", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
        self.closeConnection(context: context)
    }
}

// MARK: Upstream response relay

extension GatewayHandler: UpstreamResponseSink {
    /// A proxy forwards 1xx responses (RFC 9110 15.2), connection-scoped headers removed, but
    /// never to an HTTP/1.0 client. One whose headers cannot be sent is dropped, not relayed.
    /// A 101 answers an upgrade the gateway never asks for (it forwards no Upgrade): the
    /// upstream broke the protocol, and the client gets a 502.
    func upstreamInterimResponse(_ upstreamHead: HTTPResponseHead) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        let action = exchange.machine.interimReceived(status: Int(upstreamHead.status.code))
        guard case .relayInterim = action else {
            self.run(action, exchange, context: context)
            return
        }
        do {
            let (buffer, _) = try self.serialise(upstreamHead, keepAlive: exchange.keepAlive && !self.quiescing, context: context)
            self.run(action, exchange, context: context, relaying: buffer)
        } catch {
            exchange.log.debug("interim response not relayed", metadata: ["status": "\(upstreamHead.status.code)", "reason": "\(error)"])
        }
    }

    /// The upstream's head as the client gets it, serialised straight from the decoded header
    /// list: connection-scoped headers (and those its `Connection` names) dropped, `extra`
    /// in place of any the upstream sent under the same names.
    private func serialise(
        _ upstreamHead: HTTPResponseHead, extra: [(String, String)] = [], keepAlive: Bool, context: ChannelHandlerContext
    ) throws(ResponseSerializer.InvalidHeader) -> (ByteBuffer, ResponseBodyFraming) {
        let connection = ConnectionOptions(upstreamHead.headers)
        var buffer = context.channel.allocator.buffer(capacity: ResponseSerializer.estimatedSize(upstreamHead.headers, extra))
        let framing = try ResponseSerializer.writeHead(
            status: upstreamHead.status, headers: upstreamHead.headers,
            include: { name in
                !HopByHop.isResponseHeader(name, connection: connection) && !(!extra.isEmpty && extra.contains { name.equalsIgnoringASCIICase($0.0) })
            },
            extra: extra, requestMethod: self.responseMethod, requestVersion: self.responseVersion, keepAlive: keepAlive, into: &buffer
        )
        return (buffer, framing)
    }

    func upstreamResponseHead(_ upstreamHead: HTTPResponseHead) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        exchange.status = upstreamHead.status.code
        var extra: [(String, String)] = []
        if upstreamHead.headers.first(name: "Content-Type")?.hasPrefixIgnoringASCIICase("text/event-stream") == true {
            // Tell any buffering proxy in front of us not to hold events back.
            extra.append(("X-Accel-Buffering", "no"))
        }
        do {
            let buffer: ByteBuffer
            (buffer, self.responseFraming) = try self.serialise(upstreamHead, extra: extra, keepAlive: exchange.keepAlive && !self.quiescing, context: context)
            self.run(exchange.machine.headReceived(), exchange, context: context, relaying: buffer)
        } catch {
            // Relaying it could split the response: the client gets a 502 instead.
            self.run(exchange.machine.headReceived(valid: false, reason: "\(error)"), exchange, context: context)
        }
    }

    func upstreamReadComplete() {
        guard case .forwarding(let exchange) = self.state, exchange.machine.responseStarted, let context = self.context else { return }
        context.flush()
    }

    /// Body chunks at least this large are flushed as they arrive rather than at the end of
    /// the upstream read (a TLS record's worth).
    static let immediateFlushBytes = 16 * 1024

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        // Each chunk goes out with the upstream read it came in (flushed in
        // `upstreamReadComplete`): an SSE event is never held back. A large chunk is flushed
        // at once, so the client receives a big body while the next upstream read happens.
        switch ResponseSerializer.frame(buffer, as: self.responseFraming, allocator: context.channel.allocator) {
        case .nothing:
            break
        case .one(let framed):
            context.write(self.wrapOutboundOut(framed), promise: nil)
        case .chunk(let prefix, let body):
            context.write(self.wrapOutboundOut(prefix), promise: nil)
            context.write(self.wrapOutboundOut(body), promise: nil)
            context.write(self.wrapOutboundOut(Self.crlf), promise: nil)
        }
        if buffer.readableBytes >= Self.immediateFlushBytes {
            context.flush()
        }
        if !context.channel.isWritable {
            exchange.lease?.handler.pause()
        }
    }

    func upstreamResponseEnd(keepAlive upstreamKeepAlive: Bool) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        self.run(exchange.machine.responseEnded(keepAlive: upstreamKeepAlive), exchange, context: context)
    }

    func upstreamRequestWritten() {
        guard case .forwarding(let exchange) = self.state else { return }
        exchange.machine.requestWritten()
    }

    func upstreamFailed(_ error: any Error) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        exchange.lease?.channel.close(promise: nil)
        exchange.log.debug("upstream connection failed", metadata: ["reason": "\(error)"])
        self.run(exchange.machine.upstreamFailed("\(error)"), exchange, context: context)
    }
}

@available(*, unavailable)
extension GatewayHandler: Sendable {}

extension ConnectionOptions {
    init(_ headers: HTTPHeaders) {
        self.init()
        for (name, value) in headers where name.equalsIgnoringASCIICase("Connection") { self.add(value) }
    }
}
