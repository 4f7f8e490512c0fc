import BouncerCore
import BouncerTLS
import NIOCore
import NIOHTTP1

/// Why a bridged exchange with a legacy upstream failed.
struct BridgeUpstreamError: Error, CustomStringConvertible {
    enum Code: String {
        case unreachable
        case timeout
        case closed
        case malformed
    }

    var code: Code
    var reason: String
    var description: String { self.reason }

    init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// One POST of the bridge to a legacy upstream, on a connection of the event loop's pool, its
/// answer read message by message (``UpstreamMessageReader``): the bridge acts on a
/// server-to-client request while the upstream waits for the answer, and a parked call keeps
/// its connection (and the upstream's stream) open until the client's retry or its expiry.
/// Lives on that event loop; whoever waits on it holds it (the pool's handler holds it weakly).
final class BridgeUpstreamCall: UpstreamResponseSink {
    let eventLoop: any EventLoop
    private let pool: UpstreamConnectionPool
    private let resource: ResolvedResource
    private var head: UpstreamRequestHead
    private let body: ByteBuffer
    /// The DPoP-bound upstream token the request presents (`Authorization: DPoP`), whose proof
    /// is made again when the upstream asks for a nonce.
    private var boundToken: String?
    /// Set while the upstream's request for a DPoP nonce is read and dropped (once per call).
    private var discardingForNonce = false
    private var resentWithNonce = false
    private let maxMessageBytes: Int
    private let maxDepth: Int

    private var lease: UpstreamLease?
    private var written = false
    private var retried = false
    private var headPromise: EventLoopPromise<HTTPResponseHead>?
    private var reader: UpstreamMessageReader?
    private var messages = CircularBuffer<JSONValue>()
    /// Set once the response ended (nil error) or failed.
    private var ending: BridgeUpstreamError??
    private var waiting: EventLoopPromise<Read>?
    private var waitTimer: Scheduled<Void>?
    /// The most messages read ahead before the connection stops being read.
    private static let readAhead = 16

    private init(resource: ResolvedResource, head: UpstreamRequestHead, body: ByteBuffer, limits: GatewayLimits, pool: UpstreamConnectionPool, eventLoop: any EventLoop) {
        self.resource = resource
        self.head = head
        self.body = body
        self.maxMessageBytes = limits.maxEventBytes
        self.maxDepth = limits.maxJSONDepth
        self.pool = pool
        self.eventLoop = eventLoop
    }

    /// POSTs `message` to `resource`'s upstream with `headers` (credential, session, version),
    /// or with no message GETs the session's server-to-client stream; the future holds the
    /// call once the response head is in.
    static func post(
        _ message: JSONValue?, headers: [(String, String)], resource: ResolvedResource, limits: GatewayLimits, pool: UpstreamConnectionPool, eventLoop: any EventLoop,
        timeout: TimeAmount
    ) -> EventLoopFuture<(BridgeUpstreamCall, HTTPResponseHead)> {
        let body = message.map { ByteBuffer(string: $0.serialized) } ?? ByteBuffer()
        var head = UpstreamRequestHead(method: message == nil ? .GET : .POST, uri: resource.upstream.requestPath)
        head.fields.append(("Host", resource.upstream.hostHeader))
        if message != nil {
            head.fields.append(("Content-Type", "application/json"))
            head.fields.append(("Accept", "application/json, text/event-stream"))
            head.fields.append(("Content-Length", String(body.readableBytes)))
        } else {
            head.fields.append(("Accept", "text/event-stream"))
        }
        for (name, value) in headers { head.fields.append((name, value)) }
        let call = BridgeUpstreamCall(resource: resource, head: head, body: body, limits: limits, pool: pool, eventLoop: eventLoop)
        if resource.upstreamDPoP != nil, let token = UpstreamDPoP.boundToken(in: headers) {
            call.boundToken = token
            call.prove()
        }
        let promise = eventLoop.makePromise(of: HTTPResponseHead.self)
        call.headPromise = promise
        let timer = eventLoop.scheduleTask(in: timeout) {
            promise.fail(BridgeUpstreamError(.timeout, "the MCP server did not answer within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
        call.send(fresh: false)
        return promise.futureResult.always { _ in timer.cancel() }.assumeIsolated().map { head in (call, head) }.nonisolated()
    }

    /// A fresh DPoP proof for the request (one per request sent, RFC 9449 §4).
    private func prove() {
        guard let dpop = self.resource.upstreamDPoP, let token = self.boundToken else { return }
        dpop.prove(&self.head, token: token)
    }

    private func send(fresh: Bool) {
        if !fresh, let lease = self.pool.idleConnection(to: self.resource.upstream) {
            return self.leased(lease)
        }
        self.pool.connect(to: self.resource.upstream, tls: self.resource.upstreamTLS, serverName: self.resource.policy.upstreamTLS.serverName)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let lease):
                    self.leased(lease)
                case .failure(let error):
                    self.fail(BridgeUpstreamError(.unreachable, "\(error)"))
                }
            }
    }

