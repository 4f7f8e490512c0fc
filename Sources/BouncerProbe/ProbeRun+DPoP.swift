import BouncerCore
import BouncerProxy
import Foundation
import NIOHTTP1

/// `--token` with `--dpop-key`: the token is DPoP-bound to that key (RFC 9449), and the probe
/// tries what an attacker holding the token, or one proof, would: the token as `Bearer`, one
/// proof twice, a proof made for another URL, a proof ten minutes old. Each must be refused.
/// A server that asks for a nonce (`use_dpop_nonce`, §9) gets one more proof carrying it: a
/// request for a nonce is not a refusal of the attack.
extension ProbeRun {
    /// How old the stale proof is: twice the longest window RFC 9449 §11.1 contemplates.
    static let staleProofSeconds: Int64 = 600

    /// `Authorization: DPoP` and a fresh proof for `method` to the URL probed, with the last
    /// nonce the server gave.
    func dpopAuthorization(_ token: String, signer: DPoPSigner, method: String = "POST", url: String? = nil, age: Int64 = 0, jti: String? = nil) -> [(String, String)] {
        let now = WallClock.system.seconds() - age
        guard let proof = try? signer.proof(method: method, url: url ?? self.url, accessToken: token, nonce: self.dpopNonce, now: now, jti: jti ?? UUID().uuidString) else {
            return [("Authorization", "DPoP \(token)")]
        }
        return [("Authorization", "DPoP \(token)"), ("DPoP", proof)]
    }

    /// An `initialize` with the credential `make` writes; a nonce asked for is taken and the
    /// request made once more (the same attack, with the nonce). Returns the answer and the
    /// credential it answered.
    mutating func dpopInitialize(_ make: (ProbeRun) -> [(String, String)]) async throws -> (response: HTTPFetchResponse, sent: [(String, String)]) {
        var sent = make(self)
        var response = try await self.post(self.initialize(), token: nil, headers: sent)
        if self.tookNonce(response) {
            sent = make(self)
            response = try await self.post(self.initialize(), token: nil, headers: sent)
        }
        return (response, sent)
    }

    /// Remembers a `DPoP-Nonce` the server asked the probe to use; true when it was asked.
    mutating func tookNonce(_ response: HTTPFetchResponse) -> Bool {
        guard response.status == 401 || response.status == 400, let nonce = response.header("DPoP-Nonce"),
              response.header("WWW-Authenticate")?.contains("use_dpop_nonce") == true || response.text.contains("use_dpop_nonce"), nonce != self.dpopNonce
        else { return false }
        self.dpopNonce = nonce
        return true
    }

    func accepted(_ response: HTTPFetchResponse) -> Bool {
        (200..<300).contains(response.status) && ProbeChecks.succeeded(self.message(response))
    }

    /// Ends a session an accepted `initialize` opened, with the proof's credential.
    func endSession(_ response: HTTPFetchResponse, token: String, signer: DPoPSigner) async {
        guard self.accepted(response), let session = response.header("Mcp-Session-Id") else { return }
        _ = try? await self.send(.DELETE, self.url, headers: self.dpopAuthorization(token, signer: signer, method: "DELETE") + [("Mcp-Session-Id", session)], body: nil)
    }

    mutating func assessDPoP(token: String, signer: DPoPSigner) async throws {
        var refused: [String] = []
        // RFC 9449 §7.2: a bound token presented as a bearer token.
        let bearer = try await self.post(self.initialize(), token: nil, headers: [("Authorization", "Bearer \(token)")])
        if self.accepted(bearer) {
            self.report.add(ProbeRules.dpopBearerAccepted, "initialize with the DPoP-bound --token as Bearer, without a proof, answered \(bearer.status) with a result")
            await self.endSession(bearer, token: token, signer: signer)
        } else {
            refused.append("as Bearer (\(bearer.status))")
        }

        // A fresh proof must work, and the same proof a second time must not (§11.1).
        let (fresh, proved) = try await self.dpopInitialize { $0.dpopAuthorization(token, signer: signer) }
        guard self.accepted(fresh) else {
            self.report.add(ProbeRules.dpopValidRefused, "initialize with --token as DPoP and a fresh proof of --dpop-key answered \(fresh.status)\(fresh.header("WWW-Authenticate").map { ", WWW-Authenticate: \($0)" } ?? "")")
            return
        }
        await self.endSession(fresh, token: token, signer: signer)
        let replay = try await self.post(self.initialize(), token: nil, headers: proved)
        if self.accepted(replay) {
            self.report.add(ProbeRules.dpopReplayAccepted, "the same DPoP proof (its jti) was accepted a second time: \(replay.status)")
            await self.endSession(replay, token: token, signer: signer)
        } else {
            refused.append("a replayed proof (\(replay.status))")
        }

        // §4.3: htu names this URL, iat is recent.
        let elsewhere = ServerProbe.foreignOrigin + self.uri.path
        let attacks: [(rule: ProbeRule, what: String, make: (ProbeRun) -> [(String, String)])] = [
            (ProbeRules.dpopHTUNotChecked, "a proof for \(elsewhere)", { $0.dpopAuthorization(token, signer: signer, url: elsewhere) }),
            (ProbeRules.dpopStaleAccepted, "a proof issued \(Self.staleProofSeconds / 60) minutes ago", { $0.dpopAuthorization(token, signer: signer, age: Self.staleProofSeconds) }),
        ]
        for attack in attacks {
            let (response, _) = try await self.dpopInitialize(attack.make)
            if self.accepted(response) {
                self.report.add(attack.rule, "initialize with \(attack.what) answered \(response.status) with a result")
                await self.endSession(response, token: token, signer: signer)
            } else {
                refused.append("\(attack.what) (\(response.status))")
            }
        }
        self.report.add(ProbeRules.dpopChecked, "the DPoP-bound token works with a fresh proof (key \(signer.thumbprint)) and was refused: \(refused.joined(separator: ", "))")
    }
}
