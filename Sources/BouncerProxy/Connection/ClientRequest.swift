import BouncerCore
import NIOCore
import NIOHTTP1

/// One client request, from its accepted head to its response: what the enforcement stages
/// read, and what its record (``RequestRecorder``) needs, gathered as the request goes. An
/// object, so a step of the decision moves one reference, not a dozen fields.
final class ClientRequest {
    private(set) var head: ClientHead
    /// What the enforcement stages read of the head, gathered in one pass.
    let facts: RequestHeadFacts
    /// The request target's query, split off once.
    let query: Substring?
    let route: Route<ResolvedResource>
    var body: ByteBuffer?
    var log: RequestLog
    let startedAt: NIODeadline
    var token: String?
    /// The token came as `Authorization: DPoP`.
    var tokenIsDPoP = false
    /// How the token was bound (stage 4b), once checked.
    var binding: SenderConstraint.Binding?
    /// A fresh `DPoP-Nonce` for the response (the proof's is aging, or nonces are required).
    var nextNonce: String?
    var claims: AccessTokenClaims?
    /// The token's scopes with those they imply: what the decisions use.
    var granted: Set<String>?
    var trace: RequestTrace?
    var credential = AuditRequest.UpstreamCredential.none
    /// A slot taken in the audit queue (`on_overflow: refuse`), spent by the record.
    var auditSlot = false
    /// Set once the request's outcome is recorded (``RequestRecorder/record(_:resource:decision:outcome:reason:status:bytesOut:exchange:gateway:clientCertificate:)``).
    var recorded = false
    /// The upstream's own session id, from the sealed one the client sent.
    var upstreamSessionID: String?
    /// A 2026-07-28 request to a legacy upstream, as the bridge checked it.
    var bridgedRequest: BridgedRequest?
    /// Cancels the bridged upstream call when the client leaves before its answer.
    var bridgeCancellation: BridgeCancellation?
    /// What the protocol bridge did with the request, when it served it.
    var bridged: (outcome: String, upstreamVersion: String?)?
    /// The client's address: the TCP peer, or what a trusted proxy's headers say.
    let peer: String

    init(head: ClientHead, facts: RequestHeadFacts, query: Substring?, route: Route<ResolvedResource>, log: RequestLog, startedAt: NIODeadline, peer: String) {
        self.head = head
        self.facts = facts
        self.query = query
        self.route = route
        self.log = log
        self.startedAt = startedAt
        self.peer = peer
    }

    /// The request became a long-lived stream: its head and body stop holding the reads they
    /// came in (slices of them), keeping copies of their own size.
    func compact() {
        self.head.compact()
        self.body = self.body?.compacted()
    }

    var resource: ResolvedResource? {
        if case .resource(let resource) = self.route { return resource }
        return nil
    }

    /// Whom a session of this request's belongs to.
    func sessionBinding(_ resource: ResolvedResource) -> SessionBinding? {
        self.claims.map { SessionBinding(resource: resource.policy.path, claims: $0, token: self.token) }
    }
}

@available(*, unavailable)
extension ClientRequest: Sendable {}
