import BouncerCore
import Logging
import NIOCore
import NIOHTTP1

/// Multi round-trip results: a parked upstream call, the client's retry that resumes it, and
/// its expiry.
extension ProtocolBridge {
    /// Parks `call` until the client's retry: on the upstream's request `serverRequestID`
    /// (its stream kept open), or to send the request again (`.reissue`). The sealed
    /// `requestState` for the client, or why it cannot be parked.
    func park(
        _ call: BridgeCall, waiting: ParkedCalls.Waiting, serverMethod: String, eventLoop loop: any EventLoop, gateway: Gateway
    ) -> Result<String, JSONRPCFailure> {
        var random = SystemRandomNumberGenerator()
        let parkID = Hex.encode((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &random) })
        let parkedCall = ParkedCall(
            binding: call.caller, replica: self.replica, parkID: parkID, requestDigest: call.requestDigest,
            expiresAt: self.clock.seconds() + Int64(self.settings.inputTimeoutSeconds)
        )
        guard let state = self.sealer.seal(parkedCall) else {
            return .failure(JSONRPCFailure(status: 500, code: JSONRPCErrorCode.internalError, message: "Internal error: the request state cannot be sealed", id: nil))
        }
        let expiry = loop.scheduleTask(in: .seconds(Int64(self.settings.inputTimeoutSeconds))) { [weak self] in
            guard let self, let parked = self.parked.take(parkID) else { return }
            self.events.bridge(.expired, resource: call.resource.policy.path, subject: call.caller.subject, details: [
                "request_id": .string(call.requestID), "method": .string(call.method), "input_method": .string(serverMethod),
            ])
            guard case .upstreamRequest(let connection, _) = parked.waiting else { return }
            connection.value.close()
            self.cancel(call, reason: "the client did not answer within \(self.settings.inputTimeoutSeconds) s", gateway: gateway, eventLoop: loop)
        }
        guard self.parked.park(parkID, ParkedCalls.Parked(waiting: waiting, call: call, serverMethod: serverMethod, expiry: expiry)) else {
            expiry.cancel()
            return .failure(JSONRPCFailure(
                status: 503, code: JSONRPCErrorCode.upstreamError, message: "Service Unavailable: too many calls are waiting for input (bridge.max_parked_calls)", id: nil
            ))
        }
        self.events.bridge(.parked, resource: call.resource.policy.path, subject: call.caller.subject, details: [
            "request_id": .string(call.requestID), "method": .string(call.method), "input_method": .string(serverMethod), "upstream_version": .string(call.session.version),
        ])
        return .success(state)
    }

    /// The client's retry: the state opened and checked (seal, owner, expiry, same request,
    /// this replica), the parked call taken (once), the client's answer delivered to the
    /// upstream's request (or the request sent again after URL-mode elicitations), and the call
    /// read on to its result or its next question. Nothing reaches the upstream for a state
    /// that is refused.
    func resume(_ request: BridgedRequest, state: String, caller: Caller, gateway: Gateway, eventLoop: any EventLoop) -> EventLoopFuture<Answer> {
        let refused = { (reason: String, code: String) -> EventLoopFuture<Answer> in
            self.events.bridge(.resumeRefused, resource: caller.resource.policy.path, subject: caller.binding.subject, details: [
                "request_id": .string(caller.requestID), "reason": .string(code),
            ])
            return eventLoop.makeSucceededFuture(.error(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.invalidParams, message: "Invalid params: requestState \(reason)", id: request.id
            ), outcome: "resume_refused.\(code)"))
        }
        let opened: ParkedCall
        switch self.sealer.open(state, caller: caller.binding, requestDigest: request.digest, replica: self.replica, now: self.clock.seconds()) {
        case .success(let call): opened = call
        case .failure(let refusal): return refused(Self.explain(refusal), refusal.code)
        }
        guard let parked = self.parked.take(opened.parkID) else {
            return refused("was used already, or its call expired", "replayed")
        }
        parked.expiry.cancel()
        let call = parked.call
        let clientID = request.id ?? .null
        switch parked.waiting {
        case .upstreamRequest(let connection, let serverRequestID):
            let loop = connection.eventLoop
            guard let answer = request.inputResponses[BridgeMapping.inputKey] else {
                loop.execute { connection.value.close() }
                self.cancel(call, reason: "the client's retry did not answer", gateway: gateway, eventLoop: loop)
                return refused("is not answered: inputResponses has no '\(BridgeMapping.inputKey)'", "unanswered")
            }
            self.resumed(call, parked: parked, caller: caller)
            return loop.flatSubmit {
                self.send(BridgeUpstreamMessage.reply(id: serverRequestID, result: answer), on: call, gateway: gateway, eventLoop: loop)
                return BridgeAnswerReader(call: call, clientID: clientID, caller: caller, bridge: self, gateway: gateway).read(connection.value)
            }.hop(to: eventLoop)
        case .reissue(let keys):
            guard keys.allSatisfy({ request.inputResponses[$0]?["action"] == .string("accept") }) else {
                return eventLoop.makeSucceededFuture(.error(JSONRPCFailure(
                    status: 200, code: JSONRPCErrorCode.invalidRequest, message: "Invalid request: the MCP server needs the URL-mode elicitation completed, and it was not accepted",
                    id: clientID
                ), outcome: "url_elicitation_declined", upstreamVersion: call.session.version))
            }
            self.resumed(call, parked: parked, caller: caller)
            let again = call.again(upstreamID: self.nextUpstreamID(), session: call.session)
            return self.forward(request, call: again, clientID: clientID, caller: caller, retryLostSession: true, gateway: gateway, eventLoop: eventLoop)
        }
    }

    private func resumed(_ call: BridgeCall, parked: ParkedCalls.Parked, caller: Caller) {
        self.events.bridge(.resumed, resource: call.resource.policy.path, subject: call.caller.subject, details: [
            "request_id": .string(caller.requestID), "parked_request_id": .string(call.requestID), "input_method": .string(parked.serverMethod),
        ])
    }

    static func explain(_ refusal: RequestStateRefusal) -> String {
        switch refusal {
        case .malformed, .unknownKey, .forged: return "is not one this gateway issued"
        case .otherCaller: return "belongs to another user, client or resource"
        case .expired: return "has expired"
        case .otherRequest: return "was issued for another request"
        case .otherReplica(let replica): return "is held by replica '\(replica)'; send the retry there (balance by the Authorization header)"
        }
    }

    /// A message of the gateway's own to the upstream on the call's session (an answer to the
    /// upstream's request, a cancellation); failures are logged, not the client's.
    func send(_ message: JSONValue, on call: BridgeCall, gateway: Gateway, eventLoop: any EventLoop) {
        self.send(message, headers: call.headers, resource: call.resource, requestID: call.requestID, gateway: gateway, eventLoop: eventLoop)
    }

    /// The same, on a session with these headers (a subscription's, which is no call).
    func send(_ message: JSONValue, headers: [(String, String)], resource: ResolvedResource, requestID: String, gateway: Gateway, eventLoop: any EventLoop) {
        self.post(message, headers: headers, resource: resource, gateway: gateway, eventLoop: eventLoop).whenComplete { result in
            switch result {
            case .success(let (connection, head)):
                connection.close()
                if !(200..<300).contains(head.status.code) {
                    gateway.logger.warning("the MCP server refused the bridge's message", metadata: ["request_id": "\(requestID)", "status": "\(head.status.code)"])
                }
            case .failure(let error):
                gateway.logger.warning("the bridge's message did not reach the MCP server", metadata: ["request_id": "\(requestID)", "reason": "\(error)"])
            }
        }
    }

    /// Tells the upstream the call is abandoned (`notifications/cancelled`).
    func cancel(_ call: BridgeCall, reason: String, gateway: Gateway, eventLoop: any EventLoop) {
        let cancelled = JSONValue.object([
            "jsonrpc": .string("2.0"), "method": .string("notifications/cancelled"),
            "params": .object(["requestId": call.upstreamID, "reason": .string(reason)]),
        ])
        self.send(cancelled, on: call, gateway: gateway, eventLoop: eventLoop)
    }
}
