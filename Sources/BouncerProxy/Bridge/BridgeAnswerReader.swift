import BouncerCore
import Logging
import NIOCore
import NIOHTTP1

/// Reads a bridged call's answer from the legacy upstream, message by message, until the
/// client can be answered: the response (completed for 2026-07-28), or a request for the
/// client's input, which parks the call. Every message first meets the same inspector as a
/// legacy client's exchange (lists filtered to the token, tools compared with their pins,
/// server-to-client requests judged by the guard and, when blocked, answered by the gateway).
/// The gateway answers `ping` itself. Progress notifications, and log messages at or above the
/// level the request asked for, go to the client with the result (an event stream, when it
/// accepts one): in order, not as they happen. Lives on the call's event loop.
final class BridgeAnswerReader {
    private let call: BridgeCall
    private let clientID: JSONValue
    private let caller: ProtocolBridge.Caller
    private let bridge: ProtocolBridge
    private let gateway: Gateway
    private var inspector: ResponseInspector
    private var serverRequests = 0
    private var notifications: [JSONValue] = []
    /// Notifications kept for the client per answer; more are dropped.
    private static let maxNotifications = 256

    init(call: BridgeCall, clientID: JSONValue, caller: ProtocolBridge.Caller, bridge: ProtocolBridge, gateway: Gateway) {
        self.call = call
        self.clientID = clientID
        self.caller = caller
        self.bridge = bridge
        self.gateway = gateway
        let body = JSONRPCBody(messages: [.request(id: call.upstreamID, method: call.method, params: nil)], isBatch: false)
        self.inspector = ResponseInspector(for: body, policy: call.resource.policy, granted: caller.granted, protocolVersion: call.session.version)
    }

    private var timeout: TimeAmount { .seconds(self.gateway.policy.limits.upstreamResponseTimeoutSeconds) }

    /// The answer for the client, once the upstream gave one. A client that leaves first
    /// cancels the upstream call.
    func read(_ connection: BridgeUpstreamCall) -> EventLoopFuture<ProtocolBridge.Answer> {
        let loop = connection.eventLoop
        let bound = NIOLoopBound(connection, eventLoop: loop)
        let (bridge, call, gateway) = (self.bridge, self.call, self.gateway)
        self.caller.cancellation.arm {
            loop.execute {
                bound.value.close()
                bridge.cancel(call, reason: "the client closed its request", gateway: gateway, eventLoop: loop)
            }
        }
        return self.pump(connection).assumeIsolated().always { _ in self.caller.cancellation.disarm() }.map { answer in self.withNotifications(answer) }.nonisolated()
    }

    private func pump(_ connection: BridgeUpstreamCall) -> EventLoopFuture<ProtocolBridge.Answer> {
        connection.next(within: self.timeout).assumeIsolated().flatMap { message in
            guard let message else {
                return connection.eventLoop.makeSucceededFuture(self.failure("the MCP server ended its answer without a response"))
            }
            guard let inspected = self.inspect(message, connection: connection) else {
                return self.serverRequests > UpstreamExchange.maxServerRequestsPerResponse ? self.flooded(connection) : self.pump(connection)
            }
            let kind = BridgeUpstreamMessage.classify(inspected, upstreamID: self.call.upstreamID)
            if self.gateway.logger.logLevel <= .trace {
                self.gateway.logger.trace("bridge: upstream message", metadata: ["request_id": "\(self.call.requestID)", "kind": "\(kind.label)"])
            }
            switch kind {
            case .final(let result, let error):
                connection.close()
                return connection.eventLoop.makeSucceededFuture(self.answer(result: result, error: error, eventLoop: connection.eventLoop))
            case .ping(let id):
                guard self.countServerRequest() else { return self.flooded(connection) }
                self.reply(BridgeUpstreamMessage.reply(id: id, result: .object([:])), connection: connection)
                return self.pump(connection)
            case .unsupported(let id, let method):
                guard self.countServerRequest() else { return self.flooded(connection) }
                self.reply(BridgeUpstreamMessage.replyError(id: id, code: JSONRPCErrorCode.methodNotFound, message: "\(method) is not relayed to a 2026-07-28 client"), connection: connection)
                return self.pump(connection)
            case .input(let id, let method, let params):
                return self.input(id: id, method: method, params: params, connection: connection)
            case .progress(let notification):
                self.keep(notification)
                return self.pump(connection)
            case .log(let notification):
                if BridgeMapping.relaysLog(notification, requested: self.caller.logLevel) { self.keep(notification) }
                return self.pump(connection)
            case .ignored:
                return self.pump(connection)
            }
        }.flatMapErrorThrowing { error in
            connection.close()
            return ProtocolBridge.upstreamFailure(error, id: self.clientID)
        }.nonisolated()
    }

