import BouncerCore
import NIOConcurrencyHelpers
import NIOCore

/// The upstream sessions the bridge holds for 2026-07-28 clients of legacy upstreams: one per
/// (issuer, subject, resource, relayed client capabilities), so two users never share one and
/// a client is never offered capabilities another declared. Shared by the event loops;
/// opening is the bridge's (``ProtocolBridge``), and concurrent requests for a session being
/// opened wait for that one opening. Bounded: past ``maxSessions`` the session unused longest
/// is handed back to be ended. Per replica: a request on another replica opens its own.
final class BridgeSessions: Sendable {
    struct Key: Hashable, Sendable, CustomStringConvertible {
        var issuer: String
        var subject: String
        /// The resource's path and its upstream: a reload that moves the upstream opens anew.
        var resource: String
        var upstream: String
        /// The relayed client capabilities, canonical JSON.
        var capabilities: String

        var description: String { "\(self.resource) \(self.capabilities)" }
    }

    /// An open upstream session.
    struct Held: Sendable {
        /// The upstream's `Mcp-Session-Id`; nil for a server that keeps none.
        let id: String?
        /// The revision `initialize` negotiated: the version header of every request on it.
        let version: String
        let initializeResult: JSONValue
        /// Tells this opening from a later one for the same key.
        let serial: UInt64
        let resource: ResolvedResource
        /// The credential it was opened with (its DELETE repeats it).
        let credentialHeaders: [(String, String)]

        /// The headers of a request on this session with `credential` (each request carries
        /// its own: an exchanged token may have been renewed since the session opened).
        func headers(_ credential: [(String, String)]) -> [(String, String)] {
            var headers = credential
            if let id { headers.append(("Mcp-Session-Id", id)) }
            headers.append(("MCP-Protocol-Version", self.version))
            return headers
        }
    }

    private struct Entry {
        var held: Held?
        var opening: EventLoopFuture<Held>?
        var lastUsed: NIODeadline
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var serial: UInt64 = 0
    }

    let maxSessions: Int
    private let state = NIOLockedValueBox(State())

    init(maxSessions: Int) {
        self.maxSessions = maxSessions
    }

    var count: Int { self.state.withLockedValue { $0.entries.count } }

    /// What a request for `key` gets: the open session, the opening under way, or the turn to
    /// open one (with the serial to give it, and the session evicted to make room, if any).
    enum Lookup {
        case held(Held)
        case opening(EventLoopFuture<Held>)
        case open(serial: UInt64, evicted: Held?, promise: EventLoopPromise<Held>)
    }

    /// The session for `key`. When there is none, the caller opens one and completes the
    /// promise returned with `.open` (later requests for the key wait on it).
    func lookup(_ key: Key, now: NIODeadline, eventLoop: any EventLoop) -> Lookup {
        self.state.withLockedValue { state in
            if var entry = state.entries[key] {
                entry.lastUsed = now
                state.entries[key] = entry
                if let held = entry.held { return .held(held) }
                if let opening = entry.opening { return .opening(opening) }
            }
            var evicted: Held?
            if state.entries.count >= self.maxSessions,
               let oldest = state.entries.filter({ $0.value.held != nil }).min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
                evicted = oldest.value.held
                state.entries[oldest.key] = nil
            }
            state.serial &+= 1
            let promise = eventLoop.makePromise(of: Held.self)
            state.entries[key] = Entry(held: nil, opening: promise.futureResult, lastUsed: now)
            return .open(serial: state.serial, evicted: evicted, promise: promise)
        }
    }

    /// The opening ended: the session is held, or (nil) the key is free again.
    func opened(_ key: Key, _ held: Held?, serial: UInt64) {
        self.state.withLockedValue { state in
            guard state.entries[key]?.held == nil, state.entries[key]?.opening != nil else { return }
            if let held {
                state.entries[key]?.held = held
                state.entries[key]?.opening = nil
            } else {
                state.entries[key] = nil
            }
        }
    }

    /// Marks `key`'s session (this opening of it) used now: a stream on it keeps it from
    /// being ended as idle.
    func touch(_ key: Key, serial: UInt64, now: NIODeadline) {
        self.state.withLockedValue { state in
            if state.entries[key]?.held?.serial == serial { state.entries[key]?.lastUsed = now }
        }
    }

    /// The upstream lost this session (404): forgotten, unless a newer one replaced it.
    func forget(_ key: Key, serial: UInt64) {
        self.state.withLockedValue { state in
            if state.entries[key]?.held?.serial == serial { state.entries[key] = nil }
        }
    }

    /// Removes and returns the sessions unused since `cutoff`, to be ended.
    func idle(since cutoff: NIODeadline) -> [Held] {
        self.state.withLockedValue { state in
            let stale = state.entries.filter { $0.value.held != nil && $0.value.lastUsed < cutoff }
            for key in stale.keys { state.entries[key] = nil }
            return stale.values.compactMap(\.held)
        }
    }

    /// Removes and returns every held session (shutdown, or a policy without the bridge).
    func removeAll() -> [Held] {
        self.state.withLockedValue { state in
            defer { state.entries.removeAll() }
            return state.entries.values.compactMap(\.held)
        }
    }
}
