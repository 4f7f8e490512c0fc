import BouncerCore
import NIOCore
import NIOHTTP1

/// Where a `subscriptions/listen` stream's parts go: the client connection's handler.
protocol BridgeStreamSink: AnyObject {
    /// The response head (an event stream) and its first event.
    func bridgeStreamStarted(_ first: String)
    /// One more event, or a keep-alive comment.
    func bridgeStreamEvent(_ text: String)
    /// The stream is over (the upstream closed its own, or it failed).
    func bridgeStreamEnded(outcome: String)
}

/// One `subscriptions/listen` of a 2026-07-28 client, served from a legacy upstream: the
/// upstream session the user's requests use (``BridgeSessions``), `resources/subscribe` for
/// each requested URI the upstream can subscribe to, and that session's GET stream, whose
/// list-changed and resource-updated notifications go to the client tagged with the
/// subscription id, within the honoured filter, with keep-alive comments between. The client
/// closing its stream unsubscribes and closes the GET stream (the session stays: the user's
/// requests share it). Lives on the client connection's event loop.
final class BridgeSubscription {
    let subscriptionID: JSONValue
    let honoured: SubscriptionFilter
    private let bridge: ProtocolBridge
    private let gateway: Gateway
    private let caller: ProtocolBridge.Caller
    private let key: BridgeSessions.Key
    private let session: BridgeSessions.Held
    /// Nil when the upstream keeps no stream for its sessions (405): only keep-alives then.
    private let stream: BridgeUpstreamCall?
    private let eventLoop: any EventLoop
    private weak var sink: (any BridgeStreamSink)?
    private var ended = false

    init(
        subscriptionID: JSONValue, honoured: SubscriptionFilter, bridge: ProtocolBridge, gateway: Gateway, caller: ProtocolBridge.Caller, key: BridgeSessions.Key,
        session: BridgeSessions.Held, stream: BridgeUpstreamCall?, eventLoop: any EventLoop
    ) {
        self.subscriptionID = subscriptionID
        self.honoured = honoured
        self.bridge = bridge
        self.gateway = gateway
        self.caller = caller
        self.key = key
        self.session = session
        self.stream = stream
        self.eventLoop = eventLoop
    }

    private var keepalive: TimeAmount { .seconds(Int64(self.bridge.settings.keepaliveSeconds)) }

    /// Starts writing to `sink`: the acknowledgment, then what the upstream says.
    func run(_ sink: some BridgeStreamSink) {
        self.sink = sink
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.caller.cancellation.arm { bound.eventLoop.execute { bound.value.close(outcome: "client_closed") } }
        sink.bridgeStreamStarted(BridgeMapping.eventStream([self.honoured.acknowledgment(subscriptionID: self.subscriptionID)]))
        self.pump()
    }

    private func pump() {
        guard !self.ended else { return }
        self.bridge.sessions.touch(self.key, serial: self.session.serial, now: .now())
        guard let stream = self.stream else {
            self.eventLoop.assumeIsolated().scheduleTask(in: self.keepalive) {
                self.sink?.bridgeStreamEvent(": keep-alive\n\n")
                self.pump()
            }
            return
        }
        stream.read(within: self.keepalive).assumeIsolated().whenComplete { result in
            guard !self.ended else { return }
            switch result {
            case .success(.message(let message)):
                self.upstream(message)
                self.pump()
            case .success(.idle):
                self.sink?.bridgeStreamEvent(": keep-alive\n\n")
                self.pump()
            case .success(.end):
                // The upstream ended its stream: a graceful end for the client too.
                let result = JSONValue.object(["resultType": .string("complete"), "_meta": .object([SubscriptionFilter.subscriptionIDKey: self.subscriptionID])])
                self.sink?.bridgeStreamEvent(BridgeMapping.eventStream([.object(["jsonrpc": .string("2.0"), "id": self.subscriptionID, "result": result])]))
                self.close(outcome: "upstream_ended")
            case .failure:
                self.close(outcome: "upstream_error")
            }
        }
    }

    /// A message on the upstream's session stream: a notification within the filter goes to
    /// the client; a request for the client (no request of this client is under way to carry
    /// it) is answered -32601.
    private func upstream(_ message: JSONValue) {
        if let relayed = self.honoured.relay(message, subscriptionID: self.subscriptionID) {
            self.sink?.bridgeStreamEvent(BridgeMapping.eventStream([relayed]))
        } else if let id = message["id"], let method = message["method"]?.stringValue {
            let reply = method == "ping"
                ? BridgeUpstreamMessage.reply(id: id, result: .object([:]))
                : BridgeUpstreamMessage.replyError(id: id, code: JSONRPCErrorCode.methodNotFound, message: "\(method) is not relayed on a subscription stream")
            self.sendUpstream(reply)
        }
    }

    /// Ends the subscription once: the GET stream closed, each subscribed URI unsubscribed, the
    /// client's stream ended (unless the client is the one that left).
    func close(outcome: String) {
        guard !self.ended else { return }
        self.ended = true
        self.caller.cancellation.disarm()
        self.stream?.close()
        for uri in self.honoured.resourceSubscriptions {
            let unsubscribe = JSONValue.object([
                "jsonrpc": .string("2.0"), "id": self.bridge.nextUpstreamID(), "method": .string("resources/unsubscribe"), "params": .object(["uri": .string(uri)]),
            ])
            self.sendUpstream(unsubscribe)
        }
        self.bridge.events.bridge(.listenEnded, resource: self.caller.resource.policy.path, subject: self.caller.binding.subject, details: [
            "request_id": .string(self.caller.requestID), "reason": .string(outcome),
        ])
        if outcome != "client_closed" { self.sink?.bridgeStreamEnded(outcome: outcome) }
    }

