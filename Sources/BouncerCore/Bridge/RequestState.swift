import Crypto

/// A call the bridge parked (issue 26, item 3): a legacy upstream asked the client something
/// (an elicitation, a sampling request, its roots) while answering it, and the gateway answered
/// the 2026-07-28 client with an `InputRequiredResult` instead. Its `requestState` carries this,
/// sealed, so that the client's retry finds the call again, and only that client's retry of that
/// request, on the replica that holds it, before it expires.
public struct ParkedCall: Sendable, Hashable {
    /// Whose call it is and for which resource (issuer, subject, client).
    public var binding: SessionBinding
    /// The replica that holds the parked upstream request.
    public var replica: String
    /// The parked call's id on that replica, used once: the store refuses it a second time.
    public var parkID: String
    /// What the originating request was (its method and target, digested): the retry must be
    /// the same request.
    public var requestDigest: String
    /// Seconds since the epoch after which the retry is refused (`bridge.input_timeout_seconds`).
    public var expiresAt: Int64

    public init(binding: SessionBinding, replica: String, parkID: String, requestDigest: String, expiresAt: Int64) {
        self.binding = binding
        self.replica = replica
        self.parkID = parkID
        self.requestDigest = requestDigest
        self.expiresAt = expiresAt
    }
}

/// Why a `requestState` was refused. Each is a JSON-RPC error for the client; nothing reaches
/// the upstream.
public enum RequestStateRefusal: Error, Sendable, Hashable {
    /// Not a `requestState` this gateway issues (shape, encoding, length, version).
    case malformed
    /// Sealed under a key the gateway does not have.
    case unknownKey(String)
    /// Does not decrypt: edited, forged, or a session id offered as a `requestState`.
    case forged
    /// Sealed for another resource, user or client.
    case otherCaller
    /// Past its expiry.
    case expired
    /// Sealed for another request than the one it came back with.
    case otherRequest
    /// Held by another replica (the load balancer sent the retry elsewhere).
    case otherReplica(String)

    public var code: String {
        switch self {
        case .malformed: "malformed"
        case .unknownKey: "unknown_key"
        case .forged: "forged"
        case .otherCaller: "other_caller"
        case .expired: "expired"
        case .otherRequest: "other_request"
        case .otherReplica: "other_replica"
        }
    }
}

/// Seals a ``ParkedCall`` into the opaque `requestState` of an `InputRequiredResult`, under the
/// session keys (AES-256-GCM, the first key seals, every key opens), and opens it again. Its
/// version and additional data differ from a session id's, so neither passes for the other.
/// `r1.<key id>.<base64url(nonce | ciphertext | tag)>`. Pure: time and nonce come in.
public struct RequestStateSealer: Sendable {
    public let keys: [SessionKey]

    public static let maxSealedLength = 4096
    static let version = "r1"
    private static let formatVersion: UInt8 = 1

    public init(keys: [SessionKey]) {
        precondition(!keys.isEmpty, "a request state sealer needs a key")
        self.keys = keys
    }

    public func seal(_ call: ParkedCall, nonce: AES.GCM.Nonce = AES.GCM.Nonce()) -> String? {
        var plain: [UInt8] = [Self.formatVersion]
        SealedFields.append(call.expiresAt, to: &plain)
        for field in [call.binding.resource, call.binding.issuer, call.binding.subject, call.binding.clientID, call.replica, call.parkID, call.requestDigest] {
            guard field.utf8.count <= Int(UInt16.max) else { return nil }
            SealedFields.append(field, to: &plain)
        }
        return Self.envelope.seal(plain, keys: self.keys, nonce: nonce)
    }

    /// The parked call in `state`, when this gateway sealed it for `caller` (resource, issuer,
    /// subject, client), for the request digested as `requestDigest`, on `replica`, and it has
    /// not expired at `now`. Whether its `parkID` was used already is the store's to say.
    public func open(_ state: String, caller: SessionBinding, requestDigest: String, replica: String, now: Int64) -> Result<ParkedCall, RequestStateRefusal> {
        let plain: [UInt8]
        // Another version (a session id's `s1`) is authenticated as another thing: forged here.
        switch Self.envelope.open(state, keys: self.keys, otherVersion: .forged) {
        case .success(let opened): plain = opened
        case .failure(.malformed): return .failure(.malformed)
        case .failure(.unknownKey(let keyID)): return .failure(.unknownKey(keyID))
        case .failure(.forged): return .failure(.forged)
        }
        var reader = SealedFields.Reader(bytes: plain)
        guard reader.byte() == Self.formatVersion, let expiresAt = reader.int64(),
              let resource = reader.field(), let issuer = reader.field(), let subject = reader.field(), let clientID = reader.field(),
              let sealedReplica = reader.field(), let parkID = reader.field(), let digest = reader.field(), reader.atEnd
        else { return .failure(.malformed) }
        let call = ParkedCall(
            binding: SessionBinding(resource: resource, issuer: issuer, subject: subject, clientID: clientID),
            replica: sealedReplica, parkID: parkID, requestDigest: digest, expiresAt: expiresAt
        )
        guard call.binding == caller else { return .failure(.otherCaller) }
        guard now <= expiresAt else { return .failure(.expired) }
        guard digest == requestDigest else { return .failure(.otherRequest) }
        guard sealedReplica == replica else { return .failure(.otherReplica(sealedReplica)) }
        return .success(call)
    }

    private static let envelope = SealedEnvelope(purpose: "requestState", version: Self.version, maxLength: Self.maxSealedLength)
}
