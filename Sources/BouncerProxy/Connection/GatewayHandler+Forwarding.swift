import BouncerCore
import NIOCore
import NIOHTTP1
import Logging

// MARK: The decision's outcome

extension GatewayHandler: RequestDecisionSink {
    func isDeciding(_ request: ClientRequest) -> Bool {
        self.machine.isDeciding && self.request === request && self.context != nil
    }

    func decided(_ request: ClientRequest, _ outcome: RequestDecision.Outcome) {
        guard let context = self.context else { return }
        switch outcome {
        case .answer(let response):
            self.write(response, keepAlive: request.head.isKeepAlive, context: context)
        case .refuse(let rejection, let resource):
            self.refuse(request, with: rejection, resource: resource, record: resource, keepAlive: request.head.isKeepAlive, context: context)
        case .forward(let resource, let upstreamToken, let errorID):
            self.forward(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, context: context)
        case .bridged(let answer, let resource):
            self.writeBridged(request, answer: answer, resource: resource, context: context)
        case .bridgedStream(let subscription, let resource):
            self.stream(subscription.value, request: request, resource: resource, context: context)
        }
    }
}

extension GatewayHandler {
    /// What the protocol bridge answered, written and recorded.
    private func writeBridged(_ request: ClientRequest, answer: ProtocolBridge.Answer, resource: ResolvedResource, context: ChannelHandlerContext) {
        request.bridged = (answer.outcome, answer.upstreamVersion)
        var response = answer.body.map { body in
            GatewayResponse(status: answer.status, headers: [("Content-Type", answer.contentType), ("Cache-Control", "no-store")], body: body)
        } ?? GatewayResponse(status: answer.status, headers: [])
        if let nonce = request.nextNonce { response.headers.append(("DPoP-Nonce", nonce)) }
        let failed = answer.status >= 500
        var metadata: Logger.Metadata = ["outcome": "\(failed ? "upstream_error" : "bridged")", "bridge": "\(answer.outcome)", "status": "\(answer.status)"]
        if let reason = answer.reason { metadata["reason"] = "\(reason)" }
        request.log.log(level: failed ? .error : .debug, "bridged request answered", metadata: metadata)
        let refused = answer.outcome.hasPrefix("resume_refused") || answer.outcome == "missing_capability"
        self.record(
            request, resource: resource, decision: refused ? .denied : .allowed, outcome: failed ? .upstreamError : refused ? .refused : .forwarded,
            reason: failed || refused ? "bridge.\(answer.outcome)" : nil, status: answer.status, bytesOut: response.body.utf8.count
        )
        self.write(response, keepAlive: request.head.isKeepAlive, context: context)
    }
}

