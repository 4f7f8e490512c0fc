import NIOCore

/// A client connection's life, as a value: which request part is served now and which waits
/// its turn (pipelining, RFC 9112 9.3.2), when reading pauses, when the connection is idle or
/// a head too slow, how much framing a request may carry, and how it closes. Each
/// event-named method returns what to do; the handler applies it and holds the data (the
/// parts waiting, the request, the exchange), as NIO's `HTTPServerPipelineHandler` keeps its
/// buffer beside its state. Time is passed in: one timer per connection, armed where the
/// machine says, serves the idle, header-read and linger deadlines.
///
/// The rules, tested without channels or sleeps:
/// - one request at a time: parts that arrive while one is being decided or answered wait
///   in order, and reading pauses while any wait, so a client cannot queue without bound;
/// - a client that sends nothing for `idleTimeout` while the gateway waits on it is closed
///   (a quiet stream or a slow upstream is not the client idling);
/// - a head must arrive whole within `headerReadTimeout` of its first byte (408), whatever
///   the pace of its bytes (slowloris);
/// - bytes a request carries beyond its head and body (chunk sizes, extensions, trailers)
///   are bounded (RFC 9112 7.1.1): ``framingAllowance``;
/// - a body over `maxBodyBytes` is refused (413) as it arrives;
/// - a connection's last response is followed by a staged close (RFC 9112 9.6): the output
///   is half-closed and what the client still sends is read and dropped for `lingerTime`, so
///   that it reads the answer instead of a reset;
/// - a quiescing gateway closes an idle connection at once and any other after its response.
public struct ClientConnectionStateMachine: Sendable {
    public enum State: Sendable, Equatable {
        /// Between requests: waiting for a head.
        case idle
        /// Reading a request whose head was accepted: its body is kept for inspection.
        case receiving
        /// The request is whole and being decided: routed, its token verified, the policy
        /// applied, an upstream credential obtained. Gateway answers are written from here.
        case authorizing
        /// The upstream has the request; its response is being relayed.
        case forwarding
        /// The connection's last response is being written; then its output is half-closed and
        /// whatever the client still sends is discarded until it closes or the linger ends.
        case closing
        /// Gone, or going.
        case closed
    }

    /// A request part as the machine sees it.
    public enum Part: Sendable, Equatable {
        /// A head; `bytes` is what the codec read for it.
        case head(bytes: Int)
        case body(bytes: Int)
        case end
    }

    /// What to do with a part that arrived.
    public enum Delivery: Sendable, Equatable {
        /// Hand it to the request stages now.
        case handle
        /// A pipelined request: keep it, in order, for its turn (``takePipelined()``).
        case queue
        /// The connection is closing: nothing more is served.
        case drop
    }

    /// What to do with the parts waiting, when the handler asks for the next one.
    public enum Turn: Sendable, Equatable {
        /// Hand the oldest one to the request stages.
        case take
        /// A request is being decided or answered: the rest wait.
        case wait
        /// The connection is closing: drop all of them.
        case discardAll
    }

    public enum Action: Sendable, Equatable {
        case none
        /// Write this refusal, with `Connection: close`; the connection closes after it (the
        /// machine is ``State/closing``).
        case refuse(GatewayRejection)
        /// Close now, writing nothing: a response under way would be corrupted.
        case close
        /// Close a connection whose client has been idle for too long.
        case closeIdle
        /// The connection's one timer must fire no later than this.
        case armTimer(NIODeadline)
        /// The request is whole: decide it (the machine is ``State/authorizing``).
        case decide
        /// The response is done and the connection stays: serve the parts waiting
        /// (``takePipelined()``), then pass on a held read (``releaseHeldRead()``).
        case servePipelined
        /// The response was the last: once it is written, half-close the output and report
        /// ``outputClosed(now:)``.
        case closeAfterWrite
        /// The client left while the upstream had its request: drop the upstream side.
        case abandonExchange
    }

    public private(set) var state = State.idle
    private let idleTimeout: TimeAmount
    private let headerReadTimeout: TimeAmount
    private let maxHeaderBytes: Int
    private let maxBodyBytes: Int
    private let lingerTime: TimeAmount

    /// Parts waiting for their turn (the handler holds them).
    public private(set) var pipelined = 0
    /// A read the channel asked for while parts were waiting.
    private var readHeld = false
    /// The gateway is shutting down: the response under way is the connection's last.
    private var quiescing = false
    /// When the client last sent bytes or a response finished.
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// When the first byte of a head still being read arrived.
    private var headStartedAt: NIODeadline?
    /// When the connection began closing, and when its linger ends (once the output is closed).
    private var closingSince: NIODeadline?
    private var lingerDeadline: NIODeadline?
    /// Parts received since the last read completed, their bytes, and whether an end was among them.
    private var partsInRead = 0
    private var partBytesInRead = 0
    private var endInRead = false
    /// Bytes parsed that no part accounts for since the last request ended: chunk framing, or a
    /// head still being read.
    private var unaccountedBytes = 0
    /// Body bytes of the request being read.
    private var bodyBytes = 0

