import BouncerCore
import Foundation
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
import Prometheus
#endif

/// The audit trail: event loops hand entries to a bounded queue; one writer thread drains it,
/// chains the records (``AuditChain``), writes them in batches and syncs them as
/// `audit.fsync` says. The event loop never touches a file and never waits: when the queue is
/// full, `audit.on_overflow` drops the record (counted; a `dropped` record follows) or, with
/// `refuse`, the request is refused before anything is forwarded (``reserve()``).
///
/// A failing sink (disk full, a file removed or replaced) is logged, counted, and makes
/// ``isHealthy`` false (`/readyz`); records wait in memory (up to a bound) and are written
/// when the sink recovers. SIGUSR1 (``reopen()``) closes the file and opens the path again,
/// so logrotate works; the chain carries on into the new file, after a checkpoint closes the
/// old one. A restarted gateway continues the chain of the file it finds.
public final class AuditTrail: AuditSlotReserving, @unchecked Sendable {
    // Everything below the condition is guarded by it; `settings`, `metrics` and `logger` are
    // immutable. The writer thread alone touches `writer` and `batch`.
    private let condition = NSCondition()
    private var queue: [(entry: AuditEntry, at: Int64)] = []
    /// The entries the writer is chaining: swapped with the (then empty) queue under the lock,
    /// so neither array's storage is copied or reallocated from one batch to the next.
    private var batch: [(entry: AuditEntry, at: Int64)] = []
    private var reserved = 0
    private var dropped = 0
    private var stopping = false
    private var stopped = false
    private var reopenRequested = false
    /// Whether the writer thread sleeps with nothing to do, so the next entry must wake it.
    /// Once woken it gathers entries for ``batchWindow`` before writing, and nobody signals it
    /// meanwhile: under load that is one wake-up and one `write(2)` per window, not per request.
    private var writerIdle = false
    private var failure: String?

    public let settings: AuditSettings
    /// Whether entries should carry tool arguments (`audit.arguments` is not `none`).
    public var keepsArguments: Bool { self.settings.arguments != .none }
    private let metrics: GatewayMetrics
    private let logger: Logger
    /// `ts` of every record, and the writer's deadlines (sync, checkpoint, retry).
    private let clock: WallClock
    private var writer: Writer
    private var thread: Thread?

    /// The most bytes of chained records kept in memory while the sink fails.
    static let maxPendingBytes = 16 * 1024 * 1024
    static let fsyncInterval: Int64 = 1000
    /// How long the writer gathers entries after the first one wakes it.
    static let batchWindow = 0.02

    /// Opens the sink and reads where an existing file's chain ended. Throws when the file
    /// cannot be opened or is not an audit file (it is never overwritten).
    public init(settings: AuditSettings, metrics: GatewayMetrics, logger: Logger, clock: WallClock = .system) throws(AuditSinkError) {
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.writer = try Writer(settings: settings, clock: clock)
        metrics.auditSinkUp.set(Int64(1))
    }

    /// Bytes of a record cut short by a crash that were removed from the file's end when it
    /// was opened (0 when the file ended with a whole record). The `start` record says so.
    public var tornTailBytes: Int { self.writer.tornTailBytes }

    /// Starts the writer thread and writes the `start` record (with `torn_tail_bytes` when
    /// the file's torn end was cut).
    public func start(details: [String: JSONValue]) {
        var details = details
        if self.writer.tornTailBytes > 0 {
            details["torn_tail_bytes"] = .number(String(self.writer.tornTailBytes))
            self.logger.warning("audit file ended in a record cut short (a crash); the torn tail was removed and the chain continues from the last whole record", metadata: [
                "file": "\(self.settings.file)", "bytes_cut": "\(self.writer.tornTailBytes)",
            ])
        }
        self.submit(.gateway(.start, details))
        let thread = Thread { [self] in self.runWriter() }
        thread.name = "mcp-bouncer-audit"
        self.thread = thread
        thread.start()
    }