    private func leased(_ lease: UpstreamLease) {
        guard self.ending == nil, self.headPromise != nil else {
            lease.channel.close(promise: nil)
            return
        }
        self.lease = lease
        lease.handler.sink = self
        lease.handler.send(self.head, body: self.body)
    }

    /// What a wait for the next message gave.
    enum Read {
        case message(JSONValue)
        case end
        /// Nothing came within the wait (a stream that stays open: not an error).
        case idle
    }

    /// The next message of the answer, nil when it ended; fails after `timeout` without one.
    func next(within timeout: TimeAmount) -> EventLoopFuture<JSONValue?> {
        self.read(within: timeout).assumeIsolated().flatMapThrowing { read -> JSONValue? in
            switch read {
            case .message(let message): return message
            case .end: return nil
            case .idle:
                self.fail(BridgeUpstreamError(.timeout, "the MCP server sent nothing for \(timeout.nanoseconds / 1_000_000_000) s"))
                throw BridgeUpstreamError(.timeout, "the MCP server sent nothing for \(timeout.nanoseconds / 1_000_000_000) s")
            }
        }.nonisolated()
    }

    /// The next message, the end, or `.idle` when `wait` passed without either.
    func read(within wait: TimeAmount) -> EventLoopFuture<Read> {
        guard self.waiting == nil else {
            return self.eventLoop.makeFailedFuture(BridgeUpstreamError(.malformed, "a second reader of one upstream answer"))
        }
        if let message = self.messages.popFirst() {
            if self.messages.count < Self.readAhead { self.lease?.handler.resume() }
            return self.eventLoop.makeSucceededFuture(.message(message))
        }
        if case .some(let ending) = self.ending {
            if let ending { return self.eventLoop.makeFailedFuture(ending) }
            return self.eventLoop.makeSucceededFuture(.end)
        }
        self.lease?.handler.resume()
        let promise = self.eventLoop.makePromise(of: Read.self)
        self.waiting = promise
        self.waitTimer = self.eventLoop.assumeIsolated().scheduleTask(in: wait) {
            guard let waiting = self.waiting else { return }
            self.waiting = nil
            self.waitTimer = nil
            waiting.succeed(.idle)
        }
        return promise.futureResult
    }

    /// Ends the exchange: a connection whose response ended cleanly goes back to the pool,
    /// any other is closed (an abandoned stream must not be read by the next request).
    func close() {
        guard let lease = self.lease else { return }
        self.lease = nil
        lease.handler.sink = nil
        lease.channel.close(promise: nil)
        if self.ending == nil { self.ending = .some(BridgeUpstreamError(.closed, "closed by the gateway")) }
    }

