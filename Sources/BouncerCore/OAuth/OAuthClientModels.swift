import Crypto
import CryptoExtras

/// `application/x-www-form-urlencoded` as OAuth uses it (RFC 6749 appendix B).
public enum FormEncoding {
    /// Encodes one name or value: unreserved characters stay, space becomes `+`, the rest is
    /// percent-encoded as UTF-8.
    public static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out += "+"
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    public static func body(_ fields: [(String, String)]) -> String {
        fields.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")
    }

    /// Decodes a form body into its fields, in order; `nil` for malformed percent-escapes.
    public static func decode(_ body: String) -> [(String, String)]? {
        var fields: [(String, String)] = []
        for pair in body.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decodeComponent(parts[0]), let value = Self.decodeComponent(parts.count > 1 ? parts[1] : "") else { return nil }
            fields.append((name, value))
        }
        return fields
    }

    public static func decodeComponent(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(0x20)
            case UInt8(ascii: "%"):
                guard let high = iterator.next(), let low = iterator.next(),
                      let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// How the gateway authenticates itself to the token and introspection endpoints.
public enum ClientAuthenticationMethod: String, Sendable, Hashable, CaseIterable {
    case clientSecretBasic = "client_secret_basic"
    case clientSecretPost = "client_secret_post"
    case privateKeyJWT = "private_key_jwt"
}

/// A private key for RFC 7523 client assertions.
public enum AssertionSigningKey: Sendable, Hashable {
    case rsa(_RSA.Signing.PrivateKey)
    case p256(P256.Signing.PrivateKey)

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .rsa(let key): hasher.combine(key.derRepresentation)
        case .p256(let key): hasher.combine(key.rawRepresentation)
        }
    }

    /// Equal keys: the same private key (compared by its DER form).
    public static func == (lhs: AssertionSigningKey, rhs: AssertionSigningKey) -> Bool {
        switch (lhs, rhs) {
        case (.rsa(let a), .rsa(let b)): a.derRepresentation == b.derRepresentation
        case (.p256(let a), .p256(let b)): a.rawRepresentation == b.rawRepresentation
        default: false
        }
    }

    /// Parses a PEM private key (PKCS#8, or SEC1/PKCS#1).
    public init(pem: String) throws(OAuthClientError) {
        if let key = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
            self = .p256(key)
        } else if let key = try? _RSA.Signing.PrivateKey(pemRepresentation: pem) {
            guard key.keySizeInBits >= 2048 else { throw OAuthClientError(.keyInvalid, "RSA keys for client assertions must be at least 2048 bits") }
            self = .rsa(key)
        } else {
            throw OAuthClientError(.keyInvalid, "not a PEM P-256 or RSA private key")
        }
    }

    /// The public key's required members (RFC 7638 §3.2), in order: what a JWK of it holds
    /// besides `kid`, `use` and `alg`, and what its thumbprint hashes.
    public var publicKeyMembers: [(String, String)] {
        switch self {
        case .p256(let key):
            let raw = Array(key.publicKey.rawRepresentation)
            return [("kty", "EC"), ("crv", "P-256"), ("x", Base64URL.encode(raw.prefix(32))), ("y", Base64URL.encode(raw.suffix(32)))]
        case .rsa(let key):
            guard let primitives = try? key.publicKey.getKeyPrimitives() else { return [("kty", "RSA")] }
            return [("kty", "RSA"), ("n", Base64URL.encode(primitives.modulus)), ("e", Base64URL.encode(primitives.publicExponent))]
        }
    }

    /// The public half as a JWK (for a development JWKS).
    public func publicJWK(keyID: String) -> JSONWriter {
        var jwk = JSONWriter()
        for (name, value) in self.publicKeyMembers { jwk.add(name, value) }
        jwk.add("kid", keyID)
        jwk.add("use", "sig")
        jwk.add("alg", self.algorithm.rawValue)
        return jwk
    }

    public var algorithm: JWSAlgorithm {
        switch self {
        case .rsa: return .rs256
        case .p256: return .es256
        }
    }

    public func sign(_ input: [UInt8]) throws -> [UInt8] {
        switch self {
        case .rsa(let key):
            return Array(try key.signature(for: SHA256.hash(data: input), padding: .insecurePKCS1v1_5).rawRepresentation)
        case .p256(let key):
            return Array(try key.signature(for: SHA256.hash(data: input)).rawRepresentation)
        }
    }
}