    /// Whether the sink accepts writes; `/readyz` reports false.
    public var isHealthy: Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.failure == nil
    }

    /// Why the sink fails, when it does.
    public var failureReason: String? {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.failure
    }

    // MARK: The event loops' side

    /// Queues an entry. `reserved` spends a slot taken by ``reserve()``. Never blocks beyond a
    /// short lock; returns false when the entry was dropped.
    @discardableResult
    public func submit(_ entry: AuditEntry, reserved: Bool = false) -> Bool {
        let now = self.clock.milliseconds()
        self.condition.lock()
        if reserved {
            self.reserved -= 1
        } else if self.stopped || self.queue.count + self.reserved >= self.settings.queueCapacity {
            self.dropped += 1
            self.condition.unlock()
            self.metrics.auditDropped.increment()
            return false
        }
        self.queue.append((entry, now))
        let wake = self.writerIdle
        self.writerIdle = false
        self.condition.unlock()
        if wake { self.condition.signal() }
        return true
    }

    /// Takes a slot in the queue for a record that ``submit(_:reserved:)`` will bring later:
    /// with `on_overflow: refuse`, a request is forwarded only when its record is sure to be
    /// queued. False when the queue is full (or the trail stopped).
    public func reserve() -> Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.stopped, self.queue.count + self.reserved < self.settings.queueCapacity else { return false }
        self.reserved += 1
        return true
    }

    /// Gives back a slot that will not be used.
    public func release() {
        self.condition.lock()
        self.reserved -= 1
        self.condition.unlock()
    }

    /// Reopens the file (SIGUSR1): after logrotate has moved it away.
    public func reopen() {
        self.condition.lock()
        self.reopenRequested = true
        self.condition.unlock()
        self.condition.signal()
    }

    /// Writes the `stop` record and a final checkpoint, syncs, closes, and returns when the
    /// writer thread is done. Entries submitted later are dropped.
    public func stop(details: [String: JSONValue] = [:]) {
        self.condition.lock()
        let already = self.stopped || self.stopping
        self.condition.unlock()
        guard !already else { return }
        self.submit(.gateway(.stop, details))
        self.condition.lock()
        self.stopping = true
        self.condition.signal()
        while !self.stopped, self.thread != nil { self.condition.wait() }
        self.stopped = true
        self.condition.unlock()
        if self.thread == nil {
            // Never started (a test, or startup failed): write what there is on this thread.
            self.drain(final: true)
        }
    }


    // MARK: The writer thread

    private func runWriter() {
        while true {
            let final = self.waitForWork()
            self.drain(final: final)
            if final { break }
        }
        self.condition.lock()
        self.stopped = true
        self.condition.broadcast()
        self.condition.unlock()
    }

    /// Waits until there is something to do: entries, a reopen, a stop, or a deadline (sync,
    /// checkpoint, retry). Returns whether the trail is stopping.
    private func waitForWork() -> Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        while !self.stopping && !self.reopenRequested {
            // While too much waits unwritten, entries stay queued (the queue's bound applies)
            // until a retry succeeds.
            let canTake = self.writer.pendingBytes < Self.maxPendingBytes
            if canTake && (!self.queue.isEmpty || self.dropped > 0) {
                // Gather a batch: producers do not signal during the window.
                _ = self.condition.wait(until: Date(timeIntervalSinceNow: Self.batchWindow))
                break
            }
            self.writerIdle = true
            defer { self.writerIdle = false }
            guard let deadline = self.writer.nextDeadline() else {
                self.condition.wait()
                continue
            }
            let wait = Double(deadline - self.clock.milliseconds()) / 1000
            if wait <= 0 { break }
            if !self.condition.wait(until: Date(timeIntervalSinceNow: wait)) { break }
        }
        return self.stopping
    }

    /// Entries waiting for the writer thread (`mcp_bouncer_audit_queue_depth`).
    public var queueDepth: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.queue.count
    }

    /// Chains and writes what is queued. Runs on the writer thread (or, for a trail that was
    /// never started, on the thread that stops it).
    private func drain(final: Bool) {
        self.condition.lock()
        var droppedCount = 0
        if self.writer.pendingBytes < Self.maxPendingBytes || final {
            swap(&self.queue, &self.batch)
            droppedCount = self.dropped
            self.dropped = 0
        }
        let reopen = self.reopenRequested
        self.reopenRequested = false
        self.condition.unlock()

        let now = self.clock.milliseconds()
        let written = self.writer.chain(self.batch, dropped: droppedCount, now: now, checkpoint: final || reopen)
        self.batch.removeAll(keepingCapacity: true)
        self.metrics.auditRecords.increment(by: Int64(written))
        let errors = self.writer.errors
        self.writer.flush(now: now, sync: final)
        if reopen {
            self.writer.reopen()
        } else if !final {
            self.writer.checkReplaced(now: now)
        }
        if final { self.writer.close() }
        self.metrics.auditSinkErrors.increment(by: Int64(self.writer.errors - errors))
        self.report(self.writer.failure)
    }

    /// Logs a sink failure once when it starts (and when its reason changes), and its recovery.
    private func report(_ failure: String?) {
        self.condition.lock()
        let previous = self.failure
        self.failure = failure
        self.condition.unlock()
        guard previous != failure else { return }
        if let failure {
            self.metrics.auditSinkUp.set(Int64(0))
            self.logger.error("audit sink failing", metadata: ["file": "\(self.settings.file)", "reason": "\(failure)"])
        } else {
            self.metrics.auditSinkUp.set(Int64(1))
            self.logger.notice("audit sink recovered", metadata: ["file": "\(self.settings.file)"])
        }
    }
}