    /// One more request of the upstream's in this answer; false past the bound (an upstream
    /// asking without end gets no more answers, and the client a 502).
    private func countServerRequest() -> Bool {
        self.serverRequests += 1
        return self.serverRequests <= UpstreamExchange.maxServerRequestsPerResponse
    }

    private func flooded(_ connection: BridgeUpstreamCall) -> EventLoopFuture<ProtocolBridge.Answer> {
        connection.close()
        self.bridge.cancel(self.call, reason: "too many requests in one answer", gateway: self.gateway, eventLoop: connection.eventLoop)
        let message = "the MCP server sent more requests for the client than the gateway relays in one answer (\(UpstreamExchange.maxServerRequestsPerResponse))"
        return connection.eventLoop.makeSucceededFuture(self.failure(message))
    }

    private func keep(_ notification: JSONValue) {
        if self.notifications.count < Self.maxNotifications { self.notifications.append(notification) }
    }

    /// A successful answer with the notifications before it, as an event stream, when there
    /// are some and the client takes one.
    private func withNotifications(_ answer: ProtocolBridge.Answer) -> ProtocolBridge.Answer {
        guard !self.notifications.isEmpty, self.caller.acceptsEventStream, answer.status == 200, let body = answer.body,
              let message = try? JSONParser(maxDepth: 128).parse(body) else { return answer }
        var streamed = answer
        streamed.body = BridgeMapping.eventStream(self.notifications + [message])
        streamed.contentType = "text/event-stream"
        return streamed
    }

    /// The message after the inspector: nil when it is not to go further (a blocked request,
    /// already answered upstream; a message that cannot be read).
    private func inspect(_ message: JSONValue, connection: BridgeUpstreamCall) -> JSONValue? {
        let origin = ServerRequestOrigin(
            resource: self.call.resource, session: self.call.session.id, subject: self.call.caller.subject, requestID: self.call.requestID,
            upstreamHeaders: self.call.headers
        )
        let verdict = self.inspector.inspect(Array(message.serialized.utf8)) { self.gateway.serverRequests.admitElicitation(origin) }
        let report = self.inspector.takeReport()
        if !report.isEmpty {
            self.serverRequests += report.serverRequests.count
            guard self.serverRequests <= UpstreamExchange.maxServerRequestsPerResponse else { return nil }
            self.gateway.act(on: report, resource: self.call.resource, origin: origin, on: connection.eventLoop)
        }
        switch verdict {
        case .pass: return message
        case .replace(let text): return try? JSONParser(maxDepth: 128).parse(text)
        case .drop: return nil
        }
    }

    private func answer(result: JSONValue?, error: JSONValue?, eventLoop: any EventLoop) -> ProtocolBridge.Answer {
        let version = self.call.session.version
        if let error, error["code"]?.int64Value == Int64(JSONRPCErrorCode.urlElicitationRequired), BridgeMapping.inputRequiredMethods.contains(self.call.method) {
            return self.urlElicitations(error, eventLoop: eventLoop)
        }
        if let error {
            let body = JSONValue.object(["jsonrpc": .string("2.0"), "id": self.clientID, "error": BridgeMapping.mapError(error)])
            return ProtocolBridge.Answer(status: 200, body: body.serialized, outcome: "answered", upstreamVersion: version)
        }
        let completed = BridgeMapping.completeResult(result ?? .object([:]), method: self.call.method, variesByCaller: self.call.variesByCaller)
        return ProtocolBridge.result(completed, id: self.clientID, outcome: "answered", session: self.call.session)
    }

    private func failure(_ reason: String) -> ProtocolBridge.Answer {
        .error(JSONRPCFailure(status: 502, code: JSONRPCErrorCode.upstreamError, message: "Bad Gateway: \(reason)", id: self.clientID), outcome: "upstream_error", upstreamVersion: self.call.session.version)
    }

    /// The gateway's own answer to a request the upstream made on the call's stream.
    private func reply(_ message: JSONValue, connection: BridgeUpstreamCall) {
        self.bridge.send(message, on: self.call, gateway: self.gateway, eventLoop: connection.eventLoop)
    }

