import BouncerCore
import NIOConcurrencyHelpers

/// What the gateway remembers about DPoP proofs (`dpop:`): the `jti`s of recent proofs per key
/// (``DPoPReplayCache``, shared by the event loops) and the sealed nonces (``DPoPNonces``).
/// Kept across a reload that changes neither the settings nor the session keys.
final class DPoPGuard: Sendable {
    let settings: DPoPSettings
    let nonces: DPoPNonces
    private let replays: NIOLockedValueBox<DPoPReplayCache>

    init(settings: DPoPSettings, keys: [SessionKey]) {
        self.settings = settings
        self.nonces = DPoPNonces(keys: keys, lifetimeSeconds: Int64(settings.nonceLifetimeSeconds))
        self.replays = NIOLockedValueBox(DPoPReplayCache(capacity: settings.replayCacheEntries))
    }

    /// After a proof passed every check: its nonce, when nonces are required, and its `jti`,
    /// which must not have been seen with this key within the window.
    func admit(_ proof: DPoPProof, now: Int64) -> DPoPRefusal? {
        if self.settings.nonce {
            guard let nonce = proof.nonce else { return .nonceRequired }
            guard self.nonces.accepts(nonce, now: now) else { return .nonceInvalid }
        }
        let window = Int64(self.settings.iatWindowSeconds)
        let admission = self.replays.withLockedValue {
            $0.admit(thumbprint: proof.thumbprint, jti: proof.jti, expiresAt: max(proof.issuedAt, now) + window + 1, now: now)
        }
        switch admission {
        case .fresh: return nil
        case .replayed: return .replayed
        case .full: return .replayCacheFull
        }
    }

    /// The nonce a refusal hands out: only one that asks for a nonce, when nonces are required.
    func nonce(after refusal: DPoPRefusal?, now: Int64) -> String? {
        guard self.settings.nonce, refusal == .nonceRequired || refusal == .nonceInvalid else { return nil }
        return self.nonces.issue(now: now)
    }

    /// The nonce a response to an accepted `proof` hands out: a fresh one when its nonce is past
    /// half its life (or it had none).
    func nonce(forResponseTo proof: DPoPProof, now: Int64) -> String? {
        guard self.settings.nonce, proof.nonce.map({ self.nonces.isAging($0, now: now) }) ?? true else { return nil }
        return self.nonces.issue(now: now)
    }
}
