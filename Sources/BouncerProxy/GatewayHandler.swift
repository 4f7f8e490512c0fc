import BouncerCore
import BouncerTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOTLS

/// The gateway's per-connection handler: routes, authenticates, authorises each JSON-RPC
/// message and forwards to the upstream, streaming the response back.
///
/// One request at a time per connection (`HTTPServerPipelineHandler` in front of it queues
/// pipelined requests). Everything here runs on the connection's event loop, including the
/// upstream connection, so there are no locks on the data path.
final class GatewayHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPServerResponsePart

    /// Where the connection is in its current request.
    private enum State {
        /// Between requests.
        case idle
        /// Reading the request; the body is kept (bounded) for inspection.
        case collecting(Request)
        /// The request was answered early (413, 431): its remaining body is dropped.
        case discarding(closeAfter: Bool)
        /// Waiting for token verification (possibly a key fetch).
        case authorizing(Request)
        /// The upstream has the request; its response is being relayed.
        case forwarding(Exchange)
        /// The connection is gone or going.
        case closed
    }

    private struct Request {
        var head: HTTPRequestHead
        /// The request target's query, split off once.
        var query: Substring?
        var route: Route
        var body: ByteBuffer?
        var log: RequestLog
    }

    private struct Exchange {
        /// Kept for one retry on a fresh connection (see ``UpstreamLease/reused``).
        var request: Request
        var upstreamHead: HTTPRequestHead
        var resource: ResourcePolicy
        var retried = false
        var lease: UpstreamLease?
        var keepAlive: Bool
        var responseStarted: Bool
        var timeout: Scheduled<Void>?
        var errorID: JSONValue?
        var log: RequestLog
        var startedAt: NIODeadline
        var status: UInt = 0
    }

    private let gateway: Gateway
    private let remoteAddress: String
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var requestCounter = 0
    private let connectionID: String
    /// `x5t#S256` of the client's verified TLS certificate, when it sent one (RFC 8705):
    /// what certificate-bound tokens will be compared with.
    private(set) var clientCertificateThumbprint: String?

    init(gateway: Gateway, remoteAddress: String) {
        self.gateway = gateway
        self.remoteAddress = remoteAddress
        self.connectionID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.receivedHead(head, context: context)
        case .body(let buffer):
            self.receivedBody(buffer, context: context)
        case .end:
            self.receivedEnd(context: context)
        }
    }

    private func receivedHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard case .idle = self.state else {
            // HTTPServerPipelineHandler delivers one request at a time; anything else is a bug
            // or a hostile peer. Close rather than guess.
            self.closeConnection(context: context)
            return
        }
        self.requestCounter += 1
        var log = RequestLog(logger: self.gateway.logger)
        log[metadataKey: "request_id"] = "\(self.connectionID)-\(self.requestCounter)"
        log[metadataKey: "http_method"] = "\(head.method.rawValue)"
        log[metadataKey: "peer"] = "\(self.remoteAddress)"
        if let thumbprint = self.clientCertificateThumbprint {
            log[metadataKey: "client_cert"] = "\(thumbprint)"
        }

        let headerBytes = head.headers.reduce(head.uri.utf8.count) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        if headerBytes > self.gateway.policy.limits.maxHeaderBytes {
            log.notice("request refused", metadata: ["outcome": "rejected", "reason": "headers of \(headerBytes) bytes exceed \(self.gateway.policy.limits.maxHeaderBytes)", "status": "431"])
            self.state = .discarding(closeAfter: true)
            self.write(GatewayRejection.headersTooLarge.response(resource: nil), keepAlive: false, context: context)
            return
        }
        let (path, query) = GatewayRouter.split(target: head.uri)
        let route = self.gateway.router.route(path)
        if case .resource(let resource) = route {
            log[metadataKey: "resource"] = "\(resource.path)"
        }
        self.state = .collecting(Request(head: head, query: query, route: route, body: nil, log: log))
        if head.headers.first(name: "Expect")?.lowercased() == "100-continue" {
            // The body is read here (it is inspected), so the gateway, not the upstream, says
            // continue; oversized bodies are still refused with 413 as they arrive.
            context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
    }

    private func receivedBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        switch self.state {
        case .collecting(var request):
            let size = (request.body?.readableBytes ?? 0) + buffer.readableBytes
            let limit = self.gateway.policy.limits.maxBodyBytes
            guard size <= limit else {
                request.log.notice("request refused", metadata: ["outcome": "rejected", "reason": "body larger than \(limit) bytes", "status": "413"])
                let failure = JSONRPCFailure(status: 413, code: JSONRPCErrorCode.invalidRequest, message: "Payload Too Large: the body exceeds \(limit) bytes", id: nil)
                self.state = .discarding(closeAfter: true)
                self.write(GatewayRejection.jsonRPC(failure).response(resource: nil), keepAlive: false, context: context)
                return
            }
            if request.body == nil {
                request.body = buffer
            } else {
                var incoming = buffer
                request.body!.writeBuffer(&incoming)
            }
            self.state = .collecting(request)
        case .discarding, .closed:
            break
        case .idle, .authorizing, .forwarding:
            self.closeConnection(context: context)
        }
    }

    private func receivedEnd(context: ChannelHandlerContext) {
        switch self.state {
        case .collecting(let request):
            self.process(request, context: context)
        case .discarding(let closeAfter):
            if closeAfter {
                self.closeConnection(context: context)
            } else {
                self.state = .idle
            }
        case .closed:
            break
        case .idle, .authorizing, .forwarding:
            self.closeConnection(context: context)
        }
    }

    // MARK: Decision

    private func process(_ request: Request, context: ChannelHandlerContext) {
        let keepAlive = request.head.isKeepAlive
        switch request.route {
        case .notFound:
            self.finish(request, with: .notFound, resource: nil, context: context)
        case .health:
            self.state = .idle
            self.write(GatewayResponse(status: 200, headers: [("Content-Type", "text/plain")], body: "ok\n"), keepAlive: keepAlive, context: context)
        case .readiness:
            self.state = .idle
            let ready = self.gateway.isReady
            self.write(GatewayResponse(status: ready ? 200 : 503, headers: [("Content-Type", "text/plain")], body: ready ? "ready\n" : "signing keys not loaded\n"), keepAlive: keepAlive, context: context)
        case .metadata(let resource):
            self.state = .idle
            guard request.head.method == .GET || request.head.method == .HEAD else {
                self.write(GatewayResponse(status: 405, headers: [("Allow", "GET")]), keepAlive: keepAlive, context: context)
                return
            }
            // Browser-based MCP clients fetch this cross-origin.
            let response = GatewayResponse(status: 200, headers: [
                ("Content-Type", "application/json"), ("Cache-Control", "max-age=300"), ("Access-Control-Allow-Origin", "*"),
            ], body: resource.metadataDocument(issuer: self.gateway.issuer(of: resource)))
            self.write(response, keepAlive: keepAlive, omitBody: request.head.method == .HEAD, context: context)
        case .resource(let resource):
            self.processProtected(request, resource: resource, context: context)
        }
    }

    private func processProtected(_ request: Request, resource: ResourcePolicy, context: ChannelHandlerContext) {
        let headers = request.head.headers
        if let origin = headers.first(name: "Origin"), !resource.allowedOrigins.contains(Self.normalisedOrigin(origin)) {
            self.finish(request, with: .forbiddenOrigin("Origin \(origin) is not allowed"), resource: resource, context: context)
            return
        }
        let version = headers.first(name: "MCP-Protocol-Version")
        if let version, !resource.protocolVersions.contains(version) {
            let failure = JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Bad Request: unsupported MCP-Protocol-Version \(version) (supported: \(resource.protocolVersions.sorted().joined(separator: ", ")))", id: nil)
            self.finish(request, with: .jsonRPC(failure), resource: resource, context: context)
            return
        }
        let methodAllowed = request.head.method == .POST
            || (version != MCPProtocol.statelessVersion && (request.head.method == .GET || request.head.method == .DELETE))
        if !methodAllowed {
            let failure = JSONRPCFailure(status: 405, code: JSONRPCErrorCode.invalidRequest, message: "Method Not Allowed", id: nil)
            self.finish(request, with: .jsonRPC(failure), resource: resource, context: context)
            return
        }
        // RFC 6750 2.2 / 2.3 and MCP: tokens travel in the Authorization header only.
        if let query = request.query, BearerTokenExtractor.carriesAccessToken(formEncoded: query) {
            self.finish(request, with: .invalidRequest("Access tokens are accepted in the Authorization header only, not in the query string"), resource: resource, context: context)
            return
        }
        if let contentType = headers.first(name: "Content-Type"), contentType.lowercased().hasPrefix("application/x-www-form-urlencoded"),
           let body = request.body, BearerTokenExtractor.carriesAccessToken(formEncoded: String(buffer: body)) {
            self.finish(request, with: .invalidRequest("Access tokens are accepted in the Authorization header only, not in a form body"), resource: resource, context: context)
            return
        }
        let token: String
        switch BearerTokenExtractor.extract(authorization: headers["Authorization"]) {
        case .none:
            self.finish(request, with: .missingToken, resource: resource, context: context)
            return
        case .invalid(let reason):
            self.finish(request, with: .invalidRequest(reason), resource: resource, context: context)
            return
        case .token(let value):
            token = value
        }
        self.state = .authorizing(request)
        self.gateway.authenticate(token: token, resource: resource, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                guard case .authorizing(let request) = self.state, let context = self.context else { return }
                switch result {
                case .success(let claims):
                    self.authorize(request, resource: resource, token: token, claims: claims, context: context)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .authorizationServerUnavailable("\(error)")
                    self.finish(request, with: rejection, resource: resource, context: context)
                }
            }
    }

    private func authorize(_ request: Request, resource: ResourcePolicy, token: String, claims: AccessTokenClaims, context: ChannelHandlerContext) {
        var request = request
        request.log[metadataKey: "subject"] = "\(claims.subject ?? "-")"
        request.log[metadataKey: "client_id"] = "\(claims.clientID ?? "-")"
        guard request.head.method == .POST else {
            // GET opens the server-to-client stream, DELETE ends a session: no JSON-RPC
            // method to check, a valid token for this resource is what they need.
            request.log.info("request allowed", metadata: ["outcome": "allowed", "operation": "\(request.head.method.rawValue) stream"])
            self.obtainUpstreamCredential(request, resource: resource, token: token, claims: claims, tool: nil, errorID: nil, context: context)
            return
        }
        let body: JSONRPCBody
        do {
            body = try JSONRPCBody.parse(request.body.map { $0.readableBytesView } ?? ByteBuffer().readableBytesView, maxDepth: self.gateway.policy.limits.maxJSONDepth)
        } catch {
            self.finish(request, with: .jsonRPC(error), resource: resource, context: context)
            return
        }
        let operations = body.messages.map { message in
            OperationLabel(method: message.method ?? "(response)", target: try? message.target()).description
        }.joined(separator: ", ")
        request.log[metadataKey: "operation"] = "\(operations)"
        let version = request.head.headers.first(name: "MCP-Protocol-Version")
        if body.isBatch, !resource.acceptsBatches || (version != nil && version != "2025-03-26") {
            let failure = JSONRPCFailure(status: 400, code: JSONRPCErrorCode.invalidRequest, message: "Invalid Request: JSON-RPC batches are not supported by this protocol revision", id: nil)
            self.finish(request, with: .jsonRPC(failure), resource: resource, context: context)
            return
        }
        let headers = request.head.headers
        if let mismatch = MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: headers.first(name: "Mcp-Method"), mcpName: headers.first(name: "Mcp-Name"), body: body) {
            let failure = JSONRPCFailure(status: 400, code: JSONRPCErrorCode.headerMismatch, message: "Bad Request: \(mismatch)", id: body.errorID)
            self.finish(request, with: .jsonRPC(failure), resource: resource, context: context)
            return
        }
        if version == MCPProtocol.statelessVersion, let message = body.messages.first, let meta = MCPHeaderRules.metaProtocolVersion(message), meta != version {
            let failure = JSONRPCFailure(status: 400, code: JSONRPCErrorCode.headerMismatch, message: "Bad Request: MCP-Protocol-Version \(version ?? "") does not match _meta protocolVersion \(meta)", id: body.errorID)
            self.finish(request, with: .jsonRPC(failure), resource: resource, context: context)
            return
        }
        let decision: AccessDecision
        do {
            decision = try resource.decide(body, granted: claims.scopes)
        } catch {
            self.finish(request, with: .jsonRPC(error), resource: resource, context: context)
            return
        }
        switch decision {
        case .allow:
            request.log.info("request allowed", metadata: ["outcome": "allowed"])
            let tool = body.isBatch ? nil : body.messages.first.flatMap { $0.method == "tools/call" ? try? $0.target() : nil }
            self.obtainUpstreamCredential(request, resource: resource, token: token, claims: claims, tool: tool, errorID: body.errorID, context: context)
        case .insufficientScope(let needed):
            self.finish(request, with: .insufficientScope(needed: needed, id: body.errorID), resource: resource, context: context)
        case .denied(let reason):
            self.finish(request, with: .policyDenied(reason: reason, id: body.errorID), resource: resource, context: context)
        }
    }

    /// Answers a request with a refusal, logged with its reason.
    private func finish(_ request: Request, with rejection: GatewayRejection, resource: ResourcePolicy?, context: ChannelHandlerContext) {
        let response = rejection.response(resource: resource)
        let level: Logger.Level = response.status >= 500 ? .error : .notice
        request.log.log(level: level, "request refused", metadata: [
            "outcome": "rejected", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)",
        ])
        self.state = .idle
        self.write(response, keepAlive: request.head.isKeepAlive, context: context)
    }

    static func normalisedOrigin(_ origin: String) -> String {
        if origin == "null" { return origin }
        return (try? CanonicalURI(origin).origin) ?? origin
    }

    // MARK: Forwarding

    /// Token exchange when the resource asks for it (the client's token is the subject, never
    /// the credential), then forwarding.
    private func obtainUpstreamCredential(
        _ request: Request, resource: ResourcePolicy, token: String, claims: AccessTokenClaims, tool: String?, errorID: JSONValue?, context: ChannelHandlerContext
    ) {
        guard case .tokenExchange(let policy) = resource.credentials else {
            self.forward(request, resource: resource, upstreamToken: nil, errorID: errorID, context: context)
            return
        }
        guard let client = self.gateway.oauthClients[resource.authorizationServer] else {
            self.finish(request, with: .upstreamCredentialRefused(cause: "misconfigured", reason: "no client for token exchange", id: errorID), resource: resource, context: context)
            return
        }
        self.state = .authorizing(request)
        self.gateway.exchanger.upstreamToken(subjectToken: token, subjectClaims: claims, policy: policy, tool: tool, client: client, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                guard case .authorizing(let request) = self.state, let context = self.context else { return }
                switch result {
                case .success(let upstreamToken):
                    self.forward(request, resource: resource, upstreamToken: upstreamToken, errorID: errorID, context: context)
                case .failure(let error):
                    let rejection = error as? GatewayRejection ?? .upstreamCredentialUnavailable("\(error)", id: nil)
                    self.finish(request, with: rejection.answering(errorID), resource: resource, context: context)
                }
            }
    }

    private func forward(_ request: Request, resource: ResourcePolicy, upstreamToken: String?, errorID: JSONValue?, context: ChannelHandlerContext) {
        var upstreamHead = self.upstreamHead(for: request, resource: resource)
        if let upstreamToken {
            upstreamHead.headers.add(name: "Authorization", value: "Bearer \(upstreamToken)")
        }
        let exchange = Exchange(
            request: request, upstreamHead: upstreamHead, resource: resource,
            lease: nil, keepAlive: request.head.isKeepAlive, responseStarted: false, timeout: nil, errorID: errorID,
            log: request.log, startedAt: .now()
        )
        self.state = .forwarding(exchange)
        self.sendUpstream(fresh: false, context: context)
    }

    /// Leases a connection and writes the request of the current exchange to it.
    private func sendUpstream(fresh: Bool, context: ChannelHandlerContext) {
        guard case .forwarding(let exchange) = self.state else { return }
        let pool = self.gateway.pools.pool(for: context.eventLoop)
        pool.connection(
            to: exchange.resource.upstream, tls: self.gateway.tls.upstreams[exchange.resource.path],
            serverName: exchange.resource.upstreamTLS.serverName, fresh: fresh
        ).assumeIsolated().whenComplete { result in
            guard case .forwarding(var exchange) = self.state, let context = self.context else {
                // The client left while we were connecting.
                if case .success(let connection) = result { connection.channel.close(promise: nil) }
                return
            }
            let channel: any Channel
            switch result {
            case .failure(let error):
                self.state = .idle
                self.failExchange(exchange, .upstreamUnavailable("\(error)", id: exchange.errorID), context: context)
                return
            case .success(let connection):
                channel = connection.channel
                do {
                    exchange.lease = try pool.lease(connection, target: exchange.resource.upstream)
                } catch {
                    channel.close(promise: nil)
                    self.state = .idle
                    self.failExchange(exchange, .upstreamUnavailable("\(error)", id: exchange.errorID), context: context)
                    return
                }
            }
            exchange.lease?.handler.sink = self
            exchange.timeout?.cancel()
            exchange.timeout = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(self.gateway.policy.limits.upstreamResponseTimeoutSeconds)) {
                self.responseTimedOut()
            }
            self.state = .forwarding(exchange)
            channel.write(HTTPClientRequestPart.head(exchange.upstreamHead), promise: nil)
            if let body = exchange.request.body, body.readableBytes > 0 {
                channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
            }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
    }

    /// The request as the upstream sees it: no client credentials, no hop-by-hop headers,
    /// the gateway's own credential if configured, and `X-Forwarded-*`.
    private func upstreamHead(for request: Request, resource: ResourcePolicy) -> HTTPRequestHead {
        let upstream = resource.upstream
        var uri = upstream.requestPath
        if let query = request.query, !query.isEmpty { uri += (uri.contains("?") ? "&" : "?") + query }
        var head = HTTPRequestHead(version: .http1_1, method: request.head.method, uri: uri)
        let incoming = request.head.headers
        var dropped = Self.hopByHopHeaders
        for token in incoming[canonicalForm: "Connection"] { dropped.insert(token.lowercased()) }
        if case .staticHeader(let name, _) = resource.credentials { dropped.insert(name.lowercased()) }
        var forwardedFor: [String] = []
        for (name, value) in incoming {
            let lowered = name.lowercased()
            if lowered == "x-forwarded-for" {
                forwardedFor.append(value)
                continue
            }
            if dropped.contains(lowered) { continue }
            head.headers.add(name: name, value: value)
        }
        head.headers.add(name: "Host", value: upstream.hostHeader)
        if let body = request.body {
            head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        } else if request.head.method == .POST {
            head.headers.add(name: "Content-Length", value: "0")
        }
        forwardedFor.append(self.remoteAddress)
        head.headers.add(name: "X-Forwarded-For", value: forwardedFor.joined(separator: ", "))
        head.headers.add(name: "X-Forwarded-Proto", value: self.gateway.policy.publicURL.scheme)
        head.headers.add(name: "X-Forwarded-Host", value: incoming.first(name: "Host") ?? self.gateway.policy.publicURL.host)
        if case .staticHeader(let name, let value) = resource.credentials {
            head.headers.add(name: name, value: value)
        }
        return head
    }

    /// Never forwarded: connection-scoped headers (RFC 9110 7.6.1), the client's
    /// credentials (no token passthrough), and headers the gateway sets itself.
    static let hopByHopHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate", "authorization", "host", "content-length",
        "x-forwarded-proto", "x-forwarded-host", "forwarded",
        // The gateway already answered 100-continue and holds the whole body.
        "expect",
    ]


    /// Never relayed to the client: connection-scoped response headers (RFC 9110 7.6.1).
    static let hopByHopResponseHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate",
    ]

    private func responseTimedOut() {
        guard case .forwarding(let exchange) = self.state, let context = self.context, !exchange.responseStarted else { return }
        exchange.lease?.handler.sink = nil
        exchange.lease?.channel.close(promise: nil)
        self.state = .idle
        self.failExchange(exchange, .upstreamTimeout(id: exchange.errorID), context: context)
    }

    private func failExchange(_ exchange: Exchange, _ rejection: GatewayRejection, context: ChannelHandlerContext) {
        exchange.timeout?.cancel()
        let response = rejection.response(resource: nil)
        exchange.log.error("upstream failed", metadata: ["outcome": "upstream_error", "code": "\(rejection.code)", "reason": "\(rejection.logReason)", "status": "\(response.status)"])
        self.write(response, keepAlive: exchange.keepAlive, context: context)
    }

    // MARK: Writing

    private func write(_ response: GatewayResponse, keepAlive: Bool, omitBody: Bool = false, context: ChannelHandlerContext) {
        var head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status))
        for (name, value) in response.headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: String(response.body.utf8.count))
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if !response.body.isEmpty, !omitBody {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: response.body)))), promise: nil)
        }
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    private func closeConnection(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            exchange.timeout?.cancel()
            exchange.lease?.handler.sink = nil
            exchange.lease?.channel.close(promise: nil)
        }
        self.state = .closed
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .forwarding(let exchange) = self.state {
            // Client disconnect cancels the upstream exchange (MCP: closing the stream is
            // cancellation). The connection is not returned to the pool.
            exchange.timeout?.cancel()
            exchange.lease?.handler.sink = nil
            exchange.lease?.channel.close(promise: nil)
            exchange.log.info("client disconnected during the exchange", metadata: ["outcome": "client_closed"])
        }
        self.state = .closed
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .forwarding(let exchange) = self.state {
            exchange.lease?.handler.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            if let tls = try? context.pipeline.syncOperations.handler(type: TLSHandler.self), let der = tls.peerCertificate {
                self.clientCertificateThumbprint = CertificateThumbprint.sha256(der: der)
            }
        }
        if event is IdleStateHandler.IdleStateEvent {
            // Idle only counts between requests: a quiet SSE stream is not idle.
            if case .idle = self.state { self.closeConnection(context: context) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // TLS failures carry OpenSSL's error queue: worth a line when a client cannot connect.
        let level: Logger.Level = error is TLSError ? .info : .debug
        self.gateway.logger.log(level: level, "connection error", metadata: ["peer": "\(self.remoteAddress)", "error": "\(error)"])
        self.closeConnection(context: context)
    }
}

