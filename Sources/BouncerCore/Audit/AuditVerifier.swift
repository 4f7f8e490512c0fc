import Crypto

/// Checks audit files, in order, record by record: each record's hash, the chain from one
/// record to the next (across files: a rotated file's first record continues the previous
/// file's last), `seq` without gaps and, with a public key, every checkpoint's signature and that
/// no record comes after the last checkpoint. Stops at the first break, naming its file and
/// line. `mcp-bouncer audit verify` feeds it lines; the tests feed it strings.
public struct AuditVerifier: Sendable {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// Not a JSON object with the record's members (a cut or garbled line).
            case malformed
            /// The record's members do not match its hash.
            case edited
            /// `prev` is not the previous record's hash: a record was deleted, inserted or
            /// moved here.
            case chainBroken = "chain_broken"
            /// `seq` does not follow the previous record's.
            case sequence
            /// A checkpoint's head is not the chain's.
            case checkpointHead = "checkpoint_head"
            /// A checkpoint signed by another key than the one given.
            case wrongKey = "wrong_key"
            /// A checkpoint whose signature does not verify.
            case badSignature = "bad_signature"
            /// Records after the last checkpoint: nothing signs them.
            case unsignedTail = "unsigned_tail"
        }

        public var kind: Kind
        public var file: String
        public var line: Int
        public var message: String

        public var description: String { "\(self.file):\(self.line): \(self.message)" }
    }

    public let publicKey: Curve25519.Signing.PublicKey?
    public private(set) var records = 0
    public private(set) var checkpoints = 0

    private var file = ""
    private var head: String?
    private var seq: Int64?
    private var firstInFile = true
    /// The first record not covered by a checkpoint, and how many there are.
    private var unsignedFrom: (file: String, line: Int)?
    private var unsigned = 0

    public init(publicKey: Curve25519.Signing.PublicKey?) {
        self.publicKey = publicKey
    }

    public mutating func beginFile(_ name: String) {
        self.file = name
        self.firstInFile = true
    }

    /// Checks the record on line `number` (1-based) of the current file.
    public mutating func verify(line: some Collection<UInt8>, number: Int) -> Failure? {
        func failure(_ kind: Failure.Kind, _ message: String) -> Failure {
            Failure(kind: kind, file: self.file, line: number, message: message)
        }
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: 64).parse(line)
        } catch {
            return failure(.malformed, line.isEmpty ? "an empty line, not an audit record" : "not a JSON audit record (\(error))")
        }
        guard case .object(var members) = value, case .string(let hash)? = members.removeValue(forKey: "hash"),
              case .string(let prev)? = members["prev"], let seq = members["seq"]?.int64Value,
              members["v"]?.int64Value == Int64(AuditRecordFormatter.version), case .string(let event)? = members["event"]
        else {
            return failure(.malformed, "not an audit record of version \(AuditRecordFormatter.version) (v, seq, event, prev and hash are required)")
        }
        guard AuditChain.hash(CanonicalJSON.bytes(.object(members))) == hash else {
            return failure(.edited, "the record was altered: its content does not match its hash")
        }
        // The first record read is taken as it is (it may continue a file not given); every
        // later one must follow, across files too. A new chain can only be the first file's.
        if let head = self.head {
            guard prev == head else {
                if prev == AuditChain.genesis, self.firstInFile {
                    return failure(.chainBroken, "this file starts a new chain, so it does not continue the file before it (a gateway started without its previous audit file writes one); verify it on its own")
                }
                return failure(.chainBroken, "the chain is broken: prev is not the hash of the record before it (a record was deleted, inserted or moved here, or the files are out of order)")
            }
            if let last = self.seq, seq != last + 1 {
                return failure(.sequence, "seq \(seq) does not follow \(last)")
            }
        }
        if event == AuditEvent.checkpoint.rawValue {
            if let failure = self.verifyCheckpoint(members, prev: prev, seq: seq, failure: failure) { return failure }
            self.checkpoints += 1
            self.unsigned = 0
            self.unsignedFrom = nil
        } else {
            if self.unsigned == 0 { self.unsignedFrom = (self.file, number) }
            self.unsigned += 1
        }
        self.records += 1
        self.head = hash
        self.seq = seq
        self.firstInFile = false
        return nil
    }

    private func verifyCheckpoint(
        _ members: [String: JSONValue], prev: String, seq: Int64, failure: (Failure.Kind, String) -> Failure
    ) -> Failure? {
        guard case .string(let head)? = members["head"], let headSeq = members["head_seq"]?.int64Value,
              case .string(let keyID)? = members["key_id"], case .string(let signature)? = members["signature"]
        else {
            return failure(.malformed, "a checkpoint without head, head_seq, key_id and signature")
        }
        guard head == prev, headSeq == seq - 1 else {
            return failure(.checkpointHead, "the checkpoint's head is not the record before it")
        }
        guard let publicKey = self.publicKey else { return nil }
        let expected = AuditSigner.keyID(of: publicKey)
        guard keyID == expected else {
            return failure(.wrongKey, "the checkpoint was signed by key \(keyID), not by the given key \(expected)")
        }
        guard let signatureBytes = Base64URL.decode(signature),
              publicKey.isValidSignature(signatureBytes, for: AuditSigner.signedMessage(headSeq: headSeq, head: head))
        else {
            return failure(.badSignature, "the checkpoint's signature does not verify with the given public key")
        }
        return nil
    }

    /// After the last file: with a public key, every record must be signed by a checkpoint.
    public func finish() -> Failure? {
        guard self.publicKey != nil, self.unsigned > 0, let from = self.unsignedFrom else { return nil }
        return Failure(
            kind: .unsignedTail, file: from.file, line: from.line,
            message: "\(self.unsigned) record\(self.unsigned == 1 ? "" : "s") from here on come\(self.unsigned == 1 ? "s" : "") after the last checkpoint and are not signed: the file was truncated or appended to after its last checkpoint, or the gateway did not stop cleanly (or is still writing)"
        )
    }
}
