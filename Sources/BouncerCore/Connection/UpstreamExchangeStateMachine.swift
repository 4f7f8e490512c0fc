import NIOCore

/// One exchange with an upstream, from the lease of a connection to the end of the response,
/// as a value: each event-named method returns what to do, and the handler applies it. The
/// rules of a proxy's exchange live here, tested without channels or sleeps:
///
/// - a request is sent again, once and on a fresh connection, only when a reused connection
///   failed before the request was written whole: a written request may have been read and
///   acted on (RFC 9110 9.2.2: `tools/call` must not run twice);
/// - an interim (1xx) response means the upstream has the request: never sent again. A 101
///   answers an upgrade the gateway never asks for: 502;
/// - the upstream has `responseTimeout` from the request's write to the response head: 504;
/// - a head held back while its body is inspected (an `application/json` body whose length
///   may change) has not reached the client: a failure then is still an error response (502);
/// - once the head went to the client, a failure can only cut the connection, or end an
///   event stream with a JSON-RPC error event;
/// - a 401 asking for a DPoP nonce (RFC 9449 §9) on the DPoP-bound upstream leg is the
///   upstream refusing the request unread: its body is discarded and the request sent once
///   more, with a new proof carrying the nonce. A second such answer goes to the client.
///
/// Every `.fail` comes from here: the handler and the exchange report what happened (a
/// message too large, a head that cannot be relayed) and apply the answer.
public struct UpstreamExchangeStateMachine: Sendable {
    /// Where the exchange is.
    enum State: Sendable, Equatable {
        /// Waiting for a connection (a new one, or a fresh one for the retry).
        case connecting(retried: Bool)
        /// The request is being written or was written; no response byte yet.
        case awaitingResponse(Attempt)
        /// An interim response arrived: the upstream has the request.
        case interim(deadline: NIODeadline)
        /// The final head arrived and waits for its body to be inspected: nothing of the
        /// response has reached the client.
        case held
        /// The upstream asked for a DPoP nonce: its answer is read to the end and dropped.
        case discardingForNonce(deadline: NIODeadline)
        /// The final head is with the client; the body is being relayed.
        case streaming
        /// Ended: relayed whole, failed, or abandoned.
        case done
    }

    /// One attempt on one connection.
    struct Attempt: Sendable, Equatable {
        var reused: Bool
        var retried: Bool
        var written = false
        var deadline: NIODeadline
    }

    public enum Action: Sendable, Equatable {
        /// Nothing to do.
        case none
        /// Write the request on the leased connection; arm the response timer for `deadline`.
        case sendRequest(deadline: NIODeadline)
        /// Close the failed connection and send the request again on a fresh one.
        case retryOnFreshConnection
        /// Relay the interim response to the client (an HTTP/1.1 client; never to HTTP/1.0).
        case relayInterim
        /// Relay the final head; the body follows.
        case relayHead
        /// Nothing reached the client: answer with this refusal, drop the upstream connection.
        case fail(GatewayRejection)
        /// Part of the response is with the client: the only honest signal left is to close
        /// the client connection (and the upstream one).
        case closeClient
        /// An event stream is with the client: end it with a JSON-RPC error event carrying this
        /// refusal, end the response and drop the upstream connection.
        case endStream(GatewayRejection)
        /// The response is relayed whole: return the connection to the pool when `reusable`.
        case finish(reusable: Bool)
        /// The timer fired early (an earlier request's deadline): arm it again.
        case rearmTimer(NIODeadline)
        /// The upstream asked for a DPoP nonce and its answer is read: return the connection to
        /// the pool when `reusable`, make a new proof and send the request again.
        case resendWithNonce(reusable: Bool)
    }

    private(set) var state: State
    private let responseTimeout: TimeAmount
    private let errorID: JSONValue?
    /// Whether the client may be sent interim responses (HTTP/1.1 or later).
    private let clientTakesInterim: Bool
    /// The request was sent again with a DPoP nonce: never a second time.
    private var resentWithNonce = false

    public init(responseTimeout: TimeAmount, errorID: JSONValue?, clientTakesInterim: Bool) {
        self.state = .connecting(retried: false)
        self.responseTimeout = responseTimeout
        self.errorID = errorID
        self.clientTakesInterim = clientTakesInterim
    }

    /// Whether the response head has gone to the client.
    public var responseStarted: Bool {
        if case .streaming = self.state { return true }
        return false
    }

    public var isDone: Bool { self.state == .done }

    /// When the response head is due: set while the request is out and no final head came.
    private var responseDeadline: NIODeadline? {
        switch self.state {
        case .awaitingResponse(let attempt): return attempt.deadline
        case .interim(let deadline), .discardingForNonce(let deadline): return deadline
        case .connecting, .held, .streaming, .done: return nil
        }
    }

    /// A connection was leased (`reused`: from the idle pool) at `now`.
    public mutating func leased(reused: Bool, now: NIODeadline) -> Action {
        guard case .connecting(let retried) = self.state else { return .none }
        let deadline = now + self.responseTimeout
        self.state = .awaitingResponse(Attempt(reused: reused, retried: retried, deadline: deadline))
        return .sendRequest(deadline: deadline)
    }

