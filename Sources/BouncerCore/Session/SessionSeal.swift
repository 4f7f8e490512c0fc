import Crypto

/// One session key: `sessions.keys[]`. The first key of the list seals; every key opens.
public struct SessionKey: Sendable, Equatable {
    /// Names the key in every id it seals (so the right key opens it after a rotation).
    public let id: String
    let key: SymmetricKey

    /// The most characters of a key id: it travels in every session id.
    public static let maxIDLength = 32
    public static let secretBytes = 32

    /// `secret` is the base64 (standard or URL-safe alphabet) of 32 random bytes.
    public init(id: String, secret: String) throws(SessionKeyError) {
        guard Self.isValidID(id) else { throw .invalidID(id) }
        // Whitespace around it (a file's newline) is ignored; both base64 alphabets are read.
        let standard = secret.utf8.compactMap { byte -> UInt8? in
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): nil
            case UInt8(ascii: "+"): UInt8(ascii: "-")
            case UInt8(ascii: "/"): UInt8(ascii: "_")
            default: byte
            }
        }
        let unpadded = standard.reversed().drop { $0 == UInt8(ascii: "=") }.reversed()
        guard let bytes = Base64URL.decode(Array(unpadded)) else { throw .notBase64(id: id) }
        guard bytes.count == Self.secretBytes else { throw .wrongLength(id: id, bytes: bytes.count) }
        self.id = id
        self.key = SymmetricKey(data: bytes)
    }

    /// A key made at start when the policy has none: sessions do not survive a restart.
    public static func random(id: String = "ephemeral") -> SessionKey {
        SessionKey(id: id, key: SymmetricKey(size: .bits256))
    }

    private init(id: String, key: SymmetricKey) {
        self.id = id
        self.key = key
    }

    /// A fresh secret for `sessions.keys[].secret` (`mcp-bouncer sessions keygen`): standard
    /// base64 of 32 random bytes.
    public static func newSecret() -> String {
        Base64URL.encodeStandard(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    /// 1 to 32 letters, digits, `-` or `_`.
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= Self.maxIDLength && id.utf8.allSatisfy(Base64URL.isAlphabet)
    }
}

public enum SessionKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidID(String)
    case notBase64(id: String)
    case wrongLength(id: String, bytes: Int)

    public var description: String {
        switch self {
        case .invalidID(let id): "key id '\(id)' must be 1 to \(SessionKey.maxIDLength) letters, digits, '-' or '_'"
        case .notBase64(let id): "the secret of key '\(id)' is not base64"
        case .wrongLength(let id, let bytes): "the secret of key '\(id)' is \(bytes) bytes; it must be \(SessionKey.secretBytes) random bytes, base64 (mcp-bouncer sessions keygen)"
        }
    }
}

/// Whom a session belongs to: what a sealed id carries and what every request using it must match.
public struct SessionBinding: Sendable, Hashable {
    /// The resource's path in the policy.
    public var resource: String
    public var issuer: String
    public var subject: String
    /// The token's OAuth client (`client_id` or `azp`); compared only with `sessions.bind_client`.
    public var clientID: String

    public init(resource: String, issuer: String, subject: String, clientID: String) {
        self.resource = resource
        self.issuer = issuer
        self.subject = subject
        self.clientID = clientID
    }

    /// The binding of a session of the resource at `resource` used with `claims` (and the
    /// `token` they came from).
    public init(resource: String, claims: AccessTokenClaims, token: String?) {
        self.init(resource: resource, issuer: claims.issuer, subject: claims.user(token: token), clientID: claims.clientID ?? "")
    }
}

extension AccessTokenClaims {
    /// The user a token speaks for (``user``); a token that names nobody is its own user.
    public func user(token: String?) -> String {
        self.user ?? "token:\(AuditDigestSource.hex(of: token ?? ""))"
    }
}

/// Why a session id was refused. Each is answered 404 (the client starts a new session) and
/// audited as `session_mismatch`.
public enum SessionMismatch: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not an id the gateway seals: wrong shape, bad base64, too long, or a version it does not know.
    case malformed
    /// Sealed under a key the gateway no longer has (rotated out) or never had.
    case unknownKey(String)
    /// Does not decrypt: edited, forged, or sealed under another secret with the same key id.
    case forged
    /// Sealed for another resource of this gateway.
    case otherResource(SessionBinding)
    /// Sealed for another user (issuer and subject).
    case otherSubject(SessionBinding)
    /// Sealed for another OAuth client of the same user (`sessions.bind_client`).
    case otherClient(SessionBinding)
    /// Older than `sessions.max_age`, or issued in the future.
    case expired(ageSeconds: Int64)

    /// The stable code, after `session_mismatch.` in the rejection reason and in the audit record.
    public var code: String {
        switch self {
        case .malformed: "malformed"
        case .unknownKey: "unknown_key"
        case .forged: "forged"
        case .otherResource: "other_resource"
        case .otherSubject: "other_subject"
        case .otherClient: "other_client"
        case .expired: "expired"
        }
    }

    public var description: String {
        switch self {
        case .malformed: "not a session id this gateway issued"
        case .unknownKey(let id): "sealed with key '\(id)', which this gateway does not have"
        case .forged: "does not decrypt (edited or forged)"
        case .otherResource: "issued for another resource"
        case .otherSubject: "issued to another user"
        case .otherClient: "issued to another OAuth client (sessions.bind_client)"
        case .expired(let age): age < 0 ? "issued in the future" : "older than sessions.max_age (\(age) s)"
        }
    }

    /// The binding the id was sealed with, when it opened.
    public var sealedBinding: SessionBinding? {
        switch self {
        case .otherResource(let binding), .otherSubject(let binding), .otherClient(let binding): binding
        default: nil
        }
    }
}