// MARK: Upstream response relay

extension GatewayHandler: UpstreamResponseSink {
    func upstreamResponseHead(_ upstreamHead: HTTPResponseHead) {
        guard case .forwarding(var exchange) = self.state, let context = self.context else { return }
        exchange.timeout?.cancel()
        exchange.timeout = nil
        exchange.responseStarted = true
        exchange.status = upstreamHead.status.code
        self.state = .forwarding(exchange)
        var head = HTTPResponseHead(version: .http1_1, status: upstreamHead.status)
        var dropped = Self.hopByHopResponseHeaders
        for token in upstreamHead.headers[canonicalForm: "Connection"] { dropped.insert(token.lowercased()) }
        for (name, value) in upstreamHead.headers where !dropped.contains(name.lowercased()) {
            head.headers.add(name: name, value: value)
        }
        if let contentType = upstreamHead.headers.first(name: "Content-Type"), contentType.lowercased().hasPrefix("text/event-stream") {
            // Tell any buffering proxy in front of us not to hold events back.
            head.headers.replaceOrAdd(name: "X-Accel-Buffering", value: "no")
        }
        if !exchange.keepAlive { head.headers.add(name: "Connection", value: "close") }
        // Flushed when the upstream read completes: one write for a response that arrived in
        // one read, and still every SSE event as soon as it arrives.
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
    }

