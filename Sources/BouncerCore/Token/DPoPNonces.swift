import Crypto

/// Server-provided DPoP nonces (RFC 9449 §9) without a shared store: a nonce is the time it was
/// issued, sealed (AES-256-GCM) under the `sessions.keys`, so every replica accepts every
/// replica's nonces for `lifetimeSeconds`. Pure but for the AEAD nonce: time comes in.
public struct DPoPNonces: Sendable {
    public let keys: [SessionKey]
    public let lifetimeSeconds: Int64
    /// Replicas' clocks may differ this much.
    public static let clockSkewSeconds: Int64 = 60
    private static let envelope = SealedEnvelope(purpose: "dpopNonce", version: "n1", maxLength: 256)

    public init(keys: [SessionKey], lifetimeSeconds: Int64) {
        precondition(!keys.isEmpty, "DPoP nonces need a key")
        self.keys = keys
        self.lifetimeSeconds = lifetimeSeconds
    }

    /// A nonce issued at `now` (seconds).
    public func issue(now: Int64) -> String? {
        var plain: [UInt8] = []
        SealedFields.append(now, to: &plain)
        return Self.envelope.seal(plain, keys: self.keys, nonce: AES.GCM.Nonce())
    }

    /// Whether `nonce` is one of ours, issued no longer than the lifetime ago.
    public func accepts(_ nonce: String, now: Int64) -> Bool {
        guard let issued = self.issuedAt(nonce) else { return false }
        return issued <= now + Self.clockSkewSeconds && now - issued <= self.lifetimeSeconds
    }

    /// Whether `nonce` should be replaced on a response now (it is past half its life: clients
    /// get the next one before the old one expires), or is not ours.
    public func isAging(_ nonce: String, now: Int64) -> Bool {
        guard let issued = self.issuedAt(nonce) else { return true }
        return now - issued > self.lifetimeSeconds / 2
    }

    /// When we issued `nonce`; nil when we did not.
    private func issuedAt(_ nonce: String) -> Int64? {
        guard case .success(let plain) = Self.envelope.open(nonce, keys: self.keys, otherVersion: .forged) else { return nil }
        var reader = SealedFields.Reader(bytes: plain)
        guard let issued = reader.int64(), reader.atEnd else { return nil }
        return issued
    }
}