    private func deliver() {
        guard let promise = self.waiting else { return }
        let result: Result<Read, BridgeUpstreamError>
        if let message = self.messages.popFirst() {
            result = .success(.message(message))
        } else if case .some(let ending) = self.ending {
            result = ending.map { .failure($0) } ?? .success(.end)
        } else {
            return
        }
        self.waiting = nil
        self.waitTimer?.cancel()
        self.waitTimer = nil
        promise.completeWith(result.mapError { $0 as any Error })
    }

    private func fail(_ error: BridgeUpstreamError) {
        if let promise = self.headPromise {
            self.headPromise = nil
            promise.fail(error)
        }
        if self.ending == nil { self.ending = .some(error) }
        if let lease = self.lease {
            self.lease = nil
            lease.handler.sink = nil
            lease.channel.close(promise: nil)
        }
        self.deliver()
    }

    // MARK: UpstreamResponseSink

    func upstreamInterimResponse(_ head: RelayedResponseHead) {}

    func upstreamResponseHead(_ relayed: RelayedResponseHead) {
        guard let promise = self.headPromise else { return }
        // The bridge reads whole header lists (a session's ids, the DPoP nonce): NIO's head.
        let head = relayed.decoded
        if self.boundToken != nil, let dpop = self.resource.upstreamDPoP {
            dpop.noteNonce(head.headers)
            if !self.resentWithNonce, UpstreamDPoP.asksForNonce(status: head.status.code, headers: head.headers) {
                // Read to its end and dropped; the request goes again with the nonce.
                self.resentWithNonce = true
                self.discardingForNonce = true
                return
            }
        }
        self.headPromise = nil
        // Messages come in a 2xx answer (a 202 without a Content-Type has none) and in a JSON
        // error; any other answer's body is not read.
        let type = head.headers.first(name: "Content-Type")
        let carriesMessages = type?.hasPrefixIgnoringASCIICase("application/json") == true
            || ((200..<300).contains(head.status.code) && !(head.status == .accepted && type == nil))
        var unreadable: UpstreamMessageReader.Failure?
        if carriesMessages {
            do {
                self.reader = try UpstreamMessageReader(contentType: type, maxMessageBytes: self.maxMessageBytes, maxDepth: self.maxDepth)
            } catch {
                unreadable = error
            }
        }
        promise.succeed(head)
        if let unreadable { self.fail(BridgeUpstreamError(.malformed, "\(unreadable)")) }
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard self.reader != nil, !self.discardingForNonce else { return }
        do {
            self.messages.append(contentsOf: try self.reader!.feed(buffer.readableBytesView))
        } catch {
            return self.fail(BridgeUpstreamError(.malformed, "\(error)"))
        }
        if self.messages.count >= Self.readAhead { self.lease?.handler.pause() }
        self.deliver()
    }

    func upstreamResponseEnd(keepAlive: Bool) {
        if self.discardingForNonce {
            self.discardingForNonce = false
            if let lease = self.lease {
                self.lease = nil
                lease.handler.sink = nil
                self.pool.release(lease, target: self.resource.upstream, reusable: keepAlive)
            }
            self.written = false
            self.prove()
            return self.send(fresh: false)
        }
        do {
            if self.reader != nil { self.messages.append(contentsOf: try self.reader!.finish()) }
        } catch {
            return self.fail(BridgeUpstreamError(.malformed, "\(error)"))
        }
        self.ending = .some(nil)
        if let lease = self.lease {
            // Every message is read out of the connection: it is free for the next request.
            self.lease = nil
            self.pool.release(lease, target: self.resource.upstream, reusable: keepAlive)
        }
        self.deliver()
    }

    func upstreamRequestWritten() {
        self.written = true
    }

    func upstreamReadComplete() {}

    func upstreamFailed(_ error: any Error) {
        if !self.written, !self.retried, self.lease?.reused == true {
            // A pooled connection the upstream had closed: the request never left.
            self.retried = true
            self.lease = nil
            return self.send(fresh: true)
        }
        self.fail(BridgeUpstreamError(.closed, "the MCP server closed the connection: \(error)"))
    }
}
