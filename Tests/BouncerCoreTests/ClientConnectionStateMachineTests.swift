import BouncerCore
import NIOCore
import Testing

/// A client connection as a protocol trace: parts and reads in, actions out, no sockets or sleeps.
@Suite("Client connection state machine")
struct ClientConnectionStateMachineTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    typealias Machine = ClientConnectionStateMachine

    func connection(maxBodyBytes: Int = 1000) -> Machine {
        var machine = Machine(
            idleTimeout: .seconds(60), headerReadTimeout: .seconds(10), maxHeaderBytes: 8192, maxBodyBytes: maxBodyBytes, lingerTime: .seconds(2)
        )
        #expect(machine.connected(now: self.start) == .armTimer(self.start + .seconds(60)))
        return machine
    }

    /// A whole request read and handed to the stages, up to its decision.
    func receive(_ machine: inout Machine, body: Int = 10, at now: NIODeadline) {
        #expect(machine.partReceived(.head(bytes: 100)) == .handle)
        #expect(machine.headReceived() == .none)
        #expect(machine.partReceived(.body(bytes: body)) == .handle)
        #expect(machine.bodyReceived(bytes: body, now: now) == .none)
        #expect(machine.partReceived(.end) == .handle)
        #expect(machine.endReceived() == .decide)
        #expect(machine.readComplete(parsedBytes: 100 + body + 20, now: now) == .none)
    }

    @Test func aRequestIsDecidedForwardedAndTheConnectionKeptAlive() {
        var machine = self.connection()
        self.receive(&machine, at: self.start)
        #expect(machine.state == .authorizing)
        machine.forwardingStarted()
        #expect(machine.state == .forwarding)
        #expect(machine.responseEnded(keepAlive: true, now: self.start + .seconds(1)) == .servePipelined)
        #expect(machine.state == .idle)
        #expect(machine.takePipelined() == .wait, "nothing waits")
    }

    @Test("RFC 9112 9.3.2: pipelined requests wait in order, reading pauses while they do, and resumes once they are served")
    func pipelining() {
        var machine = self.connection()
        self.receive(&machine, at: self.start)
        machine.forwardingStarted()
        // Two more requests arrive while the first is being answered.
        for part in [Machine.Part.head(bytes: 80), .end, .head(bytes: 80), .body(bytes: 5), .end] {
            #expect(machine.partReceived(part) == .queue)
        }
        #expect(machine.pipelined == 5)
        #expect(machine.read() == false, "the channel's read is held while requests wait")
        #expect(machine.releaseHeldRead() == false)
        #expect(machine.takePipelined() == .wait, "the first response is not done")

        #expect(machine.responseEnded(keepAlive: true, now: self.start) == .servePipelined)
        // The second request: head and end, then it is being decided and the third waits.
        #expect(machine.takePipelined() == .take)
        #expect(machine.headReceived() == .none)
        #expect(machine.takePipelined() == .take)
        #expect(machine.endReceived() == .decide)
        #expect(machine.takePipelined() == .wait)
        #expect(machine.releaseHeldRead() == false, "still three parts waiting")
        // A gateway answer (a 404, say) ends it: the third is served.
        #expect(machine.responseEnded(keepAlive: true, now: self.start) == .servePipelined)
        #expect(machine.takePipelined() == .take)
        #expect(machine.headReceived() == .none)
        #expect(machine.takePipelined() == .take)
        #expect(machine.bodyReceived(bytes: 5, now: self.start) == .none)
        #expect(machine.takePipelined() == .take)
        #expect(machine.endReceived() == .decide)
        #expect(machine.takePipelined() == .wait)
        #expect(machine.pipelined == 0)
        #expect(machine.releaseHeldRead() == true, "the held read goes once nothing waits")
        #expect(machine.releaseHeldRead() == false, "once")
        #expect(machine.read() == true)
    }

    @Test("a response that closes the connection drops what was pipelined behind it, then lingers")
    func closingDropsPipelinedRequests() {
        var machine = self.connection()
        self.receive(&machine, at: self.start)
        #expect(machine.partReceived(.head(bytes: 80)) == .queue)
        #expect(machine.read() == false)
        #expect(machine.responseEnded(keepAlive: false, now: self.start) == .closeAfterWrite)
        #expect(machine.state == .closing)
        #expect(machine.takePipelined() == .discardAll)
        #expect(machine.releaseHeldRead() == true, "the client's remaining bytes are read and dropped")
        #expect(machine.partReceived(.end) == .drop)
        #expect(machine.outputClosed(now: self.start + .seconds(1)) == .armTimer(self.start + .seconds(3)))
        #expect(machine.timerFired(now: self.start + .seconds(2)) == .armTimer(self.start + .seconds(3)), "an early firing re-arms")
        #expect(machine.timerFired(now: self.start + .seconds(3)) == .close)
        #expect(machine.state == .closed)
    }

    @Test("a refused request's answer that the client never reads is not waited on for ever")
    func closingWithoutTheOutputClosed() {
        var machine = self.connection()
        #expect(machine.partReceived(.head(bytes: 100)) == .handle)
        #expect(machine.headReceived() == .none)
        #expect(machine.refused(.headersTooLarge, now: self.start) == .refuse(.headersTooLarge))
        #expect(machine.timerFired(now: self.start + .seconds(30)) == .armTimer(self.start + .seconds(60)))
        #expect(machine.timerFired(now: self.start + .seconds(60)) == .close)
    }

    @Test func anIdleClientIsClosedButAQuietResponseIsNotTheClientIdling() {
        var machine = self.connection()
        #expect(machine.timerFired(now: self.start + .seconds(30)) == .armTimer(self.start + .seconds(60)))
        #expect(machine.readComplete(parsedBytes: 0, now: self.start + .seconds(40)) == .none)
        #expect(machine.timerFired(now: self.start + .seconds(60)) == .armTimer(self.start + .seconds(100)), "activity moved the deadline")
        #expect(machine.timerFired(now: self.start + .seconds(100)) == .closeIdle)
        #expect(machine.state == .closed)

        var streaming = self.connection()
        self.receive(&streaming, at: self.start)
        streaming.forwardingStarted()
        #expect(streaming.timerFired(now: self.start + .seconds(600)) == .armTimer(self.start + .seconds(660)), "a long SSE stream stays open")
    }

    @Test("slowloris: a head must arrive whole within the header-read timeout of its first byte, however its bytes trickle")
    func headerReadTimeout() {
        var machine = self.connection()
        let first = self.start + .seconds(1)
        #expect(machine.readComplete(parsedBytes: 1, now: first) == .armTimer(first + .seconds(10)))
        for second in 2...10 {
            #expect(machine.readComplete(parsedBytes: 1, now: self.start + .seconds(Int64(second))) == .none, "more bytes do not move the deadline")
        }
        #expect(machine.timerFired(now: first + .seconds(10)) == .refuse(.headerReadTimeout(seconds: 10)))
        #expect(machine.state == .closing)

        // The head arrives in time: the deadline is gone.
        var prompt = self.connection()
        #expect(prompt.readComplete(parsedBytes: 10, now: first) == .armTimer(first + .seconds(10)))
        #expect(prompt.partReceived(.head(bytes: 100)) == .handle)
        #expect(prompt.headReceived() == .none)
        #expect(prompt.timerFired(now: first + .seconds(10)) == .armTimer(first + .seconds(60)))
    }

    @Test("a slow next head while a response is under way closes the connection: a 408 now would corrupt the response")
    func headerReadTimeoutDuringAResponse() {
        var machine = self.connection()
        self.receive(&machine, at: self.start)
        machine.forwardingStarted()
        #expect(machine.readComplete(parsedBytes: 5, now: self.start) == .armTimer(self.start + .seconds(10)))
        #expect(machine.timerFired(now: self.start + .seconds(10)) == .close)
    }

    @Test("RFC 9112 7.1.1: chunk framing and unfinished heads are bounded")
    func framingBounds() {
        var machine = self.connection()
        #expect(machine.partReceived(.head(bytes: 100)) == .handle)
        #expect(machine.headReceived() == .none)
        #expect(machine.partReceived(.body(bytes: 10)) == .handle)
        #expect(machine.bodyReceived(bytes: 10, now: self.start) == .none)
        // 10 body bytes for which the decoder parsed far more: chunk extensions.
        let allowance = machine.framingAllowance
        #expect(allowance == 8192 + 65536 + 10)
        #expect(machine.readComplete(parsedBytes: 110 + allowance + 1, now: self.start) == .refuse(.chunkFramingTooLarge(bytes: allowance + 1, body: 10)))

        var unfinished = self.connection()
        #expect(unfinished.readComplete(parsedBytes: 60_000, now: self.start) == .armTimer(self.start + .seconds(10)))
        #expect(unfinished.readComplete(parsedBytes: 20_000, now: self.start) == .refuse(.headersTooLarge))

        // A request that ends in the read takes its framing with it.
        var whole = self.connection()
        self.receive(&whole, body: 10, at: self.start)
        #expect(whole.responseEnded(keepAlive: true, now: self.start) == .servePipelined)
        #expect(whole.readComplete(parsedBytes: 0, now: self.start) == .none)
    }

    @Test func aBodyOverTheLimitIsRefusedAsItArrives() {
        var machine = self.connection(maxBodyBytes: 100)
        #expect(machine.partReceived(.head(bytes: 100)) == .handle)
        #expect(machine.headReceived() == .none)
        #expect(machine.bodyReceived(bytes: 60, now: self.start) == .none)
        #expect(machine.bodyReceived(bytes: 41, now: self.start) == .refuse(.bodyTooLarge(limit: 100)))
        #expect(machine.partReceived(.body(bytes: 1000)) == .drop, "the rest is dropped")
        #expect(machine.responseEnded(keepAlive: false, now: self.start) == .closeAfterWrite)
    }

    @Test("malformed HTTP: a 400 when no response has started, else the connection is cut")
    func parserErrors() {
        var idle = self.connection()
        #expect(idle.parserError(.malformedHTTP(.invalidRequestLine), now: self.start) == .refuse(.malformedHTTP(.invalidRequestLine)))
        #expect(idle.parserError(.malformedHTTP(.bareLineEnding), now: self.start) == .none, "bytes after the answer are not answered")

        var answering = self.connection()
        self.receive(&answering, at: self.start)
        answering.forwardingStarted()
        #expect(answering.parserError(.malformedHTTP(.invalidRequestLine), now: self.start) == .close)
    }

    @Test("client disconnect mid-stream abandons the exchange; before it, there is none to abandon")
    func clientDisconnect() {
        var machine = self.connection()
        self.receive(&machine, at: self.start)
        machine.forwardingStarted()
        #expect(machine.clientClosed() == .abandonExchange)
        #expect(machine.state == .closed)
        #expect(machine.responseEnded(keepAlive: true, now: self.start) == .none, "nothing after the close")

        var deciding = self.connection()
        self.receive(&deciding, at: self.start)
        #expect(deciding.clientClosed() == .none)
    }

    @Test("quiescing: an idle connection closes at once, a busy one after its response")
    func quiesce() {
        var idle = self.connection()
        #expect(idle.quiesce() == .close)

        var busy = self.connection()
        self.receive(&busy, at: self.start)
        busy.forwardingStarted()
        #expect(busy.quiesce() == .none)
        #expect(busy.keepAlive(true) == false, "the response under way says Connection: close")
        #expect(busy.responseEnded(keepAlive: true, now: self.start) == .closeAfterWrite)

        var reading = self.connection()
        #expect(reading.readComplete(parsedBytes: 3, now: self.start) == .armTimer(self.start + .seconds(10)))
        #expect(reading.quiesce() == .none, "a head is arriving: it gets its answer")
    }

    @Test("parts out of turn close the connection rather than be guessed at")
    func outOfTurn() {
        var machine = self.connection()
        #expect(machine.bodyReceived(bytes: 1, now: self.start) == .close)
        var ended = self.connection()
        #expect(ended.endReceived() == .close)
        var twice = self.connection()
        self.receive(&twice, at: self.start)
        #expect(twice.headReceived() == .close)
    }
}