    func upstreamReadComplete() {
        guard case .forwarding(let exchange) = self.state, exchange.responseStarted, let context = self.context else { return }
        context.flush()
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        // Each chunk goes out with the upstream read it came in (flushed in
        // `upstreamReadComplete`): an SSE event is never held back.
        context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        if !context.channel.isWritable {
            exchange.lease?.handler.pause()
        }
    }

    func upstreamResponseEnd(keepAlive upstreamKeepAlive: Bool) {
        guard case .forwarding(let exchange) = self.state, let context = self.context else { return }
        if let lease = exchange.lease {
            self.gateway.pools.pool(for: context.eventLoop).release(lease, reusable: upstreamKeepAlive)
        }
        self.state = .idle
        let elapsed = NIODeadline.now() - exchange.startedAt
        exchange.log.info("response relayed", metadata: ["outcome": "forwarded", "status": "\(exchange.status)", "upstream_ms": "\(elapsed.nanoseconds / 1_000_000)"])
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !exchange.keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func upstreamFailed(_ error: any Error) {
        guard case .forwarding(var exchange) = self.state, let context = self.context else { return }
        exchange.lease?.channel.close(promise: nil)
        if !exchange.responseStarted, !exchange.retried, exchange.lease?.reused == true {
            // A pooled connection the upstream had just closed (keep-alive race): it never
            // saw the request, so send it once more on a new connection.
            exchange.log.debug("pooled upstream connection failed before answering; retrying on a new connection", metadata: ["reason": "\(error)"])
            exchange.retried = true
            exchange.lease = nil
            self.state = .forwarding(exchange)
            self.sendUpstream(fresh: true, context: context)
            return
        }
        if exchange.responseStarted {
            // Part of the response is already with the client: the only honest signal left
            // is to cut the connection.
            exchange.log.error("upstream failed mid-response", metadata: ["outcome": "upstream_error", "reason": "\(error)"])
            self.closeConnection(context: context)
        } else {
            self.state = .idle
            self.failExchange(exchange, .upstreamUnavailable("\(error)", id: exchange.errorID), context: context)
        }
    }
}

@available(*, unavailable)
extension GatewayHandler: Sendable {}
