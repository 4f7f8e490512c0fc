/// `dpop:`: how DPoP proofs (RFC 9449) are checked at every resource.
public struct DPoPSettings: Sendable, Equatable {
    /// Asymmetric algorithms only (``JWSAlgorithm`` has no `none` and no HMAC).
    public var algorithms: [JWSAlgorithm] = [.es256, .es384, .rs256, .ps256, .edDSA]
    /// How far a proof's `iat` may be from now, either way.
    public var iatWindowSeconds = 60
    /// Proofs remembered per replica against replay; when full, proofs are refused (401).
    public var replayCacheEntries = 100_000
    /// Require server nonces (RFC 9449 §9).
    public var nonce = false
    /// How long a nonce is accepted.
    public var nonceLifetimeSeconds = 60

    public init() {}

    public static let integerSettings: [IntegerSetting<DPoPSettings>] = [
        IntegerSetting(key: "iat_window_seconds", range: 1...300, field: .int(\.iatWindowSeconds)),
        IntegerSetting(key: "replay_cache_entries", range: 100...10_000_000, field: .int(\.replayCacheEntries)),
        IntegerSetting(key: "nonce_lifetime_seconds", range: 10...3600, field: .int(\.nonceLifetimeSeconds)),
    ]

    /// What a proof must satisfy under these settings.
    public var requirements: DPoPRequirements {
        DPoPRequirements(algorithms: Set(self.algorithms), iatWindowSeconds: Int64(self.iatWindowSeconds))
    }
}
