import BouncerCore
import BouncerTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOTLS

/// The gateway's per-connection handler: the NIO glue that applies what others decide. The
/// connection's rules (pipelining, read gating, idle and header-read timeouts, framing bounds,
/// the staged close) are ``ClientConnectionStateMachine``; what a request may do is
/// ``RequestDecision`` over the ``Enforcement`` stages; an exchange with the upstream (relay,
/// inspection, retry, 1xx, timeout) is ``UpstreamExchange`` with its
/// ``UpstreamExchangeStateMachine``; how a request ended is ``RequestRecorder``'s. The handler
/// keeps the channel callbacks, the two `run` switches, the timers, writing and closing.
/// Everything here runs on the connection's event loop, the upstream connection included, so
/// there are no locks on the data path.
///
/// The request path is written to keep per-request work small (see Benchmarks/): the request
/// and the exchange are objects (a step moves one reference, not a dozen fields), the route's
/// policy is resolved once, the connection has one timer rather than a promise per write, and
/// decision-log metadata is rendered only when a line is written.
final class GatewayHandler: ChannelDuplexHandler {
    /// The client's bytes, read as requests here (``HTTP1RequestReader``): no decoder handler
    /// in front, no part crossing the pipeline between reading and deciding.
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Never
    /// Responses are serialised here (``ResponseWriter``), not by NIO's encoder.
    typealias OutboundOut = ByteBuffer

    /// The gateway in force when the current request's head arrived (``current`` at that time).
    var gateway: Gateway
    let current: GatewayReference
    let remoteAddress: String
    /// Whether the TCP peer is one of `trusted_proxies` (its forwarding headers name the client).
    var peerIsTrustedProxy: Bool
    /// The connection's rules (pipelining, read gating, timeouts, framing bounds, closing), as a
    /// value; applied by ``run(_:context:)``.
    var machine: ClientConnectionStateMachine
    /// The request being read or decided (from its accepted head to its response).
    var request: ClientRequest?
    /// The exchange with the upstream, while the machine is ``ClientConnectionStateMachine/State/forwarding``.
    var exchange: UpstreamExchange?
    /// A bridged `subscriptions/listen` streaming in place of an exchange.
    var bridgeStream: (request: ClientRequest, resource: ResolvedResource, subscription: BridgeSubscription)?
    /// Parts of requests that arrived while an earlier one was being answered, each head with
    /// its facts, gathered once when it arrives. The machine counts them.
    var pipelined = PipelinedParts()
    var servingPipelined = false
    /// The client's byte stream, read as requests with the gateway's codec.
    var reader: HTTP1RequestReader
    /// The facts of the last head read, and the last request's token: the next request reuses
    /// their Strings where equal.
    var previousFacts: RequestHeadFacts?
    var previousToken: String?
    /// Bytes read from the client since the last read completed.
    var bytesInRead = 0
    var writer = ResponseWriter()
    private(set) var context: ChannelHandlerContext?
    var requestCounter = 0
    let connectionID: String
    /// Trace and span ids for requests without a valid `traceparent`.
    var random = SplitMix64()
    var recorder = RequestRecorder()
    /// `x5t#S256` of the client's verified TLS certificate, when it sent one (RFC 8705):
    /// what certificate-bound tokens will be compared with.
    private(set) var clientCertificateThumbprint: String?
    /// This event loop's upstream pool, looked up once.
    var pool: UpstreamConnectionPool?
    /// The connection's one timer (idle, header read, linger), and when it fires. Armed for
    /// the earliest deadline the machine names and re-armed when it fires, never cancelled for
    /// a later one.
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture
    /// The write that ends the current response, for a close after it (``ClientConnectionStateMachine/Action/closeAfterWrite``).
    private var lastWrite: EventLoopFuture<Void>?
    /// The upstream-response timer (see ``armResponseTimer(for:context:)``).
    var responseTimer: Scheduled<Void>?
    var responseTimerDeadline: NIODeadline?
    var responseTimerGeneration = 0

    /// How long a connection lingers after its last response (see ``ClientConnectionStateMachine/State/closing``).
    static let lingerTime = TimeAmount.seconds(2)