    /// The gateway's own message on the subscription's session.
    private func sendUpstream(_ message: JSONValue) {
        self.bridge.send(
            message, headers: self.session.headers(self.caller.upstreamHeaders), resource: self.caller.resource, requestID: self.caller.requestID,
            gateway: self.gateway, eventLoop: self.eventLoop
        )
    }
}

@available(*, unavailable)
extension BridgeSubscription: Sendable {}

extension ProtocolBridge {
    /// What a `subscriptions/listen` gets: a subscription to stream, or an answer (a refusal).
    enum Listen: Sendable {
        case stream(NIOLoopBound<BridgeSubscription>)
        case answer(Answer)
    }

    /// Opens a subscription for a checked `subscriptions/listen`: the user's upstream session,
    /// `resources/subscribe` for the requested URIs the upstream can subscribe to, and the
    /// session's GET stream. Runs on the client connection's loop.
    func listen(_ request: BridgedRequest, caller: Caller, gateway: Gateway, eventLoop: any EventLoop) -> EventLoopFuture<Listen> {
        guard let id = request.id else {
            return eventLoop.makeSucceededFuture(.answer(.error(JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: subscriptions/listen is a request", id: nil))))
        }
        guard let requested = SubscriptionFilter(requested: request.params?["notifications"]) else {
            return eventLoop.makeSucceededFuture(.answer(.error(JSONRPCFailure(
                status: 400, code: JSONRPCErrorCode.invalidParams, message: "Invalid params: notifications must be a subscription filter (booleans, at most 100 resource URIs)", id: id
            ))))
        }
        let capabilities = request.sessionCapabilities
        let resource = caller.resource
        let key = self.sessionKey(caller, capabilities: capabilities)
        return self.session(key, capabilities: capabilities, resource: resource, credentialHeaders: caller.upstreamHeaders, gateway: gateway, eventLoop: eventLoop)
            .flatMap { held in
                self.subscribe(requested.resourceSubscriptions, held: held, caller: caller, gateway: gateway, eventLoop: eventLoop).flatMap { subscribed in
                    self.post(nil, headers: held.headers(caller.upstreamHeaders), resource: resource, gateway: gateway, eventLoop: eventLoop).assumeIsolated().map { call, head -> Listen in
                        let stream: BridgeUpstreamCall?
                        if head.status == .ok, head.headers.first(name: "Content-Type")?.hasPrefixIgnoringASCIICase("text/event-stream") == true {
                            stream = call
                        } else {
                            call.close()
                            if head.status == .conflict {
                                return .answer(.error(JSONRPCFailure(
                                    status: 409, code: JSONRPCErrorCode.invalidRequest,
                                    message: "Conflict: this user listens to this MCP server already (a legacy server keeps one stream per session)", id: id
                                ), outcome: "listen_conflict", upstreamVersion: held.version))
                            }
                            stream = nil
                        }
                        let honoured = stream == nil ? SubscriptionFilter() : requested.honoured(byUpstream: held.initializeResult, subscribed: subscribed)
                        self.events.bridge(.listening, resource: resource.policy.path, subject: caller.binding.subject, details: [
                            "request_id": .string(caller.requestID), "honoured": honoured.json, "upstream_version": .string(held.version),
                        ])
                        let subscription = BridgeSubscription(
                            subscriptionID: id, honoured: honoured, bridge: self, gateway: gateway, caller: caller, key: key, session: held, stream: stream, eventLoop: eventLoop
                        )
                        return .stream(NIOLoopBound(subscription, eventLoop: eventLoop))
                    }.nonisolated()
                }
            }
            .flatMapErrorThrowing { error in .answer(Self.upstreamFailure(error, id: id)) }
    }

    /// `resources/subscribe` for each URI, when the upstream announced `resources.subscribe`;
    /// the URIs it accepted.
    private func subscribe(_ uris: [String], held: BridgeSessions.Held, caller: Caller, gateway: Gateway, eventLoop: any EventLoop) -> EventLoopFuture<[String]> {
        guard !uris.isEmpty, held.initializeResult["capabilities"]?["resources"]?["subscribe"] == .bool(true) else { return eventLoop.makeSucceededFuture([]) }
        let attempts = uris.map { uri -> EventLoopFuture<String?> in
            let id = self.nextUpstreamID()
            let message = JSONValue.object(["jsonrpc": .string("2.0"), "id": id, "method": .string("resources/subscribe"), "params": .object(["uri": .string(uri)])])
            return self.post(message, headers: held.headers(caller.upstreamHeaders), resource: caller.resource, gateway: gateway, eventLoop: eventLoop)
                .flatMap { call, _ in
                    self.response(to: id, from: call, gateway: gateway).assumeIsolated().always { _ in call.close() }
                        .map { response in response?["result"] != nil ? uri : nil }.nonisolated()
                }
                .recover { _ in nil }
        }
        return EventLoopFuture.whenAllSucceed(attempts, on: eventLoop).map { $0.compactMap { $0 } }
    }
}
