import BouncerCore
import Crypto
import CryptoExtras
import Foundation

/// Signs test tokens with freshly generated keys (never committed keys) and publishes the
/// matching JWKS, so the verifier is tested against real signatures of every algorithm.
public struct TestSigner: Sendable {
    public enum Key: Sendable {
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
        case ed25519(Curve25519.Signing.PrivateKey)
    }

    public let key: Key
    public let kid: String

    public init(key: Key, kid: String) {
        self.key = key
        self.kid = kid
    }

    static let rsaKey = try! _RSA.Signing.PrivateKey(keySize: .bits2048)

    public static func rsa(kid: String = "rsa-1") -> TestSigner { TestSigner(key: .rsa(Self.rsaKey), kid: kid) }
    public static func p256(kid: String = "ec-1") -> TestSigner { TestSigner(key: .p256(P256.Signing.PrivateKey()), kid: kid) }
    public static func p384(kid: String = "ec384-1") -> TestSigner { TestSigner(key: .p384(P384.Signing.PrivateKey()), kid: kid) }
    public static func ed25519(kid: String = "ed-1") -> TestSigner { TestSigner(key: .ed25519(Curve25519.Signing.PrivateKey()), kid: kid) }

    public var jwk: String {
        func b64(_ data: some DataProtocol) -> String { Base64URL.encode(Array(data)) }
        switch self.key {
        case .rsa(let key):
            let primitives = try! key.publicKey.getKeyPrimitives()
            return #"{"kty":"RSA","kid":"\#(self.kid)","use":"sig","n":"\#(b64(primitives.modulus))","e":"\#(b64(primitives.publicExponent))"}"#
        case .p256(let key):
            let raw = key.publicKey.rawRepresentation
            return #"{"kty":"EC","kid":"\#(self.kid)","crv":"P-256","x":"\#(b64(raw.prefix(32)))","y":"\#(b64(raw.suffix(32)))"}"#
        case .p384(let key):
            let raw = key.publicKey.rawRepresentation
            return #"{"kty":"EC","kid":"\#(self.kid)","crv":"P-384","x":"\#(b64(raw.prefix(48)))","y":"\#(b64(raw.suffix(48)))"}"#
        case .ed25519(let key):
            return #"{"kty":"OKP","kid":"\#(self.kid)","crv":"Ed25519","x":"\#(b64(key.publicKey.rawRepresentation))"}"#
        }
    }

    public static func jwks(_ signers: [TestSigner], extra: [String] = []) -> String {
        #"{"keys":[\#((signers.map(\.jwk) + extra).joined(separator: ","))]}"#
    }

    public static func keySet(_ signers: TestSigner...) -> JSONWebKeySet {
        try! JSONWebKeySet(json: Array(Self.jwks(signers).utf8))
    }

    /// A compact JWS of `claims` (a JSON object text) with header `alg`/`kid`/`typ`.
    public func sign(_ claims: String, alg: String? = nil, kid: String?? = nil, typ: String? = "at+jwt") -> String {
        let algorithm = alg ?? self.defaultAlgorithm
        var header = #"{"alg":"\#(algorithm)""#
        if let kid = kid ?? self.kid { header += #","kid":"\#(kid)""# }
        if let typ { header += #","typ":"\#(typ)""# }
        header += "}"
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        let data = Data(input.utf8)
        let signature: [UInt8]
        switch self.key {
        case .rsa(let key):
            let pss = algorithm.hasPrefix("PS")
            let padding: _RSA.Signing.Padding = pss ? .PSS : .insecurePKCS1v1_5
            switch algorithm.suffix(3) {
            case "384": signature = Array(try! key.signature(for: SHA384.hash(data: data), padding: padding).rawRepresentation)
            case "512": signature = Array(try! key.signature(for: SHA512.hash(data: data), padding: padding).rawRepresentation)
            default: signature = Array(try! key.signature(for: SHA256.hash(data: data), padding: padding).rawRepresentation)
            }
        case .p256(let key):
            signature = Array(try! key.signature(for: data).rawRepresentation)
        case .p384(let key):
            signature = Array(try! key.signature(for: data).rawRepresentation)
        case .ed25519(let key):
            signature = Array(try! key.signature(for: data))
        }
        return input + "." + Base64URL.encode(signature)
    }

    public var defaultAlgorithm: String {
        switch self.key {
        case .rsa: return "RS256"
        case .p256: return "ES256"
        case .p384: return "ES384"
        case .ed25519: return "EdDSA"
        }
    }
}

public enum Fixtures {
    public static let issuer = "https://as.example.com/tenant1"
    public static let resource = try! CanonicalURI("https://mcp.example.com/jira/mcp")
    public static let now: Int64 = 1_800_000_000

    public static func requirements(typ: Bool = false, leeway: Int64 = 60, algorithms: Set<JWSAlgorithm> = Set(JWSAlgorithm.allCases)) -> TokenRequirements {
        TokenRequirements(issuer: issuer, audience: resource, algorithms: algorithms, leewaySeconds: leeway, requireAccessTokenType: typ, scopeClaims: [.scope, .scp])
    }

    public static func claims(aud: String = #""https://mcp.example.com/jira/mcp""#, exp: Int64 = now + 300, extra: String = #","scope":"jira:read jira:write""#) -> String {
        #"{"iss":"\#(issuer)","sub":"alice","client_id":"agent-1","aud":\#(aud),"exp":\#(exp),"iat":\#(now - 10),"jti":"t1"\#(extra)}"#
    }
}