    /// No connection could be made.
    public mutating func connectFailed(_ reason: String) -> Action {
        guard case .connecting = self.state else { return .none }
        self.state = .done
        return .fail(.upstreamUnavailable(reason, id: self.errorID))
    }

    /// The request was written whole to the connection.
    public mutating func requestWritten() {
        guard case .awaitingResponse(var attempt) = self.state else { return }
        attempt.written = true
        self.state = .awaitingResponse(attempt)
    }

    /// A 1xx response arrived.
    public mutating func interimReceived(status: Int) -> Action {
        guard !self.isDiscarding, let deadline = self.responseDeadline else { return .none }
        guard status != 101 else {
            self.state = .done
            return .fail(.upstreamUnavailable("101 Switching Protocols to a request without Upgrade", id: self.errorID))
        }
        self.state = .interim(deadline: deadline)
        return self.clientTakesInterim ? .relayInterim : .none
    }

    /// The final response head arrived. `hold`: it waits for its body (an inspected JSON body
    /// whose length may change), and goes out with ``heldBodyReady()``.
    public mutating func headReceived(hold: Bool = false) -> Action {
        switch self.state {
        case .awaitingResponse, .interim:
            if hold {
                self.state = .held
                return .none
            }
            self.state = .streaming
            return .relayHead
        case .connecting, .held, .streaming, .discardingForNonce, .done:
            return .none
        }
    }

    /// The final head is a 401 asking for a DPoP nonce. True: its body is discarded (while
    /// ``isDiscarding``) and the request goes again at its end. False (it went again once
    /// already): the head is an ordinary final head.
    public mutating func nonceRequested() -> Bool {
        guard !self.resentWithNonce, let deadline = self.responseDeadline, !self.isDiscarding else { return false }
        self.resentWithNonce = true
        self.state = .discardingForNonce(deadline: deadline)
        return true
    }

    /// Whether the response being read is the nonce request, which nobody sees.
    public var isDiscarding: Bool {
        if case .discardingForNonce = self.state { return true }
        return false
    }

    /// The held head's body is read and inspected: the head goes out, the body follows.
    public mutating func heldBodyReady() -> Action {
        guard case .held = self.state else { return .none }
        self.state = .streaming
        return .relayHead
    }

    /// The final head cannot be relayed safely (its serialisation failed: a header that could
    /// split the response; a session id that is not one value), before anything went out.
    public mutating func headUnrelayable(reason: String) -> Action {
        switch self.state {
        case .awaitingResponse, .interim, .held:
            self.state = .done
            return .fail(.upstreamUnavailable(reason, id: self.errorID))
        case .connecting, .streaming, .discardingForNonce, .done:
            return .none
        }
    }

    /// A message from the upstream (a held JSON body, an event) is over `limit`: nothing of it
    /// reaches the client.
    public mutating func messageTooLarge(limit: Int) -> Action {
        self.cut(.upstreamMessageTooLarge(limit: limit, id: self.errorID))
    }

    /// The upstream sent more server-to-client requests in one response than `limit`.
    public mutating func serverRequestFlood(limit: Int) -> Action {
        self.cut(.upstreamRequestFlood(limit: limit, id: self.errorID))
    }

    /// Ends the response for `rejection`: an error response while nothing went out, an error
    /// event once a stream is with the client.
    private mutating func cut(_ rejection: GatewayRejection) -> Action {
        switch self.state {
        case .awaitingResponse, .interim, .held, .discardingForNonce:
            self.state = .done
            return .fail(rejection)
        case .streaming:
            self.state = .done
            return .endStream(rejection)
        case .connecting, .done:
            return .none
        }
    }

    /// The response ended; `keepAlive` is what the upstream said of its connection.
    public mutating func responseEnded(keepAlive: Bool) -> Action {
        if self.isDiscarding {
            self.state = .connecting(retried: false)
            return .resendWithNonce(reusable: keepAlive)
        }
        guard case .streaming = self.state else { return .none }
        self.state = .done
        return .finish(reusable: keepAlive)
    }

    /// The upstream connection failed (closed, reset, malformed response).
    public mutating func upstreamFailed(_ reason: String) -> Action {
        switch self.state {
        case .awaitingResponse(let attempt) where attempt.reused && !attempt.written && !attempt.retried:
            // A pooled connection the upstream had closed (the keep-alive race) before the
            // request could be written: it never saw it.
            self.state = .connecting(retried: true)
            return .retryOnFreshConnection
        case .awaitingResponse, .interim, .held, .discardingForNonce:
            // A held head never reached the client: it gets a clean 502.
            self.state = .done
            return .fail(.upstreamUnavailable(reason, id: self.errorID))
        case .streaming:
            self.state = .done
            return .closeClient
        case .connecting, .done:
            return .none
        }
    }

    /// The response timer fired at `now`.
    public mutating func timerFired(now: NIODeadline) -> Action {
        guard let deadline = self.responseDeadline else { return .none }
        guard now >= deadline else { return .rearmTimer(deadline) }
        self.state = .done
        return .fail(.upstreamTimeout(id: self.errorID))
    }

    /// The client went away: whatever the upstream side is doing is abandoned.
    public mutating func clientClosed() {
        self.state = .done
    }
}