/// The handler's side of an exchange with the upstream: a connection leased from the pool,
/// the response parts handed to the ``UpstreamExchange``, and its machine's actions applied
/// in one `run` switch.
extension GatewayHandler {
    /// Starts the exchange for an allowed request.
    func forward(_ request: ClientRequest, resource: ResolvedResource, upstreamToken: String?, errorID: JSONValue?, context: ChannelHandlerContext) {
        let upstreamHead = UpstreamExchange.upstreamHead(
            for: request, resource: resource, upstreamToken: upstreamToken, peer: self.remoteAddress, peerIsTrustedProxy: self.peerIsTrustedProxy,
            publicURL: self.gateway.policy.publicURL
        )
        let machine = UpstreamExchangeStateMachine(
            responseTimeout: .seconds(self.gateway.policy.limits.upstreamResponseTimeoutSeconds), errorID: errorID,
            clientTakesInterim: self.writer.requestVersion.isHTTP11OrLater
        )
        var inspector: ResponseInspector?
        if resource.policy.inspectResponses, let granted = request.granted, request.log.body != nil || request.head.method == .GET {
            // Everything a protected upstream sends back is inspected: a list to filter, a
            // tool to compare with its pin, a request for the client to judge.
            inspector = ResponseInspector(for: request.log.body, policy: resource.policy, granted: granted, protocolVersion: request.facts.protocolVersion)
        }
        let exchange = UpstreamExchange(
            request: request, upstreamHead: upstreamHead, boundToken: resource.upstreamDPoP == nil ? nil : upstreamToken, resource: resource, machine: machine,
            errorID: errorID, inspector: inspector
        )
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
    private func sendUpstream(_ exchange: UpstreamExchange, fresh: Bool, context: ChannelHandlerContext) {
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

    private func leased(_ lease: UpstreamLease, for exchange: UpstreamExchange, context: ChannelHandlerContext) {
        exchange.lease = lease
        lease.handler.sink = self
        self.run(exchange.machine.leased(reused: lease.reused, now: context.eventLoop.now), exchange, context: context)
    }

    /// Applies what the exchange's state machine decided.
    func run(_ action: UpstreamExchangeStateMachine.Action, _ exchange: UpstreamExchange, context: ChannelHandlerContext) {
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
        case .relayInterim, .relayHead:
            // The exchange writes what it relays (``UpstreamExchange/receiveHead(_:keepAlive:gateway:writer:context:)``).
            break
        case .fail(let rejection):
            self.abandon(exchange)
            self.exchange = nil
            let response = rejection.response(resource: nil)
            exchange.log.error("upstream failed", metadata: ["outcome": "upstream_error", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)"])
            exchange.status = UInt(response.status)
            exchange.bytesOut = response.body.utf8.count
            self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .upstreamError, reason: rejection.code, exchange: exchange)
            self.write(response, keepAlive: exchange.keepAlive, context: context)
        case .endStream(let rejection):
            exchange.log.error("upstream stream ended by the gateway", metadata: ["outcome": "upstream_error", "code": "\(rejection.code)", "reason": "\(rejection.logReason)"])
            exchange.writeErrorEvent(rejection, writer: &self.writer, context: context)
            self.abandon(exchange)
            self.exchange = nil
            self.record(exchange.request, resource: exchange.resource, decision: .allowed, outcome: .upstreamError, reason: rejection.code, exchange: exchange)
            self.endResponse(keepAlive: false, context: context)
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
        case .resendWithNonce(let reusable):
            if let lease = exchange.lease {
                lease.handler.sink = nil
                self.upstreamPool(context).release(lease, target: exchange.resource.upstream, reusable: reusable)
                exchange.lease = nil
            }
            exchange.proveAgain()
            self.sendUpstream(exchange, fresh: false, context: context)
        }
    }

    /// Makes sure the response timer fires no later than `deadline`. A timer already armed for
    /// an earlier moment (a previous request's deadline) is kept: it re-arms when it fires.
    /// Never cancelled per request: NIO cancels a scheduled task by scanning every task on the
    /// loop, and a task per request is three allocations.
    private func armResponseTimer(for deadline: NIODeadline, context: ChannelHandlerContext) {
        if let armed = self.responseTimerDeadline, armed <= deadline { return }
        // A later timer (rare: a shorter deadline than before) is left to fire and be ignored.
        self.responseTimerGeneration &+= 1
        let generation = self.responseTimerGeneration
        self.responseTimerDeadline = deadline
        self.responseTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            guard generation == self.responseTimerGeneration else { return }
            self.responseTimer = nil
            self.responseTimerDeadline = nil
            guard let exchange = self.exchange, let context = self.context else { return }
            self.run(exchange.machine.timerFired(now: context.eventLoop.now), exchange, context: context)
        }
    }

    /// Drops the upstream side of an exchange the client will not see finish: its connection
    /// is closed, not returned to the pool.
    func abandon(_ exchange: UpstreamExchange) {
        exchange.lease?.handler.sink = nil
        exchange.lease?.channel.close(promise: nil)
    }
}

// MARK: Upstream response parts

extension GatewayHandler: UpstreamResponseSink {
    func upstreamInterimResponse(_ head: RelayedResponseHead) {
        guard let exchange = self.exchange, let context = self.context else { return }
        let action = exchange.receiveInterim(head, keepAlive: self.machine.keepAlive(exchange.keepAlive), writer: &self.writer, context: context)
        self.run(action, exchange, context: context)
    }

    func upstreamResponseHead(_ head: RelayedResponseHead) {
        guard let exchange = self.exchange, let context = self.context else { return }
        let action = exchange.receiveHead(head, keepAlive: self.machine.keepAlive(exchange.keepAlive), gateway: self.gateway, writer: &self.writer, context: context)
        self.run(action, exchange, context: context)
    }

    func upstreamReadComplete() {
        guard let exchange = self.exchange, exchange.machine.responseStarted, let context = self.context else { return }
        context.flush()
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard let exchange = self.exchange, let context = self.context else { return }
        self.run(exchange.receiveBody(buffer, gateway: self.gateway, writer: &self.writer, context: context), exchange, context: context)
    }

    func upstreamResponseEnd(keepAlive upstreamKeepAlive: Bool) {
        guard let exchange = self.exchange, let context = self.context else { return }
        let action = exchange.receiveEnd(
            upstreamKeepAlive: upstreamKeepAlive, keepAlive: self.machine.keepAlive(exchange.keepAlive), gateway: self.gateway, writer: &self.writer, context: context
        )
        self.run(action, exchange, context: context)
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
