/// Protects a struggling authorization server: after `threshold` consecutive failures the
/// breaker opens and calls fail fast for `openSeconds`, doubling (up to `maxOpenSeconds`) each
/// time a trial call fails. Pure: time is passed in.
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        case closed(failures: Int)
        /// Failing fast until `until`; then one trial call is let through.
        case open(until: Int64, backoff: Int64)
        /// The trial call is in flight; others fail fast.
        case halfOpen(backoff: Int64)
    }

    public private(set) var state = State.closed(failures: 0)
    public let threshold: Int
    public let openSeconds: Int64
    public let maxOpenSeconds: Int64

    public init(threshold: Int = 3, openSeconds: Int64 = 2, maxOpenSeconds: Int64 = 60) {
        self.threshold = threshold
        self.openSeconds = openSeconds
        self.maxOpenSeconds = maxOpenSeconds
    }

    /// Whether a call may go out now.
    public mutating func allow(now: Int64) -> Bool {
        switch self.state {
        case .closed: return true
        case .open(let until, let backoff):
            guard now >= until else { return false }
            self.state = .halfOpen(backoff: backoff)
            return true
        case .halfOpen: return false
        }
    }

    /// The call `allow` let out never reached the server (it failed before, on this side: a
    /// client assertion that could not be signed): nothing is learnt about the server, so a
    /// trial slot is given back (the breaker is open again, due at once) and failures are not
    /// counted or forgiven.
    public mutating func callNotMade() {
        if case .halfOpen(let backoff) = self.state {
            self.state = .open(until: .min, backoff: backoff)
        }
    }

    public mutating func recordSuccess() {
        self.state = .closed(failures: 0)
    }

    public mutating func recordFailure(now: Int64) {
        switch self.state {
        case .closed(let failures):
            if failures + 1 >= self.threshold {
                self.state = .open(until: now + self.openSeconds, backoff: self.openSeconds)
            } else {
                self.state = .closed(failures: failures + 1)
            }
        case .halfOpen(let backoff), .open(_, let backoff):
            let next = min(backoff * 2, self.maxOpenSeconds)
            self.state = .open(until: now + next, backoff: next)
        }
    }
}