/// The gateway's own OAuth client at one authorization server.
public struct OAuthClientCredentials: Sendable, Equatable {
    public var clientID: String
    public var method: ClientAuthenticationMethod
    public var secret: String?
    public var key: AssertionSigningKey?

    public init(clientID: String, method: ClientAuthenticationMethod, secret: String? = nil, key: AssertionSigningKey? = nil) {
        self.clientID = clientID
        self.method = method
        self.secret = secret
        self.key = key
    }

    /// Headers and extra form fields that authenticate one request to `endpoint`.
    ///
    /// - Parameters:
    ///   - now: seconds since the epoch, for the assertion's `iat`/`exp`.
    ///   - jti: a unique id for the assertion (the caller supplies randomness).
    public func authenticate(endpoint: String, now: Int64, jti: String) throws(OAuthClientError) -> (headers: [(String, String)], fields: [(String, String)]) {
        switch self.method {
        case .clientSecretBasic:
            guard let secret else { throw OAuthClientError(.authenticationFailed, "client_secret_basic needs a secret") }
            // RFC 6749 2.3.1: form-encode id and secret before Base64.
            let credentials = FormEncoding.encode(self.clientID) + ":" + FormEncoding.encode(secret)
            return ([("Authorization", "Basic " + Base64URL.encodeStandard(credentials.utf8))], [])
        case .clientSecretPost:
            guard let secret else { throw OAuthClientError(.authenticationFailed, "client_secret_post needs a secret") }
            return ([], [("client_id", self.clientID), ("client_secret", secret)])
        case .privateKeyJWT:
            guard let key else { throw OAuthClientError(.authenticationFailed, "private_key_jwt needs a private key") }
            let assertion: String
            do {
                assertion = try ClientAssertion.make(clientID: self.clientID, audience: endpoint, key: key, now: now, jti: jti)
            } catch {
                throw OAuthClientError(.authenticationFailed, "cannot sign the client assertion: \(error)")
            }
            return ([], [
                ("client_id", self.clientID),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion),
            ])
        }
    }
}

/// Signs compact JWS tokens with a private key (ES256 or RS256).
public struct JWSSigner: Sendable {
    public let key: AssertionSigningKey
    public let keyID: String?

    public init(key: AssertionSigningKey, keyID: String? = nil) {
        self.key = key
        self.keyID = keyID
    }

    /// `header.payload.signature` for `claims`, with `alg`, `kid` (when set) and `typ`.
    public func sign(_ claims: JSONWriter, type: String = "JWT") throws -> String {
        var header = JSONWriter()
        header.add("alg", self.key.algorithm.rawValue)
        if let keyID { header.add("kid", keyID) }
        header.add("typ", type)
        let input = Base64URL.encode(Array(header.string.utf8)) + "." + Base64URL.encode(Array(claims.string.utf8))
        return input + "." + Base64URL.encode(try self.key.sign(Array(input.utf8)))
    }
}

/// RFC 7523 section 3: a JWT the gateway signs to authenticate as its client.
public enum ClientAssertion {
    /// Lifetime of an assertion: long enough for clock skew, short enough to be useless if
    /// replayed later (the `jti` makes it single-use at servers that track them).
    public static let lifetimeSeconds: Int64 = 60

    public static func make(clientID: String, audience: String, key: AssertionSigningKey, now: Int64, jti: String) throws -> String {
        var claims = JSONWriter()
        claims.add("iss", clientID)
        claims.add("sub", clientID)
        claims.add("aud", audience)
        claims.add("iat", .number(String(now)))
        claims.add("exp", .number(String(now + Self.lifetimeSeconds)))
        claims.add("jti", jti)
        return try JWSSigner(key: key).sign(claims)
    }
}
