import Crypto
import CryptoExtras

/// The JWS algorithms an access token may be signed with. There is deliberately no `none`
/// and no HMAC: a resource server holds only public keys, and accepting `HS256` with a
/// public key as the secret is the classic algorithm-confusion forgery.
public enum JWSAlgorithm: String, Sendable, Hashable, CaseIterable {
    case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512"
    case ps256 = "PS256", ps384 = "PS384", ps512 = "PS512"
    case es256 = "ES256", es384 = "ES384"
    case edDSA = "EdDSA"
}

/// A public key from a JWKS, ready to verify signatures.
public struct VerificationKey: Sendable {
    public enum Material: Sendable {
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    public var keyID: String?
    /// The `alg` the key is pinned to, if the JWK names one.
    public var algorithm: JWSAlgorithm?
    public var material: Material

    /// Whether this key may verify a signature made with `algorithm`.
    public func accepts(_ algorithm: JWSAlgorithm) -> Bool {
        if let pinned = self.algorithm, pinned != algorithm { return false }
        switch (self.material, algorithm) {
        case (.rsa, .rs256), (.rsa, .rs384), (.rsa, .rs512), (.rsa, .ps256), (.rsa, .ps384), (.rsa, .ps512): return true
        case (.p256, .es256), (.p384, .es384), (.ed25519, .edDSA): return true
        default: return false
        }
    }

