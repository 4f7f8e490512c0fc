import BouncerCore
import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOHTTP1

/// A resource's DPoP-bound upstream leg (`token_exchange.dpop_key`, RFC 9449): the gateway's
/// key, a proof made for each request it sends with that key (the token request, and every
/// request that presents the exchanged token upstream), and the last nonce each server handed
/// out (§8, §9), so that the next proof carries it.
///
/// Shared by the event loops: the nonces live behind a lock held only to read or write one.
final class UpstreamDPoP: Sendable {
    let signer: DPoPSigner
    /// The upstream's URL without query (`htu` of the proofs that go there).
    let upstreamURL: String
    /// The last `DPoP-Nonce` from each server, by the URL it came from.
    private let nonces = NIOLockedValueBox<[String: String]>([:])
    private let clock: WallClock

    /// A nonce longer than this is not remembered (the proof would carry it on every request).
    static let maxNonceLength = 512

    init(signer: DPoPSigner, upstream: UpstreamTarget, clock: WallClock) {
        self.signer = signer
        self.upstreamURL = upstream.uri.description
        self.clock = clock
    }

    /// The key `policy` names, a fresh P-256 one for `generate`.
    static func signer(for key: UpstreamDPoPKey) -> DPoPSigner {
        switch key {
        case .pem(let key): DPoPSigner(key: key)
        case .generate: DPoPSigner(key: .p256(.init()))
        }
    }

    /// A proof for `method` to `url` (the upstream's, unless a token endpoint's), with the
    /// nonce that server last gave; nil when the key cannot sign (never expected).
    func proof(method: String, url: String? = nil, accessToken: String?) -> String? {
        let url = url ?? self.upstreamURL
        let nonce = self.nonces.withLockedValue { $0[url] }
        return try? self.signer.proof(method: method, url: url, accessToken: accessToken, nonce: nonce, now: self.clock.seconds(), jti: UUID().uuidString)
    }

    /// Remembers the `DPoP-Nonce` a response from `url` carries (on any status: a server may
    /// hand out the next one with a success). Returns whether it is new.
    @discardableResult
    func noteNonce(_ headers: HTTPHeaders, from url: String? = nil) -> Bool {
        self.noteNonce(headers.first(name: "DPoP-Nonce"), from: url)
    }

    @discardableResult
    func noteNonce(_ value: String?, from url: String? = nil) -> Bool {
        guard let value, !value.isEmpty, value.utf8.count <= Self.maxNonceLength,
              value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
        else { return false }
        let url = url ?? self.upstreamURL
        return self.nonces.withLockedValue { nonces in
            guard nonces[url] != value else { return false }
            nonces[url] = value
            return true
        }
    }

    /// Whether a resource server's answer asks for a nonce: 401 with a `DPoP` challenge whose
    /// error is `use_dpop_nonce` (RFC 9449 §9), and the nonce to use with it.
    static func asksForNonce(status: UInt, headers: HTTPHeaders) -> Bool {
        status == 401 && headers[canonicalForm: "WWW-Authenticate"].contains { $0.contains("use_dpop_nonce") } && headers.contains(name: "DPoP-Nonce")
    }

    /// Puts a fresh proof for `head` (its method, the upstream's URL) in its `DPoP` field.
    func prove(_ head: inout UpstreamRequestHead, token: String) {
        if let proof = self.proof(method: head.method.rawValue, accessToken: token) {
            head.replaceOrAdd(name: "DPoP", value: proof)
        }
    }

    /// `headers` (a credential repeated on a request of the gateway's own: an answer in the
    /// client's place, a session's DELETE) with a fresh proof when they present a bound token.
    func proved(_ headers: [(String, String)], method: String) -> [(String, String)] {
        guard let token = Self.boundToken(in: headers), let proof = self.proof(method: method, accessToken: token) else { return headers }
        return headers.filter { !$0.0.equalsIgnoringASCIICase("dpop") } + [("DPoP", proof)]
    }

    /// `Authorization: DPoP <token>` in a credential's header list: the bound token it presents.
    static func boundToken(in headers: [(String, String)]) -> String? {
        for (name, value) in headers where name.equalsIgnoringASCIICase("authorization") && value.hasPrefixIgnoringASCIICase("DPoP ") {
            return String(value.dropFirst(5))
        }
        return nil
    }
}