    public init(
        idleTimeout: TimeAmount, headerReadTimeout: TimeAmount, maxHeaderBytes: Int, maxBodyBytes: Int,
        lingerTime: TimeAmount
    ) {
        self.idleTimeout = idleTimeout
        self.headerReadTimeout = headerReadTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.lingerTime = lingerTime
    }

    /// The connection was accepted at `now`: the idle timer starts.
    public mutating func connected(now: NIODeadline) -> Action {
        self.lastActivity = now
        return .armTimer(now + self.idleTimeout)
    }

    /// Whether a response may keep the connection open: a quiescing gateway serves no more.
    public func keepAlive(_ requested: Bool) -> Bool { requested && !self.quiescing }

    /// Whether the current request is still being decided (its token verified, its upstream
    /// credential obtained): an answer that comes back later is for it only while this holds.
    public var isDeciding: Bool { self.state == .authorizing }

    /// Whether the connection is closing (its last response is out, or it was given up on).
    public var isClosing: Bool { self.state == .closing }

    /// Bytes a request may carry beyond its head and body (chunk sizes, chunk extensions,
    /// trailers; RFC 9112 7.1.1 has a server bound them), or a head still being read: the
    /// header limit plus a read's slack, plus as much again as the body so far (a body sent
    /// in tiny chunks has framing larger than itself).
    public var framingAllowance: Int { self.maxHeaderBytes + 64 * 1024 + self.bodyBytes }

    private var isAnswering: Bool { self.state == .authorizing || self.state == .forwarding }

    // MARK: Reading

    /// The codec read a part.
    public mutating func partReceived(_ part: Part) -> Delivery {
        self.partsInRead += 1
        switch part {
        case .head(let bytes):
            self.headStartedAt = nil
            self.partBytesInRead += bytes
        case .body(let bytes):
            self.partBytesInRead += bytes
        case .end:
            self.endInRead = true
        }
        switch self.state {
        case .closing, .closed:
            return .drop
        case .idle, .receiving, .authorizing, .forwarding:
            guard self.pipelined == 0, !self.isAnswering else {
                self.pipelined += 1
                return .queue
            }
            return .handle
        }
    }

    /// A read from the client completed at `now`; the codec took `parsedBytes` in it.
    public mutating func readComplete(parsedBytes parsed: Int, now: NIODeadline) -> Action {
        self.lastActivity = now
        defer {
            self.partsInRead = 0
            self.partBytesInRead = 0
            self.endInRead = false
        }
        // A request that ended in this read takes its framing with it (at most a read's worth
        // of the next head is missed, caught by the next read).
        self.unaccountedBytes = self.endInRead ? 0 : max(0, self.unaccountedBytes + parsed - self.partBytesInRead)
        switch self.state {
        case .idle, .authorizing, .forwarding:
            if self.unaccountedBytes > self.framingAllowance, self.pipelined == 0, self.state == .idle {
                // A head still incomplete after more bytes than any head may have.
                return self.refused(.headersTooLarge, now: now)
            }
            // Waiting for the next head: bytes parsed with nothing to show for them are one.
            if parsed > 0, self.partsInRead == 0, self.headStartedAt == nil {
                self.headStartedAt = now
                return .armTimer(now + self.headerReadTimeout)
            }
            return .none
        case .receiving where self.unaccountedBytes > self.framingAllowance:
            return self.refused(.chunkFramingTooLarge(bytes: self.unaccountedBytes, body: self.bodyBytes), now: now)
        case .receiving, .closing, .closed:
            return .none
        }
    }

    /// The channel asks for a read: true to pass it on, false to hold it while parts wait
    /// (until ``releaseHeldRead()``).
    public mutating func read() -> Bool {
        guard self.pipelined > 0 else { return true }
        self.readHeld = true
        return false
    }

    /// Whether a read held by ``read()`` may go now (nothing waits, or the connection is closing).
    public mutating func releaseHeldRead() -> Bool {
        guard self.readHeld, self.pipelined == 0 else { return false }
        self.readHeld = false
        return true
    }

    /// The next part waiting, after ``Action/servePipelined``.
    public mutating func takePipelined() -> Turn {
        switch self.state {
        case .closing, .closed:
            self.pipelined = 0
            return .discardAll
        case .authorizing, .forwarding:
            return .wait
        case .idle, .receiving:
            guard self.pipelined > 0 else { return .wait }
            self.pipelined -= 1
            return .take
        }
    }

    // MARK: The request

    /// A head reached the request stages.
    public mutating func headReceived() -> Action {
        guard self.state == .idle else {
            // Requests are handed over one at a time; anything else is a bug or a hostile
            // peer. Close rather than guess.
            return self.close()
        }
        self.state = .receiving
        self.bodyBytes = 0
        return .none
    }

