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
        #expect(exchange.headReceived(valid: false, reason: "CR in a header") == .fail(.upstreamUnavailable("CR in a header", id: self.id)))
        var unreachable = self.machine()
        #expect(unreachable.connectFailed("refused") == .fail(.upstreamUnavailable("refused", id: self.id)))
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
