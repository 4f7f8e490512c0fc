/// `rate_limit:` of a resource: a token bucket per (resource, issuer, subject).
public struct RateLimit: Sendable, Hashable {
    /// Tokens added per second: the sustained rate.
    public var requestsPerSecond: Double
    /// The bucket's size: how many requests may come at once after a quiet spell.
    public var burst: Int

    public init(requestsPerSecond: Double, burst: Int) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst
    }
}

/// Token buckets, one per key (a resource's user), in bounded memory. Pure: the time is
/// passed in (nanoseconds on a monotonic clock). Not thread-safe; the gateway keeps one per
/// resource behind a lock.
///
/// Memory: at most `capacity` buckets. When a new key comes and the table is full, the buckets
/// that have refilled (idle long enough to be indistinguishable from a new one) are dropped;
/// if none has, the tenth idle longest go (their users get a full bucket next time: the limit
/// errs on the side of serving under a flood of distinct users, which the bound is for).
public struct RateLimiter: Sendable {
    public enum Decision: Equatable, Sendable {
        case allowed
        /// Refused; a token will be there in `retryAfterSeconds` (at least 1, for `Retry-After`).
        case limited(retryAfterSeconds: Int)
    }

    private struct Bucket {
        var tokens: Double
        var updated: Int64
    }

    public let rate: RateLimit
    public let capacity: Int
    private var buckets: [String: Bucket] = [:]

    public static let defaultCapacity = 100_000

    public init(rate: RateLimit, capacity: Int = Self.defaultCapacity) {
        precondition(rate.requestsPerSecond > 0 && rate.burst >= 1 && capacity >= 1)
        self.rate = rate
        self.capacity = capacity
    }

    /// How many keys have a bucket.
    public var count: Int { self.buckets.count }

    /// Takes one token from `key`'s bucket, if it has one.
    public mutating func take(_ key: String, now: Int64) -> Decision {
        let burst = Double(self.rate.burst)
        var bucket: Bucket
        if let existing = self.buckets[key] {
            bucket = existing
            let elapsed = Double(max(0, now - bucket.updated)) / 1e9
            bucket.tokens = min(burst, bucket.tokens + elapsed * self.rate.requestsPerSecond)
        } else {
            if self.buckets.count >= self.capacity { self.evict(now: now) }
            bucket = Bucket(tokens: burst, updated: now)
        }
        bucket.updated = now
        guard bucket.tokens >= 1 else {
            self.buckets[key] = bucket
            let wait = (1 - bucket.tokens) / self.rate.requestsPerSecond
            return .limited(retryAfterSeconds: max(1, Int(wait.rounded(.up))))
        }
        bucket.tokens -= 1
        self.buckets[key] = bucket
        return .allowed
    }

    /// Drops every bucket that has refilled; if that frees nothing, the tenth idle longest.
    private mutating func evict(now: Int64) {
        let refill = Int64((Double(self.rate.burst) / self.rate.requestsPerSecond * 1e9).rounded(.up))
        self.buckets = self.buckets.filter { now - $0.value.updated < refill }
        if self.buckets.count >= self.capacity {
            // A tenth at once, so a flood of new keys sorts once per tenth, not once per key.
            let idlest = self.buckets.sorted { $0.value.updated < $1.value.updated }.prefix(self.capacity / 10 + 1)
            for (key, _) in idlest { self.buckets[key] = nil }
        }
    }
}