    /// Body bytes reached the request stages: `.none` means keep them.
    public mutating func bodyReceived(bytes: Int, now: NIODeadline) -> Action {
        switch self.state {
        case .receiving:
            self.bodyBytes += bytes
            guard self.bodyBytes <= self.maxBodyBytes else { return self.refused(.bodyTooLarge(limit: self.maxBodyBytes), now: now) }
            return .none
        case .closing, .closed:
            return .none
        case .idle, .authorizing, .forwarding:
            return self.close()
        }
    }

    /// The request's end reached the request stages.
    public mutating func endReceived() -> Action {
        switch self.state {
        case .receiving:
            self.state = .authorizing
            return .decide
        case .closing, .closed:
            return .none
        case .idle, .authorizing, .forwarding:
            return self.close()
        }
    }

    /// The request went to the upstream.
    public mutating func forwardingStarted() {
        guard self.state == .authorizing else { return }
        self.state = .forwarding
    }

    /// The response (the gateway's own or the upstream's) is written whole; `keepAlive` is
    /// whether it left the connection open.
    public mutating func responseEnded(keepAlive: Bool, now: NIODeadline) -> Action {
        switch self.state {
        case .closed:
            return .none
        case .authorizing where keepAlive && !self.quiescing, .forwarding where keepAlive && !self.quiescing:
            self.state = .idle
            self.lastActivity = now
            return .servePipelined
        case .idle, .receiving, .authorizing, .forwarding, .closing:
            self.beginClosing(now: now)
            return .closeAfterWrite
        }
    }

    // MARK: Closing

    /// The last response is written and the output half-closed at `now`: the linger begins.
    public mutating func outputClosed(now: NIODeadline) -> Action {
        guard self.state == .closing else { return .none }
        let deadline = now + self.lingerTime
        self.lingerDeadline = deadline
        return .armTimer(deadline)
    }

    /// The connection's timer fired at `now`.
    public mutating func timerFired(now: NIODeadline) -> Action {
        switch self.state {
        case .closed:
            return .none
        case .closing:
            // Lingering after the output closed; before that, the last response is being
            // written: a client that does not read it is not waited on for ever either.
            let deadline = self.lingerDeadline ?? (self.closingSince ?? now) + self.idleTimeout
            return now >= deadline ? self.close() : .armTimer(deadline)
        case .idle, .receiving, .authorizing, .forwarding:
            break
        }
        if let started = self.headStartedAt, now >= started + self.headerReadTimeout {
            self.headStartedAt = nil
            // 408 when no response is under way (RFC 9110 15.5.9); a 408 now would corrupt one.
            guard self.state == .idle, self.pipelined == 0 else { return self.close() }
            let seconds = self.headerReadTimeout.nanoseconds / 1_000_000_000
            return self.refused(.headerReadTimeout(seconds: seconds), now: now)
        }
        let waitingOnClient = self.state == .idle || self.state == .receiving
        let expiry = self.lastActivity + self.idleTimeout
        if waitingOnClient, now >= expiry {
            self.state = .closed
            return .closeIdle
        }
        var next = waitingOnClient ? expiry : now + self.idleTimeout
        if let started = self.headStartedAt { next = min(next, started + self.headerReadTimeout) }
        return .armTimer(next)
    }

    /// The gateway is shutting down: an idle connection closes now, any other after its response.
    public mutating func quiesce() -> Action {
        self.quiescing = true
        guard self.state == .idle, self.pipelined == 0, self.headStartedAt == nil else { return .none }
        return self.close()
    }

    /// The codec refused the client's bytes (`refusal`, its answer: ``GatewayRejection/init(refusing:)``).
    public mutating func parserError(_ refusal: GatewayRejection, now: NIODeadline) -> Action {
        switch self.state {
        case .closing, .closed:
            // Bytes after the last response: we are hanging up anyway.
            return .none
        case .idle where self.pipelined == 0, .receiving where self.pipelined == 0:
            // No response has started: say why before hanging up (RFC 9112 2.2).
            return self.refused(refusal, now: now)
        case .idle, .receiving, .authorizing, .forwarding:
            return self.close()
        }
    }

    /// The client closed the connection (or it failed).
    public mutating func clientClosed() -> Action {
        let wasForwarding = self.state == .forwarding
        self.state = .closed
        self.pipelined = 0
        return wasForwarding ? .abandonExchange : .none
    }

    /// The handler closes the connection (a write that failed, a response cut mid-stream).
    public mutating func close() -> Action {
        self.state = .closed
        self.pipelined = 0
        return .close
    }

    /// A refusal while the request is being read (by the request stages, or by the machine's
    /// own limits): answer it and close.
    public mutating func refused(_ rejection: GatewayRejection, now: NIODeadline) -> Action {
        self.beginClosing(now: now)
        return .refuse(rejection)
    }

    private mutating func beginClosing(now: NIODeadline) {
        self.state = .closing
        self.pipelined = 0
        self.closingSince = now
        self.headStartedAt = nil
    }
}
