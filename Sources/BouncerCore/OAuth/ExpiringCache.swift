/// A bounded cache whose entries expire at a time of their own, evicting the least recently
/// used entry when full. Pure: the time is passed in. O(1) lookups; eviction scans when full,
/// which amortises because it removes every expired entry at once.
public struct ExpiringCache<Value: Sendable>: Sendable {
    private struct Entry: Sendable {
        var value: Value
        var expiresAt: Int64
        var lastUsed: UInt64
    }

    public let capacity: Int
    private var entries: [String: Entry] = [:]
    private var clock: UInt64 = 0

    public init(capacity: Int) {
        self.capacity = capacity
    }

    public var count: Int { self.entries.count }

    /// The value if present and `now` is before its expiry.
    public mutating func value(for key: String, now: Int64) -> Value? {
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
    public mutating func set(_ value: Value, for key: String, expiresAt: Int64, now: Int64) {
        guard self.capacity > 0, expiresAt > now else { return }
        if self.entries[key] == nil, self.entries.count >= self.capacity {
            self.entries = self.entries.filter { $0.value.expiresAt > now }
            if self.entries.count >= self.capacity, let oldest = self.entries.min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
                self.entries[oldest.key] = nil
            }
        }
        self.clock &+= 1
        self.entries[key] = Entry(value: value, expiresAt: expiresAt, lastUsed: self.clock)
    }

    public mutating func remove(_ key: String) {
        self.entries[key] = nil
    }
}
