import BouncerCore
import BouncerTLS
import Prometheus
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why an outbound fetch failed.
package struct FetchError: CodedError {
    package enum Code: String, Sendable, Hashable {
        case invalidURL = "invalid_url"
        /// A field the caller gave cannot be written as HTTP/1.1 (not a token, a control character).
        case invalidRequest = "invalid_request"
        case connectFailed = "connect_failed"
        case timeout
        case responseTooLarge = "response_too_large"
        case badStatus = "bad_status"
        case connectionClosed = "connection_closed"
        /// The response is not HTTP/1.1 as the gateway's codec reads it.
        case badResponse = "bad_response"
    }

    package var code: Code
    package var reason: String
}

/// A small HTTP/1.1 client for the gateway's own calls to authorization servers
/// (discovery documents, key sets). One connection per fetch: these calls are rare (cached
/// for minutes to hours), so pooling would only add state. Requests are written by
/// ``HTTP1RequestWriter`` (targets and fields checked first) and responses read by the
/// gateway's own codec (``FetchResponseHandler``), as strict as with an upstream.
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
        let limit = self.maxResponseBytes
        let hostHeader = uri.port.map { "\(uri.host):\($0)" } ?? uri.host
        let tlsContext = uri.scheme == "https" ? tls : nil
        let verifiedName = serverName ?? host
        let handshakeTimeout = self.responseTimeout

        // The request is written before connecting: a target or field that cannot be sent is
        // refused without a connection.
        var fields: [(name: String, value: String)] = [("Host", hostHeader), ("User-Agent", "mcp-bouncer"), ("Connection", "close")]
        fields += extraHeaders.map { (name: $0.0, value: $0.1) }
        if let requestBody { fields.append(("Content-Length", String(requestBody.utf8.count))) }
        let request: ByteBuffer
        do {
            var bytes = ByteBuffer()
            try HTTP1RequestWriter.write(method: method.rawValue, target: target, fields: fields, into: &bytes)
            if let requestBody { bytes.writeString(requestBody) }
            request = bytes
        } catch {
            let code: FetchError.Code = error == .invalidTarget ? .invalidURL : .invalidRequest
            return eventLoop.makeFailedFuture(FetchError(code: code, reason: "\(url.debugDescription): \(error)"))
        }
        let requestMethod: HTTP1Method = method == .HEAD ? .HEAD : .GET
        let promise = eventLoop.makePromise(of: HTTPFetchResponse.self)

        let connect = ClientBootstrap(group: eventLoop)
            .connectTimeout(self.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tlsContext, serverHostname: verifiedName, handshakeTimeout: handshakeTimeout))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        FetchResponseHandler(limit: limit, url: url, requestMethod: requestMethod, promise: promise, untilFirstEvent: untilFirstEvent))
                }
            }
            .connect(host: host, port: uri.effectivePort)

        let timeout = eventLoop.scheduleTask(in: self.responseTimeout) {
            promise.fail(FetchError(code: .timeout, reason: "\(url) did not answer within \(self.responseTimeout.nanoseconds / 1_000_000) ms"))
        }
        connect.whenComplete { result in
            switch result {
            case .success(let channel):
                channel.writeAndFlush(request, promise: nil)
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