    /// Verifies a JWS signature over `signingInput`. Never throws: any malformed input is
    /// simply not a valid signature.
    public func verify(signature: [UInt8], signingInput: [UInt8], algorithm: JWSAlgorithm) -> Bool {
        guard self.accepts(algorithm) else { return false }
        switch self.material {
        case .rsa(let key):
            let signature = _RSA.Signing.RSASignature(rawRepresentation: signature)
            switch algorithm {
            case .rs256: return key.isValidSignature(signature, for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .rs384: return key.isValidSignature(signature, for: SHA384.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .rs512: return key.isValidSignature(signature, for: SHA512.hash(data: signingInput), padding: .insecurePKCS1v1_5)
            case .ps256: return key.isValidSignature(signature, for: SHA256.hash(data: signingInput), padding: .PSS)
            case .ps384: return key.isValidSignature(signature, for: SHA384.hash(data: signingInput), padding: .PSS)
            case .ps512: return key.isValidSignature(signature, for: SHA512.hash(data: signingInput), padding: .PSS)
            default: return false
            }
        case .p256(let key):
            guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(signature, for: SHA256.hash(data: signingInput))
        case .p384(let key):
            guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(signature, for: SHA384.hash(data: signingInput))
        case .ed25519(let key):
            return key.isValidSignature(signature, for: signingInput)
        }
    }
}

/// A parsed JWKS document (RFC 7517). Keys that cannot verify signatures (private-only,
/// `use: enc`, unknown `kty`/`crv`, RSA under 2048 bits) are skipped and counted, so one odd
/// key in an identity provider's set does not take the whole set down.
public struct JSONWebKeySet: Sendable {
    public var keys: [VerificationKey]
    /// Human-readable reasons for skipped keys, for the log.
    public var skipped: [String]
    /// The set says it comes from mcp-bouncer's development server.
    public var isDevelopmentOnly = false

    public init(keys: [VerificationKey]) {
        self.keys = keys
        self.skipped = []
    }

    public init(json: some Collection<UInt8>) throws(AuthorizationServerError) {
        let document: JSONValue
        do {
            document = try JSONParser(maxDepth: 16).parse(json)
        } catch {
            throw AuthorizationServerError(.keySetInvalid, "not valid JSON: \(error)")
        }
        guard let entries = document["keys"]?.arrayValue else {
            throw AuthorizationServerError(.keySetInvalid, "no \"keys\" array")
        }
        var keys: [VerificationKey] = []
        var skipped: [String] = []
        for (index, entry) in entries.enumerated() {
            do {
                if let key = try Self.key(from: entry) { keys.append(key) }
            } catch {
                skipped.append("key \(index) (kid \(entry["kid"]?.stringValue ?? "none")): \(error.reason)")
            }
        }
        self.keys = keys
        self.skipped = skipped
        self.isDevelopmentOnly = document[DevelopmentMarker.key] == .bool(true)
    }

    /// Keys that may verify a token with this `kid` and `alg`. Without a `kid`, every
    /// compatible key is a candidate.
    public func candidates(keyID: String?, algorithm: JWSAlgorithm) -> [VerificationKey] {
        self.keys.filter { key in
            guard key.accepts(algorithm) else { return false }
            guard let keyID else { return true }
            return key.keyID == keyID
        }
    }

    static func key(from entry: JSONValue) throws(AuthorizationServerError) -> VerificationKey? {
        guard entry.objectValue != nil else { throw AuthorizationServerError(.keyInvalid, "not an object") }
        if let use = entry["use"]?.stringValue, use != "sig" { return nil }
        let keyID = entry["kid"]?.stringValue
        var algorithm: JWSAlgorithm?
        if let alg = entry["alg"]?.stringValue {
            guard let known = JWSAlgorithm(rawValue: alg) else { throw AuthorizationServerError(.keyInvalid, "alg \(alg) is not accepted") }
            algorithm = known
        }
        func bytes(_ name: String) throws(AuthorizationServerError) -> [UInt8] {
            guard let text = entry[name]?.stringValue, let value = Base64URL.decode(text), !value.isEmpty else {
                throw AuthorizationServerError(.keyInvalid, "missing or invalid \"\(name)\"")
            }
            return value
        }
        let material: VerificationKey.Material
        switch entry["kty"]?.stringValue {
        case "RSA":
            let n = try bytes("n")
            let e = try bytes("e")
            do {
                let key = try _RSA.Signing.PublicKey(n: n, e: e)
                guard key.keySizeInBits >= 2048 else { throw AuthorizationServerError(.keyInvalid, "RSA key shorter than 2048 bits") }
                material = .rsa(key)
            } catch let error as AuthorizationServerError {
                throw error
            } catch {
                throw AuthorizationServerError(.keyInvalid, "invalid RSA key: \(error)")
            }
        case "EC":
            let x = try bytes("x")
            let y = try bytes("y")
            do {
                switch entry["crv"]?.stringValue {
                case "P-256":
                    guard x.count == 32, y.count == 32 else { throw AuthorizationServerError(.keyInvalid, "P-256 coordinates must be 32 bytes") }
                    material = .p256(try P256.Signing.PublicKey(rawRepresentation: x + y))
                case "P-384":
                    guard x.count == 48, y.count == 48 else { throw AuthorizationServerError(.keyInvalid, "P-384 coordinates must be 48 bytes") }
                    material = .p384(try P384.Signing.PublicKey(rawRepresentation: x + y))
                default:
                    throw AuthorizationServerError(.keyInvalid, "unsupported EC curve \(entry["crv"]?.stringValue ?? "none")")
                }
            } catch let error as AuthorizationServerError {
                throw error
            } catch {
                throw AuthorizationServerError(.keyInvalid, "invalid EC key: \(error)")
            }
        case "OKP":
            guard entry["crv"]?.stringValue == "Ed25519" else { throw AuthorizationServerError(.keyInvalid, "unsupported OKP curve \(entry["crv"]?.stringValue ?? "none")") }
            let x = try bytes("x")
            do {
                material = .ed25519(try Curve25519.Signing.PublicKey(rawRepresentation: x))
            } catch {
                throw AuthorizationServerError(.keyInvalid, "invalid Ed25519 key: \(error)")
            }
        default:
            return nil  // "oct" and others: nothing a resource server can verify with.
        }
        return VerificationKey(keyID: keyID, algorithm: algorithm, material: material)
    }
}
