import BouncerCore
import BouncerTLS
import Prometheus
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why an outbound fetch failed.
package struct FetchError: CodedError {
    package enum Code: String, Sendable, Hashable {
        case invalidURL = "invalid_url"
        case connectFailed = "connect_failed"
        case timeout
        case responseTooLarge = "response_too_large"
        case badStatus = "bad_status"
        case connectionClosed = "connection_closed"
    }

    package var code: Code
    package var reason: String
}

/// A small HTTP/1.1 client for the gateway's own calls to authorization servers
/// (discovery documents, key sets). One connection per fetch: these calls are rare (cached
/// for minutes to hours), so pooling would only add state.
///
/// Every fetch has a connect timeout, a whole-response timeout and a size limit, so a slow
/// or hostile server can neither stall a request path nor exhaust memory.
package struct HTTPFetcher: Sendable {
    package var group: any EventLoopGroup
    package var connectTimeout: TimeAmount
    package var responseTimeout: TimeAmount
    package var maxResponseBytes: Int
    private let metrics: GatewayMetrics

    package init(
        group: any EventLoopGroup, connectTimeout: TimeAmount = .seconds(5), responseTimeout: TimeAmount = .seconds(10), maxResponseBytes: Int = 1024 * 1024,
        metrics: GatewayMetrics = GatewayMetrics()
    ) {
        self.metrics = metrics
        self.group = group
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.maxResponseBytes = maxResponseBytes
    }

    /// GETs `url` and returns the body of a 200 response. https URLs need `tls`, a client
    /// context; the certificate is verified against `serverName` or the URL's host.
    package func get(_ url: String, purpose: String = "metadata", tls: TLSContext? = nil, serverName: String? = nil, on eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<[UInt8]> {
        self.send(.GET, url, purpose: purpose, headers: [("Accept", "application/json")], body: nil, tls: tls, serverName: serverName, on: eventLoop)
            .flatMapThrowing { response in
                guard response.status == 200 else {
                    throw FetchError(code: .badStatus, reason: "\(url) answered \(response.status)")
                }
                return response.body
            }
    }

    /// POSTs a form (token and introspection endpoints) and returns the response whatever its
    /// status: OAuth errors come as 400/401 with a JSON body the caller reads.
    package func postForm(_ url: String, purpose: String, fields: [(String, String)], headers: [(String, String)], tls: TLSContext?, serverName: String?, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPFetchResponse> {
        let body = FormEncoding.body(fields)
        return self.send(.POST, url, purpose: purpose, headers: headers + [("Accept", "application/json"), ("Content-Type", "application/x-www-form-urlencoded")],
                         body: body, tls: tls, serverName: serverName, on: eventLoop)
    }

    /// Any request, with the response whatever its status.
    ///
    /// Every call is counted and timed, labelled by purpose (`metadata`, `jwks`, `token`,
    /// `introspection`) and outcome (`2xx`, `4xx`, `5xx`, `error`).
    /// With `untilFirstEvent`, an `text/event-stream` response is returned after its first
    /// event (a stream that stays open, such as a GET stream or the 2024-11-05 transport's).
    package func send(_ method: HTTPMethod, _ url: String, purpose: String, headers extraHeaders: [(String, String)], body requestBody: String?, tls: TLSContext?, serverName: String?, on eventLoop: (any EventLoop)?, untilFirstEvent: Bool = false) -> EventLoopFuture<HTTPFetchResponse> {
        let started = NIODeadline.now()
        let metrics = self.metrics
        return self.sendUnmeasured(method, url, headers: extraHeaders, body: requestBody, tls: tls, serverName: serverName, on: eventLoop, untilFirstEvent: untilFirstEvent).always { result in
            let outcome: String
            switch result {
            case .success(let response): outcome = "\(response.status / 100)xx"
            case .failure: outcome = "error"
            }
            metrics.authorizationServerRequest(purpose: purpose, outcome: outcome, duration: NIODeadline.now() - started)
        }
    }

    private func sendUnmeasured(_ method: HTTPMethod, _ url: String, headers extraHeaders: [(String, String)], body requestBody: String?, tls: TLSContext?, serverName: String?, on eventLoop: (any EventLoop)?, untilFirstEvent: Bool) -> EventLoopFuture<HTTPFetchResponse> {
        let eventLoop = eventLoop ?? self.group.next()
        let parts = url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let uri: CanonicalURI
        do {
            uri = try CanonicalURI(String(parts[0]))
        } catch {
            return eventLoop.makeFailedFuture(FetchError(code: .invalidURL, reason: error.reason))
        }
        if uri.scheme == "https", tls == nil {
            return eventLoop.makeFailedFuture(FetchError(code: .invalidURL, reason: "\(url): https needs a TLS client context"))
        }
        let target = (uri.path.isEmpty ? "/" : uri.path) + (parts.count == 2 ? "?" + parts[1] : "")
        let host = uri.host.hasPrefix("[") ? String(uri.host.dropFirst().dropLast()) : uri.host
        let promise = eventLoop.makePromise(of: HTTPFetchResponse.self)
        let limit = self.maxResponseBytes
        let hostHeader = uri.port.map { "\(uri.host):\($0)" } ?? uri.host
        let tlsContext = uri.scheme == "https" ? tls : nil
        let verifiedName = serverName ?? host
        let handshakeTimeout = self.responseTimeout

        let connect = ClientBootstrap(group: eventLoop)
            .connectTimeout(self.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tlsContext, serverHostname: verifiedName, handshakeTimeout: handshakeTimeout))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(CollectingResponseHandler(limit: limit, url: url, promise: promise, untilFirstEvent: untilFirstEvent))
                }
            }
            .connect(host: host, port: uri.effectivePort)

        let timeout = eventLoop.scheduleTask(in: self.responseTimeout) {
            promise.fail(FetchError(code: .timeout, reason: "\(url) did not answer within \(self.responseTimeout.nanoseconds / 1_000_000) ms"))
        }
        connect.whenComplete { result in
            switch result {
            case .success(let channel):
                var head = HTTPRequestHead(version: .http1_1, method: method, uri: target)
                head.headers.add(name: "Host", value: hostHeader)
                head.headers.add(name: "User-Agent", value: "mcp-bouncer")
                head.headers.add(name: "Connection", value: "close")
                for (name, value) in extraHeaders { head.headers.add(name: name, value: value) }
                if let requestBody { head.headers.add(name: "Content-Length", value: String(requestBody.utf8.count)) }
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                if let requestBody { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: requestBody))), promise: nil) }
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
            case .failure(let error):
                promise.fail(FetchError(code: .connectFailed, reason: "\(url): \(error)"))
            }
        }
        return promise.futureResult.always { _ in timeout.cancel() }
    }
}

