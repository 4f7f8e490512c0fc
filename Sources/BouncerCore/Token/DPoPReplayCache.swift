/// The `jti`s of the DPoP proofs seen lately, per key thumbprint, each kept until its proof
/// could no longer pass the `iat` window (RFC 9449 §11.1): the same proof a second time is a
/// replay. Bounded: when full of unexpired entries it refuses (the caller answers 401 asking
/// for a fresh proof, and counts it), never forgetting one that could still be replayed. Pure:
/// time comes in as seconds. Per replica: behind a load balancer, the same proof sent to two
/// replicas is seen by each once (balance by `Authorization` to close that gap).
public struct DPoPReplayCache: Sendable {
    public enum Admission: Sendable, Equatable {
        case fresh
        case replayed
        case full
    }

    public let capacity: Int
    private var expiries: [String: Int64] = [:]
    /// Keys in the order they came, for expiring the oldest first.
    private var order: [(key: String, expiresAt: Int64)] = []
    private var head = 0

    public init(capacity: Int) {
        self.capacity = capacity
    }

    public var count: Int { self.expiries.count }

    /// Records the proof `jti` of the key `thumbprint`, remembered until `expiresAt`.
    public mutating func admit(thumbprint: String, jti: String, expiresAt: Int64, now: Int64) -> Admission {
        self.expire(now: now)
        let key = "\(thumbprint) \(jti)"
        if let known = self.expiries[key], known > now { return .replayed }
        guard self.expiries.count < self.capacity else { return .full }
        self.expiries[key] = expiresAt
        self.order.append((key, expiresAt))
        return .fresh
    }

    private mutating func expire(now: Int64) {
        while self.head < self.order.count, self.order[self.head].expiresAt <= now {
            let (key, expiresAt) = self.order[self.head]
            if self.expiries[key] == expiresAt { self.expiries[key] = nil }
            self.head += 1
        }
        if self.head > 1024, self.head * 2 > self.order.count {
            self.order.removeFirst(self.head)
            self.head = 0
        }
    }
}
