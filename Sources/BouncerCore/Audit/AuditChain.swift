import Crypto
import CryptoExtras

/// The audit trail's hash chain: every record carries `seq`, `prev` (the hash of the record
/// before it) and `hash`, SHA-256 over the record's RFC 8785 form without its `hash` member
/// (with `prev`). Deleting, inserting, reordering or editing a line breaks it. With a signing
/// key, `checkpoint` records sign the chain head (``AuditSigner``).
///
/// A value: the writer thread owns one and asks it for lines. Time comes in as an argument.
public struct AuditChain: Sendable {
    /// `prev` of the first record of a new chain.
    public static let genesis = String(repeating: "0", count: 64)

    /// The `seq` of the last record written (0 before the first).
    public private(set) var seq: Int64
    /// The hash of the last record written, 64 hex digits.
    public var head: String { String(decoding: self.headDigits, as: UTF8.self) }
    /// The same, as bytes: overwritten in place by every record.
    private var headDigits: [UInt8]
    /// Records written since the last checkpoint (or the start).
    public private(set) var unsignedRecords = 0
    /// When the oldest of them was written, for the 10-second rule.
    public private(set) var oldestUnsignedAt: Int64?

    public private(set) var formatter: AuditRecordFormatter
    public let signer: AuditSigner?
    /// Reused for every record: its storage is kept between records.
    private var object = CanonicalObjectBuilder()
    /// Records between checkpoints (`audit.checkpoint_every`).
    public let checkpointEvery: Int
    /// The longest a record stays unsigned while records flow.
    public let checkpointIntervalMilliseconds: Int64

    public init(
        formatter: AuditRecordFormatter, signer: AuditSigner?, checkpointEvery: Int = 1000, checkpointIntervalMilliseconds: Int64 = 10_000,
        resumingAfter last: AuditChainPosition? = nil
    ) {
        self.formatter = formatter
        self.signer = signer
        self.checkpointEvery = max(1, checkpointEvery)
        self.checkpointIntervalMilliseconds = checkpointIntervalMilliseconds
        self.seq = last?.seq ?? 0
        self.headDigits = Array((last?.hash ?? Self.genesis).utf8)
    }

    /// Appends the line (with its newline) for `entry`, written at `now` (milliseconds since
    /// the epoch), followed by a checkpoint line when one is due by count. Returns the number
    /// of records appended (1 or 2).
    @discardableResult
    public mutating func append(_ entry: AuditEntry, now: Int64, into out: inout [UInt8]) -> Int {
        switch entry {
        case .request(let request):
            self.seq += 1
            let start = out.count
            self.formatter.write(request, chain: AuditChainMembers(prev: self.headDigits, seq: self.seq, ts: now), into: &out)
            self.finish(from: start, into: &out)
        case .gateway(let event, let members):
            self.object.removeAll()
            AuditRecordFormatter.members(of: event, members, into: &self.object)
            self.seal(now: now, into: &out)
        case .dropped(let count):
            self.object.removeAll()
            AuditRecordFormatter.members(of: .dropped, ["count": .number(String(count))], into: &self.object)
            self.seal(now: now, into: &out)
        }
        self.unsignedRecords += 1
        if self.oldestUnsignedAt == nil { self.oldestUnsignedAt = now }
        if self.signer != nil, self.unsignedRecords >= self.checkpointEvery {
            return 1 + (self.checkpoint(now: now, into: &out) ? 1 : 0)
        }
        return 1
    }

