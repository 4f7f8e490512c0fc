import BouncerCore
import BouncerTLS
import NIOCore

/// Reads one response to an ``HTTPFetcher`` request with the gateway's own codec
/// (``HTTP1ResponseReader``: what it refuses from an upstream it refuses here) and collects its
/// body up to a limit. Interim (1xx) heads are skipped; a 101 is refused (the fetcher never asks
/// to switch protocols). With `untilFirstEvent`, an event stream's response ends at its first
/// whole event.
final class FetchResponseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let limit: Int
    private let url: String
    private let promise: EventLoopPromise<HTTPFetchResponse>
    private let untilFirstEvent: Bool
    private var reader = HTTP1ResponseReader()
    private var status = 0
    private var headers: [(String, String)] = []
    private var body: [UInt8] = []
    private var isEventStream = false
    private var tlsVersion: String?
    /// The promise is settled: nothing more is read.
    private var done = false

    init(limit: Int, url: String, requestMethod: HTTP1Method, promise: EventLoopPromise<HTTPFetchResponse>, untilFirstEvent: Bool) {
        self.limit = limit
        self.url = url
        self.promise = promise
        self.untilFirstEvent = untilFirstEvent
        self.reader.requestMethod = requestMethod
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.done else { return }
        self.reader.append(self.unwrapInboundIn(data))
        do {
            while !self.done, let event = try self.reader.next() {
                self.handle(event, context: context)
            }
        } catch {
            self.fail(FetchError(code: .badResponse, reason: "\(self.url) sent a response the gateway does not read: \(error)"), context: context)
        }
    }

    private func handle(_ event: HTTP1ResponseReader.Event, context: ChannelHandlerContext) {
        switch event {
        case .head(let head) where head.status == 101:
            self.fail(FetchError(code: .badResponse, reason: "\(self.url) switched protocols (101) unasked"), context: context)
        case .head(let head) where head.isInterim:
            break
        case .head(let head):
            self.status = head.status
            self.headers = head.fields.map { (head.string($0.name), head.string($0.value)) }
            let type = head.bytes.withUnsafeReadableBytes { HTTP1Lines.firstValue(named: "content-type", of: head.fields, in: $0) }
            self.isEventStream = type?.hasPrefixIgnoringASCIICase("text/event-stream") ?? false
            self.tlsVersion = try? context.pipeline.syncOperations.handler(type: TLSHandler.self).protocolVersion
        case .body(let buffer):
            guard self.body.count + buffer.readableBytes <= self.limit else {
                self.fail(FetchError(code: .responseTooLarge, reason: "\(self.url) sent more than \(self.limit) bytes"), context: context)
                return
            }
            self.body.append(contentsOf: buffer.readableBytesView)
            if self.untilFirstEvent, self.isEventStream, Self.holdsAnEvent(self.body) { self.succeed(context: context) }
        case .end:
            self.succeed(context: context)
        }
    }

    private func succeed(context: ChannelHandlerContext) {
        self.done = true
        self.promise.succeed(HTTPFetchResponse(status: self.status, headers: self.headers, body: self.body, tlsVersion: self.tlsVersion))
        context.close(promise: nil)
    }

    private func fail(_ error: FetchError, context: ChannelHandlerContext) {
        self.done = true
        self.promise.fail(error)
        context.close(promise: nil)
    }

    /// Whether `bytes` hold a whole event: a blank line after some content.
    static func holdsAnEvent(_ bytes: [UInt8]) -> Bool {
        var previous: UInt8 = 0
        var sawContent = false
        for byte in bytes where byte != UInt8(ascii: "\r") {
            if byte == UInt8(ascii: "\n"), previous == UInt8(ascii: "\n"), sawContent { return true }
            if byte != UInt8(ascii: "\n") { sawContent = true }
            previous = byte
        }
        return false
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A body framed by the connection's end is whole now; any other is cut short.
        if !self.done, (try? self.reader.connectionClosed()) == true, self.status != 0 {
            self.succeed(context: context)
        } else if !self.done {
            self.fail(FetchError(code: .connectionClosed, reason: "\(self.url) closed the connection before the response ended"), context: context)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(FetchError(code: .connectionClosed, reason: "\(self.url): \(error)"), context: context)
    }
}

@available(*, unavailable)
extension FetchResponseHandler: Sendable {}
