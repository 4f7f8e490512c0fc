import BouncerCore
import Logging
import NIOCore
import NIOHTTP1

// MARK: Reading requests

extension GatewayHandler {
    /// Field lines a request head may have: far more than any client sends (browsers send
    /// about 20), few enough that a head of tiny fields is refused early.
    static let maxFields = 256

    /// The codec's bound on a head's bytes: `max_header_bytes` counts the target, names and
    /// values (``RequestHeadFacts/headerBytes``, refused with 431 by ``Enforcement/checkHead(_:method:isHTTP11OrLater:target:limits:)``);
    /// the request line's method and version and each line's framing come on top.
    static func maxHeadBytes(_ limits: GatewayLimits) -> Int {
        limits.maxHeaderBytes + 1024
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        self.bytesInRead += bytes.readableBytes
        self.reader.append(bytes)
        self.readRequests(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let parsed = self.bytesInRead
        self.bytesInRead = 0
        self.run(self.machine.readComplete(parsedBytes: parsed, now: context.eventLoop.now), context: context)
        context.fireChannelReadComplete()
    }

    /// Hands every part the bytes read so far make to the connection's machine, in order; a
    /// refusal of the codec ends the reading (the connection is answered and closed).
    private func readRequests(context: ChannelHandlerContext) {
        while true {
            let part: ClientPart
            let delivery: ClientConnectionStateMachine.Delivery
            do {
                guard let event = try self.reader.next() else { return }
                switch event {
                case .head(let head):
                    delivery = self.machine.partReceived(.head(bytes: head.bytes.readableBytes))
                    // What the enforcement stages read of the head, gathered once, as it
                    // arrives; values the client sent on its previous request are its Strings.
                    let facts = RequestHeadFacts(head, reusing: self.previousFacts)
                    self.previousFacts = facts
                    part = .head(ClientHead(head), facts)
                case .body(let buffer):
                    delivery = self.machine.partReceived(.body(bytes: buffer.readableBytes))
                    part = .body(buffer)
                case .end:
                    delivery = self.machine.partReceived(.end)
                    part = .end
                }
            } catch {
                let action = self.machine.parserError(GatewayRejection(refusing: error), now: context.eventLoop.now)
                if case .none = action { return }
                self.connectionLog(method: "-").info("malformed HTTP request", metadata: ["error": "\(error)"])
                return self.run(action, context: context)
            }
            switch delivery {
            case .handle:
                self.handle(part, context: context)
            case .queue:
                // A pipelined request: its turn comes when the current response is done.
                self.pipelined.append(part)
            case .drop:
                // The answer is out and the connection is closing: nothing more is served.
                break
            }
        }
    }

    /// Reading pauses while pipelined requests wait, so a client cannot queue without bound.
    func read(context: ChannelHandlerContext) {
        if self.machine.read() { context.read() }
    }

    /// Called when a response is complete: serves the requests that were pipelined behind it.
    func servePipelined(context: ChannelHandlerContext) {
        guard !self.servingPipelined else { return }
        self.servingPipelined = true
        defer { self.servingPipelined = false }
        loop: while true {
            switch self.machine.takePipelined() {
            case .take:
                guard let part = self.pipelined.popFirst() else { break loop }
                self.handle(part, context: context)
            case .wait:
                break loop
            case .discardAll:
                self.pipelined.removeAll()
                break loop
            }
        }
        if self.machine.releaseHeldRead() { context.read() }
    }

    private func handle(_ part: ClientPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head, let facts):
            self.receivedHead(head, facts: facts, context: context)
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

    private func receivedHead(_ head: ClientHead, facts: RequestHeadFacts, context: ChannelHandlerContext) {
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
        // Behind a TLS-terminating proxy, the certificate it verified (RFC 9440), from it only.
        log.clientCertificate = self.peerIsTrustedProxy && self.gateway.policy.clientCertificateHeader
            ? ClientCertField.thumbprint(facts.clientCert, count: facts.clientCertCount) : self.clientCertificateThumbprint

        let target: Enforcement.Target
        switch Enforcement.checkHead(facts, method: head.method.rawValue, isHTTP11OrLater: head.version.isHTTP11OrLater, target: head.uri, limits: self.gateway.policy.limits) {
        case .failure(let rejection):
            self.request = ClientRequest(head: head, facts: facts, query: nil, route: .notFound, log: log, startedAt: context.eventLoop.now, peer: peer)
            self.run(self.machine.refused(rejection, now: context.eventLoop.now), context: context)
            return
        case .success(let admitted):
            target = admitted
        }
        let route = self.gateway.router.route(target.path)
        if case .resource(let resource) = route {
            log.resource = resource.policy.path
        }
        self.request = ClientRequest(head: head, facts: facts, query: target.query, route: route, log: log, startedAt: context.eventLoop.now, peer: peer)
        if Enforcement.answersContinue(facts, isHTTP11OrLater: head.version.isHTTP11OrLater) {
            // Oversized bodies are still refused with 413 as they arrive.
            self.writer.writeContinue(context: context)
        }
    }
}

/// A part of a client's request, as the connection's machine takes it: a head with its facts
/// (gathered when it arrived), body bytes, the end.
enum ClientPart {
    case head(ClientHead, RequestHeadFacts)
    case body(ByteBuffer)
    case end
}