    /// The same, as a string (tests and tools).
    public mutating func append(_ entry: AuditEntry, now: Int64) -> String {
        var out: [UInt8] = []
        self.append(entry, now: now, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether a checkpoint is due by time: records have waited unsigned for the interval.
    public func checkpointDue(now: Int64) -> Bool {
        guard self.signer != nil, let oldest = self.oldestUnsignedAt else { return false }
        return now - oldest >= self.checkpointIntervalMilliseconds
    }

    /// A checkpoint line over the current head, or "" without a signer or with nothing to
    /// sign (at shutdown, on reopen, by time).
    public mutating func checkpoint(now: Int64) -> String {
        var out: [UInt8] = []
        self.checkpoint(now: now, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends a checkpoint line when there is a signer and something to sign; returns whether
    /// it did.
    @discardableResult
    public mutating func checkpoint(now: Int64, into out: inout [UInt8]) -> Bool {
        guard let signer = self.signer, self.unsignedRecords > 0 else { return false }
        let signed = self.unsignedRecords
        self.object.removeAll()
        self.object.add("event", AuditEvent.checkpoint.rawValue)
        self.object.add("head", self.head)
        self.object.add("head_seq", self.seq)
        self.object.add("key_id", signer.keyID)
        self.object.add("records", signed)
        self.object.add("signature", signer.sign(headSeq: self.seq, head: self.head))
        self.seal(now: now, into: &out)
        self.unsignedRecords = 0
        self.oldestUnsignedAt = nil
        return true
    }

    /// Adds `v`, `seq`, `ts` and `prev` to the builder's members and appends the line.
    private mutating func seal(now: Int64, into out: inout [UInt8]) {
        self.seq += 1
        self.object.add("prev", self.head)
        self.object.add("seq", self.seq)
        self.object.add("ts", time: now)
        self.object.add("v", AuditRecordFormatter.version)
        let start = out.count
        self.object.build(into: &out)
        self.finish(from: start, into: &out)
    }

    /// Hashes the canonical record that ends `out` (from `start`), adds `hash` and the newline,
    /// and makes the hash the new head.
    private mutating func finish(from start: Int, into out: inout [UInt8]) {
        let digest = out[start...].withUnsafeBytes { SHA256.hash(data: $0) }
        // `hash` goes last, outside the canonical order: verifiers remove it and
        // re-canonicalise, so its place does not matter.
        out.removeLast()
        out.append(contentsOf: #","hash":""#.utf8)
        let hashStart = out.count
        Hex.append(digest, to: &out)  // the Digest overload: through its buffer
        self.headDigits.withUnsafeMutableBufferPointer { head in
            out.withUnsafeBufferPointer { written in
                for index in 0..<64 { head[index] = written[hashStart + index] }
            }
        }
        out.append(contentsOf: "\"}\n".utf8)
    }

    public static func hash(_ canonical: [UInt8]) -> String {
        Hex.encode(SHA256.hash(data: canonical))
    }
}

/// Where an existing chain ended: what a restarted gateway continues from.
public struct AuditChainPosition: Sendable, Equatable {
    public var seq: Int64
    public var hash: String

    public init(seq: Int64, hash: String) {
        self.seq = seq
        self.hash = hash
    }

    /// Reads the position from the last complete line of an audit file. `nil` when the line is
    /// not a chained record (the caller refuses to continue an unknown file).
    public init?(lastLine: some Collection<UInt8>) {
        guard case .object(let members)? = try? JSONParser(maxDepth: 64).parse(lastLine),
              let seq = members["seq"]?.int64Value, let hash = members["hash"]?.stringValue,
              hash.utf8.count == 64, Hex.decode(hash) != nil
        else { return nil }
        self.seq = seq
        self.hash = hash
    }
}

/// Signs checkpoints with an Ed25519 key (`audit.signing_key`).
public struct AuditSigner: Sendable {
    public let key: Curve25519.Signing.PrivateKey
    public var publicKey: Curve25519.Signing.PublicKey { self.key.publicKey }
    public var keyID: String { AuditSigner.keyID(of: self.key.publicKey) }

    public init(key: Curve25519.Signing.PrivateKey) {
        self.key = key
    }

    /// Reads a PEM "PRIVATE KEY" (PKCS#8, RFC 8410) holding an Ed25519 key, as `audit keygen`
    /// and `openssl genpkey -algorithm ed25519` write it (CryptoExtras parses it).
    public init(pem: String) throws(AuditKeyError) {
        guard pem.contains("-----BEGIN") else {
            throw AuditKeyError(.notPEM, "expected a PEM \"PRIVATE KEY\" block (PKCS#8)")
        }
        // CryptoExtras reads any RFC 8410 key's 32 bytes (an X25519 key too): the key is taken
        // only if writing it back as Ed25519 gives the same document.
        guard let key = try? Curve25519.Signing.PrivateKey(pemRepresentation: pem), Self.body(key.pemRepresentation) == Self.body(pem) else {
            throw AuditKeyError(.notEd25519, "the key is not an Ed25519 private key in PKCS#8 (openssl genpkey -algorithm ed25519)")
        }
        self.key = key
    }

    /// A PEM document's base64, without its armour lines and whitespace.
    private static func body(_ pem: String) -> String {
        pem.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("-----") }.joined().filter { !$0.isWhitespace }
    }

    /// The private key as PEM PKCS#8.
    public var privateKeyPEM: String { self.key.pemRepresentation }

    /// The public key as PEM SubjectPublicKeyInfo (`openssl pkey -pubout`).
    public static func publicKeyPEM(_ key: Curve25519.Signing.PublicKey) -> String {
        key.pemRepresentation
    }

    public static func publicKey(pem: String) throws(AuditKeyError) -> Curve25519.Signing.PublicKey {
        guard pem.contains("-----BEGIN") else {
            throw AuditKeyError(.notPEM, "expected a PEM \"PUBLIC KEY\" block")
        }
        do {
            return try Curve25519.Signing.PublicKey(pemRepresentation: pem)
        } catch {
            throw AuditKeyError(.notEd25519, "the key is not an Ed25519 public key (SubjectPublicKeyInfo)")
        }
    }

    /// The first 16 hex digits of SHA-256 of the raw public key.
    public static func keyID(of key: Curve25519.Signing.PublicKey) -> String {
        String(Hex.encode(SHA256.hash(data: key.rawRepresentation)).prefix(16))
    }

    /// What a checkpoint signs: the chain head and its position.
    public static func signedMessage(headSeq: Int64, head: String) -> [UInt8] {
        Array("mcp-bouncer-audit-v1|\(headSeq)|\(head)".utf8)
    }

    public func sign(headSeq: Int64, head: String) -> String {
        // Ed25519 signing cannot fail for a valid key and a message in memory.
        guard let signature = try? self.key.signature(for: Self.signedMessage(headSeq: headSeq, head: head)) else { return "" }
        return Base64URL.encode(signature)
    }
}

public struct AuditKeyError: CodedError {
    public enum Code: String, Sendable {
        case notPEM = "not_pem"
        case notEd25519 = "not_ed25519"
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}
