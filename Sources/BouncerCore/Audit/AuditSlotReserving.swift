/// A queue that takes a slot for a request's record before the request goes on
/// (`audit.on_overflow: refuse`): the audit trail, to ``Enforcement/admitCall(_:facts:resource:claims:token:sessions:clock:lastSeen:auditSlots:)``.
public protocol AuditSlotReserving: AnyObject, Sendable {
    /// Takes a slot; false when the queue is full.
    func reserve() -> Bool
}
