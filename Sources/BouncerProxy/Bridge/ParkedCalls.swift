import BouncerCore
import NIOConcurrencyHelpers
import NIOCore

/// What a bridged call needs across its rounds: where it goes, for whom, and how the
/// upstream knows it.
struct BridgeCall: Sendable {
    let resource: ResolvedResource
    let key: BridgeSessions.Key
    let session: BridgeSessions.Held
    /// The upstream credential and trace context of the request.
    let credentialHeaders: [(String, String)]
    let caller: SessionBinding
    /// The client's request as the bridge checked it (its method, declared capabilities, log level).
    let method: String
    let declaredCapabilities: Set<String>
    let requestDigest: String
    /// The gateway's id for the request on the upstream session.
    let upstreamID: JSONValue
    /// The gateway's request id of the round that started it (logs and audit records).
    let requestID: String
    /// Lists differ between callers: filtered to the token, or served with an exchanged token.
    let variesByCaller: Bool

    /// The headers of the call's requests on its session.
    var headers: [(String, String)] { self.session.headers(self.credentialHeaders) }

    /// The same call sent again: a new id, on `session` (a new one when the upstream lost its).
    func again(upstreamID: JSONValue, session: BridgeSessions.Held) -> BridgeCall {
        BridgeCall(
            resource: self.resource, key: self.key, session: session, credentialHeaders: self.credentialHeaders, caller: self.caller, method: self.method,
            declaredCapabilities: self.declaredCapabilities, requestDigest: self.requestDigest, upstreamID: upstreamID, requestID: self.requestID,
            variesByCaller: self.variesByCaller
        )
    }
}

/// Upstream calls parked on a server-to-client request while the client answers it through an
/// `InputRequiredResult`, by park id: each taken once (a replayed `requestState` finds
/// nothing), each cancelled upstream when it expires. Shared by the event loops; a parked
/// call's connection is touched only on its own loop. Bounded by `bridge.max_parked_calls`.
final class ParkedCalls: Sendable {
    /// What a parked call waits on.
    enum Waiting: Sendable {
        /// The upstream's request on the call's open stream (its id), which the client's answer
        /// answers.
        case upstreamRequest(NIOLoopBound<BridgeUpstreamCall>, id: JSONValue)
        /// Nothing upstream: the upstream refused the call until the user completed URL-mode
        /// elicitations (`-32042`); the client's retry sends the request again. The keys of
        /// the `inputRequests` the client must answer.
        case reissue(keys: [String])
    }

    struct Parked: Sendable {
        let waiting: Waiting
        let call: BridgeCall
        /// What the upstream asked (`elicitation/create`, ...), for the log and audit trail.
        let serverMethod: String
        let expiry: Scheduled<Void>
    }

    let maxParked: Int
    private let parked = NIOLockedValueBox([String: Parked]())

    init(maxParked: Int) {
        self.maxParked = maxParked
    }

    var count: Int { self.parked.withLockedValue { $0.count } }

    /// Parks `call` under `id`; false when the table is full.
    func park(_ id: String, _ call: Parked) -> Bool {
        self.parked.withLockedValue { parked in
            guard parked.count < self.maxParked else { return false }
            parked[id] = call
            return true
        }
    }

    /// The call parked under `id`, removed: nil when it was taken before or expired.
    func take(_ id: String) -> Parked? {
        self.parked.withLockedValue { $0.removeValue(forKey: id) }
    }
}