    init(gateway current: GatewayReference, remoteAddress: String) {
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
        self.reader = HTTP1RequestReader(maxHeadBytes: Self.maxHeadBytes(limits), maxFields: Self.maxFields)
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
    func run(_ action: ClientConnectionStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .refuse(let rejection):
            if self.request == nil { self.writer.answerUnreadRequest() }
            self.refuse(self.request, with: rejection, resource: nil, record: self.request?.resource, keepAlive: false, level: .debug, context: context)
        case .close:
            self.closeConnection(context: context)
        case .closeIdle:
            self.connectionLog(method: "-").debug("closing idle client connection")
            self.closeConnection(context: context)
        case .armTimer(let deadline):
            self.armTimer(for: deadline, context: context)
        case .decide:
            if let request = self.request {
                RequestDecision.decide(request, previousToken: self.previousToken, gateway: self.gateway, random: &self.random, eventLoop: context.eventLoop, sink: self)
            }
        case .servePipelined:
            if let token = self.request?.token { self.previousToken = token }
            self.request = nil
            self.servePipelined(context: context)
        case .closeAfterWrite:
            // Nothing after a "Connection: close" response is answered: once it is written,
            // the connection closes in stages.
            self.pipelined.removeAll()
            let written = self.lastWrite
            self.lastWrite = nil
            written?.assumeIsolated().whenComplete { _ in self.linger(context: context) }
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

    func cancelTimers() {
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = .distantFuture
        self.responseTimer?.cancel()
        self.responseTimer = nil
        self.responseTimerDeadline = nil
    }

    /// The log of the connection's next request, for lines about the connection itself.
    func connectionLog(method: String) -> RequestLog {
        RequestLog(logger: self.gateway.logger, connectionID: self.connectionID, sequence: self.requestCounter + 1, method: method, peer: self.remoteAddress)
    }

    /// Records how a request to a protected resource ended (``RequestRecorder``).
    func record(
        _ request: ClientRequest, resource: ResolvedResource, decision: AuditRequest.Decision, outcome: AuditRequest.Outcome, reason: String?,
        status: Int = 0, bytesOut: Int = 0, exchange: UpstreamExchange? = nil
    ) {
        self.recorder.record(
            request, resource: resource, decision: decision, outcome: outcome, reason: reason, status: status, bytesOut: bytesOut, exchange: exchange,
            gateway: self.gateway, clientCertificate: self.clientCertificateThumbprint
        )
    }

    // MARK: Writing

    /// Answers with a refusal, logged (at `level`; by default debug, or error for a 5xx) and
    /// recorded with its reason when `record` is a protected resource.
    func refuse(
        _ request: ClientRequest?, with rejection: GatewayRejection, resource: ResolvedResource?, record: ResolvedResource?, keepAlive: Bool,
        level: Logger.Level? = nil, context: ChannelHandlerContext
    ) {
        let response = rejection.response(resource: resource?.policy, dpop: request?.tokenIsDPoP == true)
        let log = request?.log ?? self.connectionLog(method: "-")
        log.log(level: level ?? (response.status >= 500 ? .error : .debug), "request refused", metadata: [
            "outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)",
        ])
        if let request, let record {
            self.record(request, resource: record, decision: .denied, outcome: .refused, reason: rejection.code, status: response.status, bytesOut: response.body.utf8.count)
        }
        self.write(response, keepAlive: keepAlive, context: context)
    }

    /// Writes a response the gateway wrote itself and ends it.
    func write(_ response: GatewayResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        let keepAlive = self.machine.keepAlive(keepAlive)
        do {
            try self.writer.write(response, keepAlive: keepAlive, context: context)
        } catch {
            // The gateway's own headers come from code and validated policy: a bug, not input.
            self.connectionLog(method: "-").error("gateway response not sent", metadata: ["error": "\(error)"])
            self.run(self.machine.close(), context: context)
            return
        }
        self.endResponse(keepAlive: keepAlive, context: context)
    }

    /// Ends the current response: serves what was pipelined behind it, or closes the
    /// connection in stages once it is written.
    func endResponse(keepAlive: Bool, context: ChannelHandlerContext) {
        let (keptAlive, written) = self.writer.end(keepAlive: self.machine.keepAlive(keepAlive), context: context)
        self.lastWrite = written
        self.run(self.machine.responseEnded(keepAlive: keptAlive, now: context.eventLoop.now), context: context)
        self.lastWrite = nil
    }

    /// Closes in stages once the last response is written (RFC 9112 9.6): the output is
    /// half-closed, then the client's remaining bytes are read and dropped until it closes or
    /// ``lingerTime`` passes. Closing at once, with unread bytes from the client (the rest
    /// of a refused body), would reset the connection and could destroy the answer before the
    /// client reads it.
    private func linger(context: ChannelHandlerContext) {
        guard self.machine.isClosing else { return }
        context.close(mode: .output).assumeIsolated().whenComplete { result in
            guard self.machine.isClosing else { return }
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

    /// Closes the client connection (and the upstream side of an exchange under way).
    func closeConnection(context: ChannelHandlerContext) {
        self.cancelTimers()
        self.clientLeftBridge()
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

    // MARK: Lifecycle

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimers()
        // Client disconnect cancels the upstream exchange (MCP: closing the stream is cancellation).
        self.exchange?.machine.clientClosed()
        self.clientLeftBridge()
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
        // Whatever the client still sends to a closing connection is being dropped.
        guard !self.machine.isClosing else { return }
        // TLS failures carry OpenSSL's error queue: worth a line when a client cannot connect.
        let level: Logger.Level = error is TLSError ? .info : .debug
        self.connectionLog(method: "-").log(level: level, "connection error", metadata: ["error": "\(error)"])
        self.run(self.machine.close(), context: context)
    }
}

@available(*, unavailable)
extension GatewayHandler: Sendable {}
