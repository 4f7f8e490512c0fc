import BouncerCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The protocol bridge: serves a 2026-07-28 client from a legacy upstream (2024-11-05 to
/// 2025-11-25) in the upstream's place. `server/discover` is answered from the upstream's
/// `initialize` result; every other request goes on an upstream session the bridge holds for
/// that user (``BridgeSessions``); a request the upstream makes of the client while it
/// answers (elicitation, sampling, roots) parks the upstream call (``ParkedCalls``) and
/// becomes an `InputRequiredResult` whose sealed `requestState` (``RequestStateSealer``) the
/// client's retry brings back. The message rules are pure (``BridgeMapping``,
/// ``BridgedRequest``, ``BridgeUpstreamMessage``); this type does the IO.
final class ProtocolBridge: Sendable {
    let settings: BridgeSettings
    let sessions: BridgeSessions
    let parked: ParkedCalls
    let sealer: RequestStateSealer
    /// This replica's name in the `requestState`s it seals.
    let replica: String
    let fetcher: HTTPFetcher
    let events: GatewayEvents
    let clock: WallClock
    let sweeper = NIOLockedValueBox<RepeatedTask?>(nil)
    private let upstreamIDs = NIOLockedValueBox<Int64>(0)

    init(settings: BridgeSettings, keys: [SessionKey], fetcher: HTTPFetcher, events: GatewayEvents, clock: WallClock) {
        self.settings = settings
        self.sessions = BridgeSessions(maxSessions: settings.maxSessions)
        self.parked = ParkedCalls(maxParked: settings.maxParkedCalls)
        self.sealer = RequestStateSealer(keys: keys)
        self.replica = settings.replica ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        self.fetcher = fetcher
        self.events = events
        self.clock = clock
    }

    /// What the client gets for one bridged request.
    struct Answer: Sendable {
        var status: Int
        /// The JSON-RPC response; nil for an accepted notification (202).
        var body: String?
        /// What the bridge did, for the request's log line and audit record.
        var outcome: String
        /// The revision the upstream session speaks, once one was used.
        var upstreamVersion: String?
        /// Why it failed, for the log (never the client's to read).
        var reason: String?
        /// `text/event-stream` when notifications go with the result.
        var contentType = "application/json"

        static func error(_ failure: JSONRPCFailure, outcome: String = "refused", upstreamVersion: String? = nil, reason: String? = nil) -> Answer {
            Answer(status: failure.status, body: failure.body, outcome: outcome, upstreamVersion: upstreamVersion, reason: reason)
        }
    }

    /// Everything about the request the bridge needs besides its message.
    struct Caller: Sendable {
        let binding: SessionBinding
        let resource: ResolvedResource
        /// The upstream credential (static header or exchanged token) and trace context.
        let upstreamHeaders: [(String, String)]
        let granted: Set<String>
        let requestID: String
        /// `io.modelcontextprotocol/logLevel` of this request (log messages relayed at or above it).
        let logLevel: String?
        /// The client accepts `text/event-stream`: notifications can go with the result.
        let acceptsEventStream: Bool
        /// Fired by the connection when the client leaves before the answer.
        let cancellation: BridgeCancellation
    }

    func nextUpstreamID() -> JSONValue {
        .string("bridge-\(self.upstreamIDs.withLockedValue { id in id &+= 1; return id })")
    }

    /// Serves one checked 2026-07-28 request.
    func serve(_ request: BridgedRequest, caller: Caller, gateway: Gateway, eventLoop: any EventLoop) -> EventLoopFuture<Answer> {
        if let state = request.requestState {
            return self.resume(request, state: state, caller: caller, gateway: gateway, eventLoop: eventLoop)
        }
        guard let id = request.id else {
            // A 2026-07-28 client's notifications concern its own requests (it cancels one by
            // closing its stream, which the bridge turns into notifications/cancelled with the
            // upstream's id); forwarded, they would name ids the upstream never saw, or
            // capabilities its session never had. Accepted, not forwarded.
            return eventLoop.makeSucceededFuture(Answer(status: 202, body: nil, outcome: "notification_accepted"))
        }
        let capabilities = request.sessionCapabilities
        let resource = caller.resource
        let key = self.sessionKey(caller, capabilities: capabilities)
        return self.session(key, capabilities: capabilities, resource: resource, credentialHeaders: caller.upstreamHeaders, gateway: gateway, eventLoop: eventLoop)
            .flatMap { held in
                if request.method == "server/discover" {
                    let result = BridgeMapping.discoverResult(fromInitialize: held.initializeResult)
                    return eventLoop.makeSucceededFuture(Self.result(result, id: id, outcome: "discover_answered", session: held))
                }
                let call = BridgeCall(
                    resource: resource, key: key, session: held, credentialHeaders: caller.upstreamHeaders, caller: caller.binding, method: request.method,
                    declaredCapabilities: Set(request.declaredCapabilities.keys), requestDigest: request.digest, upstreamID: self.nextUpstreamID(),
                    requestID: caller.requestID, variesByCaller: resource.policy.listFiltering || Self.exchangesTokens(resource)
                )
                return self.forward(request, call: call, clientID: id, caller: caller, retryLostSession: true, gateway: gateway, eventLoop: eventLoop)
            }
            .flatMapErrorThrowing { error in
                Self.upstreamFailure(error, id: id)
            }
    }

    /// The held session a caller's requests with these relayed capabilities share.
    func sessionKey(_ caller: Caller, capabilities: JSONValue) -> BridgeSessions.Key {
        BridgeSessions.Key(
            issuer: caller.binding.issuer, subject: caller.binding.subject, resource: caller.resource.policy.path, upstream: caller.resource.upstream.description,
            capabilities: CanonicalJSON.serialize(capabilities)
        )
    }

    private static func exchangesTokens(_ resource: ResolvedResource) -> Bool {
        if case .tokenExchange = resource.credential { return true }
        return false
    }

    /// Sends the client's request on the session and reads the answer. A session the upstream
    /// lost (404) is opened again, and the request sent again only when it cannot have had an
    /// effect.
    func forward(
        _ request: BridgedRequest, call: BridgeCall, clientID: JSONValue, caller: Caller, retryLostSession: Bool, gateway: Gateway, eventLoop: any EventLoop
    ) -> EventLoopFuture<Answer> {
        let message = request.legacyMessage(upstreamID: call.upstreamID)
        return self.post(message, headers: call.headers, resource: call.resource, gateway: gateway, eventLoop: eventLoop).flatMap { connection, head in
            if head.status == .notFound, call.session.id != nil {
                connection.close()
                self.sessions.forget(call.key, serial: call.session.serial)
                self.events.bridge(.sessionLost, resource: call.resource.policy.path, subject: call.caller.subject, details: ["method": .string(call.method)])
                guard retryLostSession, Self.sideEffectFree.contains(call.method) else {
                    return eventLoop.makeSucceededFuture(Answer.error(JSONRPCFailure(
                        status: 502, code: JSONRPCErrorCode.upstreamError,
                        message: "Bad Gateway: the MCP server lost its session; \(call.method) was not sent again because it may have had an effect", id: clientID
                    ), outcome: "session_lost"))
                }
                return self.session(
                    call.key, capabilities: request.sessionCapabilities, resource: call.resource, credentialHeaders: caller.upstreamHeaders, gateway: gateway, eventLoop: eventLoop
                ).flatMap { held in
                    let again = call.again(upstreamID: self.nextUpstreamID(), session: held)
                    return self.forward(request, call: again, clientID: clientID, caller: caller, retryLostSession: false, gateway: gateway, eventLoop: eventLoop)
                }
            }
            guard (200..<300).contains(head.status.code) || head.headers.first(name: "Content-Type")?.hasPrefixIgnoringASCIICase("application/json") == true else {
                connection.close()
                return eventLoop.makeSucceededFuture(Answer.error(JSONRPCFailure(
                    status: 502, code: JSONRPCErrorCode.upstreamError, message: "Bad Gateway: the MCP server answered \(head.status.code)", id: clientID
                ), outcome: "upstream_error", upstreamVersion: call.session.version))
            }
            let reader = BridgeAnswerReader(call: call, clientID: clientID, caller: caller, bridge: self, gateway: gateway)
            return reader.read(connection)
        }
    }

    /// Requests sent again on a new session when the upstream lost theirs: they read, they
    /// change nothing.
    static let sideEffectFree: Set<String> = [
        "tools/list", "prompts/list", "prompts/get", "resources/list", "resources/templates/list", "resources/read", "ping", "completion/complete",
    ]

    static func result(_ result: JSONValue, id: JSONValue?, outcome: String, session: BridgeSessions.Held?) -> Answer {
        let body = JSONValue.object(["jsonrpc": .string("2.0"), "id": id ?? .null, "result": result])
        return Answer(status: 200, body: body.serialized, outcome: outcome, upstreamVersion: session?.version)
    }

    /// An upstream that could not be reached or broke the protocol: 502 (504 on a timeout).
    static func upstreamFailure(_ error: any Error, id: JSONValue?) -> Answer {
        let timedOut = (error as? BridgeUpstreamError)?.code == .timeout
        // The answers a forwarded request gets when its upstream fails, word for word.
        let rejection: GatewayRejection = timedOut ? .upstreamTimeout(id: id) : .upstreamUnavailable("\(error)", id: id)
        let response = rejection.response(resource: nil)
        return Answer(status: response.status, body: response.body, outcome: timedOut ? "upstream_timeout" : "upstream_error", reason: "\(error)")
    }
}