/// A complete response from ``HTTPFetcher``.
package struct HTTPFetchResponse: Sendable {
    package var status: Int
    package var headers: [(String, String)]
    package var body: [UInt8]
    /// The TLS version negotiated (`TLSv1.3`), nil over plain HTTP.
    package var tlsVersion: String?

    package init(status: Int, headers: [(String, String)], body: [UInt8], tlsVersion: String? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.tlsVersion = tlsVersion
    }

    package func header(_ name: String) -> String? { self.headers.first { $0.0.equalsIgnoringASCIICase(name) }?.1 }
    package var text: String { String(decoding: self.body, as: UTF8.self) }
}

/// Collects one response body up to a limit.
private final class CollectingResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let limit: Int
    private let url: String
    private let promise: EventLoopPromise<HTTPFetchResponse>
    private var status: HTTPResponseStatus?
    private var headers: [(String, String)] = []
    private var body: [UInt8] = []
    private let untilFirstEvent: Bool
    private var isEventStream = false
    private var tlsVersion: String?

    init(limit: Int, url: String, promise: EventLoopPromise<HTTPFetchResponse>, untilFirstEvent: Bool) {
        self.limit = limit
        self.url = url
        self.promise = promise
        self.untilFirstEvent = untilFirstEvent
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.status = head.status
            self.headers = head.headers.map { ($0.name, $0.value) }
            self.isEventStream = head.headers.first(name: "Content-Type")?.lowercased().hasPrefix("text/event-stream") ?? false
            self.tlsVersion = try? context.pipeline.syncOperations.handler(type: TLSHandler.self).protocolVersion
        case .body(var buffer):
            guard self.body.count + buffer.readableBytes <= self.limit else {
                self.promise.fail(FetchError(code: .responseTooLarge, reason: "\(self.url) sent more than \(self.limit) bytes"))
                context.close(promise: nil)
                return
            }
            self.body.append(contentsOf: buffer.readBytes(length: buffer.readableBytes) ?? [])
            if self.untilFirstEvent, self.isEventStream, Self.holdsAnEvent(self.body) {
                self.promise.succeed(HTTPFetchResponse(status: Int(self.status?.code ?? 0), headers: self.headers, body: self.body, tlsVersion: self.tlsVersion))
                context.close(promise: nil)
            }
        case .end:
            self.promise.succeed(HTTPFetchResponse(status: Int(self.status?.code ?? 0), headers: self.headers, body: self.body, tlsVersion: self.tlsVersion))
            context.close(promise: nil)
        }
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
        self.promise.fail(FetchError(code: .connectionClosed, reason: "\(self.url) closed the connection before the response ended"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(FetchError(code: .connectionClosed, reason: "\(self.url): \(error)"))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension CollectingResponseHandler: Sendable {}