    /// A request for the client's input: parked, and the client asked through an
    /// `InputRequiredResult`; or refused when the client cannot be asked.
    private func input(id: JSONValue, method: String, params: JSONValue?, connection: BridgeUpstreamCall) -> EventLoopFuture<ProtocolBridge.Answer> {
        let loop = connection.eventLoop
        guard BridgeMapping.inputRequiredMethods.contains(self.call.method) else {
            self.reply(BridgeUpstreamMessage.replyError(id: id, code: JSONRPCErrorCode.methodNotFound, message: "the client cannot be asked for input during \(self.call.method)"), connection: connection)
            return self.pump(connection)
        }
        guard let capability = BridgeMapping.neededCapability(method), self.call.declaredCapabilities.contains(capability) else {
            let capability = BridgeMapping.neededCapability(method) ?? method
            self.reply(BridgeUpstreamMessage.replyError(id: id, code: JSONRPCErrorCode.methodNotFound, message: "the client did not declare \(capability)"), connection: connection)
            connection.close()
            self.bridge.cancel(self.call, reason: "the client did not declare \(capability)", gateway: self.gateway, eventLoop: loop)
            return loop.makeSucceededFuture(.error(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.missingClientCapability, message: "Missing required client capability: \(capability)", id: self.clientID,
                data: .object(["requiredCapabilities": .object([capability: .object([:])])])
            ), outcome: "missing_capability", upstreamVersion: self.call.session.version))
        }
        let waiting = ParkedCalls.Waiting.upstreamRequest(NIOLoopBound(connection, eventLoop: loop), id: id)
        switch self.bridge.park(self.call, waiting: waiting, serverMethod: method, eventLoop: loop, gateway: self.gateway) {
        case .success(let state):
            let result = BridgeMapping.inputRequiredResult(method: method, params: params, requestState: state)
            return loop.makeSucceededFuture(ProtocolBridge.result(result, id: self.clientID, outcome: "parked", session: self.call.session))
        case .failure(let failure):
            connection.close()
            self.bridge.cancel(self.call, reason: failure.message, gateway: self.gateway, eventLoop: loop)
            return loop.makeSucceededFuture(.error(JSONRPCFailure(status: failure.status, code: failure.code, message: failure.message, id: self.clientID), outcome: "park_refused"))
        }
    }
}

extension BridgeAnswerReader {
    /// A 2025-11-25 `-32042` (the call needs URL-mode elicitations completed first) as a
    /// 2026-07-28 client reads it: an `InputRequiredResult` with one URL-mode
    /// `elicitation/create` per elicitation the error names, each origin judged by
    /// `elicitation.url_allowed_origins`; the client's retry (all accepted) sends the request
    /// again. Malformed or refused: the client gets the refusal.
    fileprivate func urlElicitations(_ error: JSONValue, eventLoop: any EventLoop) -> ProtocolBridge.Answer {
        let elicitations = error["data"]?["elicitations"]?.arrayValue ?? []
        guard !elicitations.isEmpty, elicitations.count <= 8 else {
            return self.failure("the MCP server asked for URL-mode elicitations it did not describe")
        }
        let origin = ServerRequestOrigin(
            resource: self.call.resource, session: self.call.session.id, subject: self.call.caller.subject, requestID: self.call.requestID,
            upstreamHeaders: self.call.headers
        )
        var requests: [String: JSONValue] = [:]
        var reviews: [ServerRequestReview] = []
        for (index, elicitation) in elicitations.enumerated() {
            guard case .object(var params) = elicitation else { return self.failure("the MCP server sent a URL-mode elicitation that is not an object") }
            params["mode"] = .string("url")
            let key = "url-\(index)"
            let review = ServerRequestGuard.judge(
                method: ServerRequestGuard.elicitation, params: .object(params), policy: self.call.resource.policy.serverRequests, form: .inputRequired,
                id: self.clientID, key: key
            ) { self.gateway.serverRequests.admitElicitation(origin) }
            reviews.append(review)
            requests[key] = .object(["method": .string(ServerRequestGuard.elicitation), "params": .object(params)])
        }
        self.gateway.judged(reviews, origin: origin, logger: self.gateway.logger, on: eventLoop)
        if let blocked = reviews.first(where: { $0.blocked != nil }) {
            return .error(JSONRPCFailure(status: 200, code: JSONRPCErrorCode.forbidden, message: blocked.clientMessage, id: self.clientID), outcome: "url_elicitation_blocked", upstreamVersion: self.call.session.version)
        }
        guard self.call.declaredCapabilities.contains("elicitation") else {
            return .error(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.missingClientCapability, message: "Missing required client capability: elicitation", id: self.clientID,
                data: .object(["requiredCapabilities": .object(["elicitation": .object(["url": .object([:])])])])
            ), outcome: "missing_capability", upstreamVersion: self.call.session.version)
        }
        switch self.bridge.park(self.call, waiting: .reissue(keys: requests.keys.sorted()), serverMethod: ServerRequestGuard.elicitation, eventLoop: eventLoop, gateway: self.gateway) {
        case .success(let state):
            let result = JSONValue.object(["resultType": .string("input_required"), "inputRequests": .object(requests), "requestState": .string(state)])
            return ProtocolBridge.result(result, id: self.clientID, outcome: "parked", session: self.call.session)
        case .failure(let failure):
            return .error(JSONRPCFailure(status: failure.status, code: failure.code, message: failure.message, id: self.clientID), outcome: "park_refused")
        }
    }
}

@available(*, unavailable)
extension BridgeAnswerReader: Sendable {}
