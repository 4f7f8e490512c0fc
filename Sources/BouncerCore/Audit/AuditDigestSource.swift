import Crypto
import W3CTraceContext

/// A value that is digested on its way into the audit trail and never written: the bearer
/// token (`token_id`) and the upstream's session id (`session`). It has no description, so
/// interpolating it by mistake prints nothing of it.
public struct AuditDigestSource: Sendable, CustomStringConvertible {
    let value: String
    /// ``digest``, when the caller already has it (the gateway remembers its connection's last
    /// token).
    let knownDigest: UInt64?

    public init(_ value: String) {
        self.value = value
        self.knownDigest = nil
    }

    /// A value whose ``digest`` is already known: the value itself is not kept. A plain
    /// integer, so the entry shares no storage with the event loop that made it.
    public init(digest: UInt64) {
        self.value = ""
        self.knownDigest = digest
    }
    public var description: String { "[digested]" }

    /// The first 16 hex digits of SHA-256 of the value: enough to correlate records, too short
    /// and one-way to recover the value (a token is high-entropy; its hash is not an oracle).
    public var shortDigest: String {
        var out: [UInt8] = []
        Hex.append(self.digest, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The first 8 bytes of SHA-256 of the value, big-endian.
    public var digest: UInt64 { self.knownDigest ?? Self.digest(of: self.value) }

    /// ``shortDigest`` of `value`.
    public static func hex(of value: String) -> String {
        AuditDigestSource(value).shortDigest
    }

    public static func digest(of value: String) -> UInt64 {
        var value = value
        let digest = value.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return digest.withUnsafeBytes { bytes in bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }
    }
}
