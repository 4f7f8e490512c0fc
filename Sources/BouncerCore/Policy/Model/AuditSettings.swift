/// `audit:`: the signed, hash-chained audit trail (`docs/audit.md`).
public struct AuditSettings: Sendable {
    /// A file path, or `-` for standard output.
    public var file: String
    public var arguments = AuditArgumentsMode.hash
    /// Signs checkpoints when set.
    public var signingKey: AuditSigner?
    public var checkpointEvery = 1000
    public var fsync = AuditFsync.interval
    public var onOverflow = AuditOverflow.drop
    /// Records waiting for the writer thread before `on_overflow` applies.
    public var queueCapacity = 65_536

    public init(file: String) {
        self.file = file
    }

    public var isStandardOutput: Bool { self.file == "-" }

    public static let integerSettings: [IntegerSetting<AuditSettings>] = [
        IntegerSetting(key: "checkpoint_every", range: 1...100_000_000, field: .int(\.checkpointEvery)),
        IntegerSetting(key: "queue_capacity", range: 16...10_000_000, field: .int(\.queueCapacity)),
    ]
}

/// `audit.fsync`: when written records are forced to disk.
public enum AuditFsync: String, Sendable, CaseIterable {
    /// Left to the kernel.
    case never
    /// At most a second after they are written.
    case interval
    /// After every batch the writer thread writes.
    case always
}

/// `audit.on_overflow`: what happens to a record when the writer's queue is full.
public enum AuditOverflow: String, Sendable, CaseIterable {
    /// The record is dropped and counted; a `dropped` record with the count follows when there
    /// is room.
    case drop
    /// Requests that would go unrecorded are refused with 503 before anything is forwarded.
    case refuse
}