/// Sealed session ids: the client never sees the upstream's `Mcp-Session-Id`, only an
/// AES-256-GCM encryption of it, together with the resource, the token's issuer and subject
/// (and client id) and the time it was issued, under the gateway's session key. Any replica
/// with the key opens it, so sessions need no shared store; nobody without it can read or
/// make one; and a session id is useless to anyone but the user it was sealed for.
///
/// An id is `s1.<key id>.<base64url(nonce | ciphertext | tag)>`; the key id and the version
/// are authenticated too (additional data). Pure: the time and the nonce are passed in.
public struct SessionSealer: Sendable {
    public let keys: [SessionKey]
    public let maxAgeSeconds: Int64
    public let bindClient: Bool

    /// The longest id ``open(_:expecting:now:)`` reads; longer is malformed before any work.
    public static let maxSealedLength = 4096
    /// The longest upstream session id sealed (the transport spec: visible ASCII, no length
    /// given); a longer one is refused by ``seal(_:for:now:nonce:)``.
    public static let maxUpstreamIDLength = 1024
    static let version = "s1"
    private static let formatVersion: UInt8 = 1

    /// - Parameter keys: at least one; the first seals.
    public init(keys: [SessionKey], maxAgeSeconds: Int64, bindClient: Bool) {
        precondition(!keys.isEmpty, "a session sealer needs a key")
        self.keys = keys
        self.maxAgeSeconds = maxAgeSeconds
        self.bindClient = bindClient
    }

    /// The id the client gets for the upstream's `upstreamID`, or nil when `upstreamID` is not
    /// a session id the transport allows (visible ASCII, 0x21 to 0x7E) or is too long.
    public func seal(_ upstreamID: String, for binding: SessionBinding, now: Int64, nonce: AES.GCM.Nonce = AES.GCM.Nonce()) -> String? {
        guard !upstreamID.isEmpty, upstreamID.utf8.count <= Self.maxUpstreamIDLength,
              upstreamID.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E })
        else { return nil }
        var plain: [UInt8] = [Self.formatVersion]
        plain.reserveCapacity(16 + binding.resource.utf8.count + binding.issuer.utf8.count + binding.subject.utf8.count + binding.clientID.utf8.count + upstreamID.utf8.count)
        SealedFields.append(now, to: &plain)
        for field in [binding.resource, binding.issuer, binding.subject, binding.clientID, upstreamID] { SealedFields.append(field, to: &plain) }
        return Self.envelope.seal(plain, keys: self.keys, nonce: nonce)
    }

    /// The upstream's session id inside `sealed`, when it was sealed by one of the keys, for
    /// `expected`'s resource and user (and client, with `bind_client`), no longer than
    /// `max_age` ago.
    public func open(_ sealed: String, expecting expected: SessionBinding, now: Int64) -> Result<String, SessionMismatch> {
        let plain: [UInt8]
        switch Self.envelope.open(sealed, keys: self.keys, otherVersion: .malformed) {
        case .success(let opened): plain = opened
        case .failure(.malformed): return .failure(.malformed)
        case .failure(.unknownKey(let keyID)): return .failure(.unknownKey(keyID))
        case .failure(.forged): return .failure(.forged)
        }
        // Authenticated: the layout is ours, but read it defensively all the same.
        var reader = SealedFields.Reader(bytes: plain)
        guard reader.byte() == Self.formatVersion, let issued = reader.int64(),
              let resource = reader.field(), let issuer = reader.field(), let subject = reader.field(), let clientID = reader.field(),
              let upstreamID = reader.field(), reader.atEnd
        else { return .failure(.malformed) }
        let sealedFor = SessionBinding(resource: resource, issuer: issuer, subject: subject, clientID: clientID)
        if sealedFor.resource != expected.resource { return .failure(.otherResource(sealedFor)) }
        if sealedFor.issuer != expected.issuer || sealedFor.subject != expected.subject { return .failure(.otherSubject(sealedFor)) }
        if self.bindClient, sealedFor.clientID != expected.clientID { return .failure(.otherClient(sealedFor)) }
        let age = now - issued
        // A clock that stepped back a little between replicas is tolerated; the future is not.
        if age > self.maxAgeSeconds || age < -Self.clockSkewSeconds { return .failure(.expired(ageSeconds: age)) }
        return .success(upstreamID)
    }

    /// How far in the future an id's issue time may be (replicas' clocks differ a little).
    static let clockSkewSeconds: Int64 = 60

    private static let envelope = SealedEnvelope(purpose: "session", version: Self.version, maxLength: Self.maxSealedLength)
}
