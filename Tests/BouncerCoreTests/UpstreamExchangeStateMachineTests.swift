import BouncerCore
import NIOCore
import Testing

/// The exchange with an upstream as a protocol trace: events in, actions out, no sockets.
@Suite("Upstream exchange state machine")
struct UpstreamExchangeStateMachineTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let id = JSONValue.number("7")

    func machine(interim: Bool = true) -> UpstreamExchangeStateMachine {
        UpstreamExchangeStateMachine(responseTimeout: .seconds(60), errorID: self.id, clientTakesInterim: interim)
    }

    @Test func aResponseRelayedWholeReturnsTheConnection() {
        var exchange = self.machine()
        #expect(exchange.leased(reused: true, now: self.start) == .sendRequest(deadline: self.start + .seconds(60)))
        exchange.requestWritten()
        #expect(!exchange.responseStarted)
        #expect(exchange.headReceived() == .relayHead)
        #expect(exchange.responseStarted)
        #expect(exchange.responseEnded(keepAlive: true) == .finish(reusable: true))
        #expect(exchange.isDone)
        #expect(exchange.upstreamFailed("late") == .none, "nothing after the end")
    }

    @Test("a reused connection that fails before the request is written: one retry, on a fresh connection")
    func retryOnlyWhenNothingWasWritten() {
        var exchange = self.machine()
        _ = exchange.leased(reused: true, now: self.start)
        #expect(exchange.upstreamFailed("reset") == .retryOnFreshConnection)
        #expect(exchange.leased(reused: false, now: self.start + .seconds(1)) == .sendRequest(deadline: self.start + .seconds(61)))
        // The fresh connection fails too: no second retry.
        #expect(exchange.upstreamFailed("reset") == .fail(.upstreamUnavailable("reset", id: self.id)))
    }

    @Test("RFC 9110 9.2.2: a request written whole is never sent again")
    func noRetryOnceWritten() {
        var exchange = self.machine()
        _ = exchange.leased(reused: true, now: self.start)
        exchange.requestWritten()
        #expect(exchange.upstreamFailed("closed") == .fail(.upstreamUnavailable("closed", id: self.id)))
        #expect(exchange.isDone)
    }

    @Test func aFreshConnectionIsNeverRetried() {
        var exchange = self.machine()
        _ = exchange.leased(reused: false, now: self.start)
        #expect(exchange.upstreamFailed("refused") == .fail(.upstreamUnavailable("refused", id: self.id)))
    }

    @Test("1xx: relayed to HTTP/1.1 clients only; the upstream has the request; 101 is a 502")
    func interimResponses() {
        var exchange = self.machine()
        _ = exchange.leased(reused: true, now: self.start)
        #expect(exchange.interimReceived(status: 103) == .relayInterim)
        #expect(exchange.interimReceived(status: 100) == .relayInterim)
        #expect(exchange.upstreamFailed("closed") == .fail(.upstreamUnavailable("closed", id: self.id)), "no retry after a 1xx, written or not")

        var old = self.machine(interim: false)
        _ = old.leased(reused: false, now: self.start)
        #expect(old.interimReceived(status: 103) == .none)
        #expect(old.headReceived() == .relayHead)

        var upgraded = self.machine()
        _ = upgraded.leased(reused: false, now: self.start)
        guard case .fail(let rejection) = upgraded.interimReceived(status: 101) else {
            Issue.record("101 relayed")
            return
        }
        #expect(rejection.code == "upstream_unavailable")
    }

    @Test("the response timer: early firings re-arm, a late one is a 504, a started response has none")
    func responseTimeout() {
        var exchange = self.machine()
        let deadline = self.start + .seconds(60)
        _ = exchange.leased(reused: false, now: self.start)
        #expect(exchange.timerFired(now: self.start + .seconds(10)) == .rearmTimer(deadline))
        _ = exchange.interimReceived(status: 100)
        #expect(exchange.timerFired(now: deadline) == .fail(.upstreamTimeout(id: self.id)), "a 1xx does not stop the clock")
        #expect(exchange.timerFired(now: deadline + .seconds(1)) == .none)

        var streaming = self.machine()
        _ = streaming.leased(reused: false, now: self.start)
        _ = streaming.headReceived()
        #expect(streaming.timerFired(now: deadline + .seconds(3600)) == .none, "a stream may run as long as it likes")
    }

    @Test func failuresOnceTheHeadIsOutCloseTheClient() {
        var exchange = self.machine()
        _ = exchange.leased(reused: true, now: self.start)
        _ = exchange.headReceived()
        #expect(exchange.upstreamFailed("reset mid-body") == .closeClient)
    }

    @Test func anInvalidHeadIsA502AndAConnectFailureToo() {
        var exchange = self.machine()
        _ = exchange.leased(reused: false, now: self.start)
        #expect(exchange.headUnrelayable(reason: "CR in a header") == .fail(.upstreamUnavailable("CR in a header", id: self.id)))
        #expect(exchange.headReceived() == .none, "nothing after the failure")
        var unreachable = self.machine()
        #expect(unreachable.connectFailed("refused") == .fail(.upstreamUnavailable("refused", id: self.id)))
    }

    /// A head held while its JSON body is read and inspected has not reached the client: a
    /// body that breaks (an invalid chunk, a close before the end), is too large, or a head
    /// that then cannot be serialised is a clean 502, not a bare close (it used to be one:
    /// the machine took the held head for one relayed).
    @Test func aHeldHeadFailsCleanly() {
        var broken = self.machine()
        _ = broken.leased(reused: false, now: self.start)
        broken.requestWritten()
        #expect(broken.headReceived(hold: true) == .none)
        #expect(!broken.responseStarted)
        #expect(broken.timerFired(now: self.start + .seconds(120)) == .none, "the head came in time; the body has no deadline")
        #expect(broken.upstreamFailed("invalid chunk size") == .fail(.upstreamUnavailable("invalid chunk size", id: self.id)))

        var large = self.machine()
        _ = large.leased(reused: false, now: self.start)
        _ = large.headReceived(hold: true)
        #expect(large.messageTooLarge(limit: 10) == .fail(.upstreamMessageTooLarge(limit: 10, id: self.id)))

        var unrelayable = self.machine()
        _ = unrelayable.leased(reused: false, now: self.start)
        _ = unrelayable.headReceived(hold: true)
        #expect(unrelayable.headUnrelayable(reason: "CR") == .fail(.upstreamUnavailable("CR", id: self.id)))

        var whole = self.machine()
        _ = whole.leased(reused: false, now: self.start)
        _ = whole.headReceived(hold: true)
        #expect(whole.responseEnded(keepAlive: true) == .none, "the head goes out first")
        #expect(whole.heldBodyReady() == .relayHead)
        #expect(whole.responseStarted)
        #expect(whole.heldBodyReady() == .none)
        #expect(whole.responseEnded(keepAlive: true) == .finish(reusable: true))
    }

    /// Once an event stream is with the client, a message too large or a flood of requests for
    /// the client ends it with an error event; before any of it went out, they are a 502.
    @Test func aStreamIsEndedWithAnErrorEvent() {
        var stream = self.machine()
        _ = stream.leased(reused: false, now: self.start)
        #expect(stream.headReceived() == .relayHead)
        #expect(stream.messageTooLarge(limit: 5) == .endStream(.upstreamMessageTooLarge(limit: 5, id: self.id)))
        #expect(stream.isDone && stream.upstreamFailed("late") == .none)

        var flooded = self.machine()
        _ = flooded.leased(reused: false, now: self.start)
        _ = flooded.headReceived()
        #expect(flooded.serverRequestFlood(limit: 100) == .endStream(.upstreamRequestFlood(limit: 100, id: self.id)))

        var early = self.machine()
        _ = early.leased(reused: false, now: self.start)
        #expect(early.serverRequestFlood(limit: 100) == .fail(.upstreamRequestFlood(limit: 100, id: self.id)))
        #expect(early.messageTooLarge(limit: 1) == .none, "nothing after the end")
    }

    @Test func aClientThatLeftEndsEverything() {
        var exchange = self.machine()
        _ = exchange.leased(reused: true, now: self.start)
        exchange.clientClosed()
        #expect(exchange.upstreamFailed("closed") == .none)
        #expect(exchange.headReceived() == .none)
        #expect(exchange.timerFired(now: self.start + .seconds(120)) == .none)
    }
}
