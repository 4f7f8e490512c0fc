/// A bounded cache whose entries expire at a time of their own, evicting the least recently
/// used entries when full. Pure: the time is passed in. O(1) lookups. When an insert finds it
/// full, it drops every expired entry and, if that is not enough, the least recently used
/// eighth in one pass: the next eviction is then at least capacity/8 inserts away, so a cache
/// churning at capacity (more distinct tokens than entries) pays O(log n) per insert, not a
/// scan of every entry per insert.
public struct ExpiringCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var value: Value
        @usableFromInline var expiresAt: Int64
        @usableFromInline var lastUsed: UInt64

        @usableFromInline
        init(value: Value, expiresAt: Int64, lastUsed: UInt64) {
            self.value = value
            self.expiresAt = expiresAt
            self.lastUsed = lastUsed
        }
    }

    public let capacity: Int
    @usableFromInline var entries: [Key: Entry] = [:]
    @usableFromInline var clock: UInt64 = 0

    public init(capacity: Int) {
        self.capacity = capacity
    }

    public var count: Int { self.entries.count }

    /// The value if present and `now` is before its expiry. Inlinable: it runs on every
    /// request from other modules, and unspecialised it goes through value witnesses.
    @inlinable
    public mutating func value(for key: Key, now: Int64) -> Value? {
        // One hash of the key (tokens are long): find, then update in place.
        guard let index = self.entries.index(forKey: key) else { return nil }
        guard now < self.entries.values[index].expiresAt else {
            self.entries.remove(at: index)
            return nil
        }
        self.clock &+= 1
        self.entries.values[index].lastUsed = self.clock
        return self.entries.values[index].value
    }

    /// Stores `value` until `expiresAt` (exclusive). Values already expired are not stored.
    public mutating func set(_ value: Value, for key: Key, expiresAt: Int64, now: Int64) {
        guard self.capacity > 0, expiresAt > now else { return }
        if self.entries.count >= self.capacity, self.entries.index(forKey: key) == nil {
            self.evict(now: now)
        }
        self.clock &+= 1
        self.entries[key] = Entry(value: value, expiresAt: expiresAt, lastUsed: self.clock)
    }

    private mutating func evict(now: Int64) {
        self.entries = self.entries.filter { $0.value.expiresAt > now }
        guard self.entries.count >= self.capacity else { return }
        let batch = max(1, self.capacity / 8)
        let cutoff = self.entries.values.map(\.lastUsed).sorted()[batch - 1]
        self.entries = self.entries.filter { $0.value.lastUsed > cutoff }
    }

    public mutating func remove(_ key: Key) {
        self.entries[key] = nil
    }
}
