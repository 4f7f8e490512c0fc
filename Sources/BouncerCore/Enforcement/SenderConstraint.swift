/// Stage 4b: a sender-constrained token is accepted only with its proof (RFC 9449 §7, RFC 8705
/// §3), and with `sender_constraint: required` only such tokens are. Pure: the proof is checked
/// here (``DPoPVerifier``); the replay cache and the nonces, which remember, are the caller's,
/// asked after a proof passed.
public enum SenderConstraint {
    /// `sender_constraint` of a resource.
    public enum Mode: String, Sendable, CaseIterable {
        /// Bearer tokens as before; a bound token only with its proof.
        case optional
        /// Only sender-constrained tokens.
        case required
    }

    /// How the request's token was bound (the audit record's `token_binding`).
    public enum Binding: Sendable, Hashable {
        case bearer
        /// A DPoP proof with the key `cnf.jkt` names.
        case dpop(DPoPProof)
        /// The client certificate `cnf.x5t#S256` names.
        case mtls(thumbprint: String)

        public var name: String {
            switch self {
            case .bearer: "bearer"
            case .dpop: "dpop"
            case .mtls: "mtls"
            }
        }

        /// The key's or the certificate's thumbprint, when bound.
        public var thumbprint: String? {
            switch self {
            case .bearer: nil
            case .dpop(let proof): proof.thumbprint
            case .mtls(let thumbprint): thumbprint
            }
        }
    }

    /// Why a token's binding was refused.
    public enum Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        /// The proof failed, or was missing.
        case proof(DPoPRefusal)
        /// A DPoP-bound token presented as `Bearer`: the downgrade RFC 9449 §7.2 forbids.
        case boundTokenAsBearer
        /// `Authorization: DPoP` with a token bound to no DPoP key.
        case notDPoPBound
        /// A certificate-bound token without the certificate it names.
        case certificateMismatch
        /// `sender_constraint: required`, and a plain bearer token.
        case bearerNotAccepted

        public var code: String {
            switch self {
            case .proof(let refusal): "dpop.\(refusal.code)"
            case .boundTokenAsBearer: "bound_token_as_bearer"
            case .notDPoPBound: "not_dpop_bound"
            case .certificateMismatch: "certificate_mismatch"
            case .bearerNotAccepted: "bearer_not_accepted"
            }
        }

        /// The `error` of the challenge: the `DPoP` one's for a proof, `invalid_token` for a
        /// token that cannot be used this way.
        public var challengeError: String? {
            switch self {
            case .proof(let refusal): refusal.challengeError
            case .boundTokenAsBearer, .notDPoPBound, .certificateMismatch: "invalid_token"
            case .bearerNotAccepted: nil
            }
        }

        public var description: String {
            switch self {
            case .proof(let refusal): refusal.description
            case .boundTokenAsBearer: "the access token is bound to a DPoP key; present it as Authorization: DPoP with a proof"
            case .notDPoPBound: "the access token is not bound to a DPoP key"
            case .certificateMismatch: "the access token is bound to another client certificate than this connection's"
            case .bearerNotAccepted: "this resource accepts only sender-constrained (DPoP or certificate-bound) tokens"
            }
        }
    }

    /// The request's facts about its token, and what checking a proof needs.
    public struct Presentation: Sendable {
        public var token: String
        public var isDPoP: Bool
        /// The first `DPoP` header value, and how many there are.
        public var proof: String?
        public var proofCount: Int
        public var method: String
        public var publicURL: CanonicalURI
        /// `x5t#S256` of the connection's verified client certificate (or a trusted proxy's
        /// `Client-Cert`), when there is one.
        public var clientCertificate: String?

        public init(token: String, isDPoP: Bool, proof: String?, proofCount: Int, method: String, publicURL: CanonicalURI, clientCertificate: String?) {
            self.token = token
            self.isDPoP = isDPoP
            self.proof = proof
            self.proofCount = proofCount
            self.method = method
            self.publicURL = publicURL
            self.clientCertificate = clientCertificate
        }
    }

    public static func check(
        _ confirmation: TokenConfirmation?, presentation: Presentation, mode: Mode, requirements: DPoPRequirements, now: Int64
    ) -> Result<Binding, Refusal> {
        if let jkt = confirmation?.jkt {
            guard presentation.isDPoP else { return .failure(.boundTokenAsBearer) }
            let verified = DPoPVerifier.verify(
                proof: presentation.proof, proofCount: presentation.proofCount, method: presentation.method, publicURL: presentation.publicURL, accessToken: presentation.token,
                boundThumbprint: jkt, requirements: requirements, now: now
            )
            return verified.map(Binding.dpop).mapError(Refusal.proof)
        }
        guard !presentation.isDPoP else { return .failure(.notDPoPBound) }
        if let x5t = confirmation?.x5tS256 {
            guard let certificate = presentation.clientCertificate, certificate == x5t else { return .failure(.certificateMismatch) }
            return .success(.mtls(thumbprint: certificate))
        }
        return mode == .required ? .failure(.bearerNotAccepted) : .success(.bearer)
    }
}
