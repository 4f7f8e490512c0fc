import BouncerCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The bridge's upstream sessions: opened with `initialize` and `notifications/initialized`
/// (the client capabilities the bridge can relay for that client, never more), ended with
/// DELETE when idle or evicted.
extension ProtocolBridge {
    /// The held session for `key`, opening one when there is none.
    func session(
        _ key: BridgeSessions.Key, capabilities: JSONValue, resource: ResolvedResource, credentialHeaders: [(String, String)], gateway: Gateway,
        eventLoop: any EventLoop
    ) -> EventLoopFuture<BridgeSessions.Held> {
        self.startSweeping(eventLoop: eventLoop)
        switch self.sessions.lookup(key, now: .now(), eventLoop: eventLoop) {
        case .held(let held):
            return eventLoop.makeSucceededFuture(held)
        case .opening(let future):
            return future.hop(to: eventLoop)
        case .open(let serial, let evicted, let promise):
            if let evicted { self.end(evicted, reason: "evicted") }
            // The upstream may have been upgraded since it was last asked (at most once a minute).
            gateway.rediscoverEra(of: resource)
            let opening = self.open(key, serial: serial, capabilities: capabilities, resource: resource, credentialHeaders: credentialHeaders, gateway: gateway, eventLoop: eventLoop)
            opening.whenComplete { result in
                let held = try? result.get()
                self.sessions.opened(key, held, serial: serial)
                if let held {
                    self.events.bridge(.sessionOpened, resource: resource.policy.path, subject: key.subject, details: [
                        "upstream_version": .string(held.version), "capabilities": .string(key.capabilities),
                    ])
                }
            }
            promise.completeWith(opening)
            return opening
        }
    }

    private func open(
        _ key: BridgeSessions.Key, serial: UInt64, capabilities: JSONValue, resource: ResolvedResource, credentialHeaders: [(String, String)], gateway: Gateway,
        eventLoop: any EventLoop
    ) -> EventLoopFuture<BridgeSessions.Held> {
        let id = self.nextUpstreamID()
        let message = Self.withID(MCPClient.request(id: 0, "initialize", params: MCPClient.initializeParams(clientName: "mcp-bouncer bridge", capabilities: capabilities)), id)
        return self.post(message, headers: credentialHeaders, resource: resource, gateway: gateway, eventLoop: eventLoop)
            .flatMap { call, head in
                self.response(to: id, from: call, gateway: gateway).assumeIsolated().always { _ in call.close() }.flatMapThrowing { response -> BridgeSessions.Held in
                    guard head.status == .ok, let result = response?["result"], let version = result["protocolVersion"]?.stringValue else {
                        let detail = response?["error"]?["message"]?.stringValue ?? "status \(head.status.code)"
                        throw BridgeUpstreamError(.malformed, "the MCP server refused initialize: \(detail)")
                    }
                    guard MCPProtocol.sessionVersions.contains(version) || version == "2024-11-05" else {
                        throw BridgeUpstreamError(.malformed, "the MCP server negotiated an unknown revision '\(version)'")
                    }
                    let sessionIDs = head.headers["Mcp-Session-Id"]
                    guard sessionIDs.count <= 1 else { throw BridgeUpstreamError(.malformed, "the MCP server sent \(sessionIDs.count) session ids") }
                    return BridgeSessions.Held(
                        id: sessionIDs.first, version: version, initializeResult: result, serial: serial, resource: resource, credentialHeaders: credentialHeaders
                    )
                }.nonisolated()
            }
            .flatMap { held in
                self.post(MCPClient.notification("notifications/initialized"), headers: held.headers(credentialHeaders), resource: resource, gateway: gateway, eventLoop: eventLoop)
                    .flatMapThrowing { call, head in
                        call.close()
                        guard (200..<300).contains(head.status.code) else {
                            throw BridgeUpstreamError(.malformed, "the MCP server answered notifications/initialized with \(head.status.code)")
                        }
                        return held
                    }
            }
    }

    /// Ends a held session (DELETE); the answer does not matter.
    func end(_ held: BridgeSessions.Held, reason: String) {
        self.events.bridge(.sessionEnded, resource: held.resource.policy.path, subject: nil, details: ["reason": .string(reason)])
        guard held.id != nil else { return }
        let resource = held.resource
        var headers = held.headers(held.credentialHeaders)
        if let dpop = resource.upstreamDPoP { headers = dpop.proved(headers, method: "DELETE") }
        self.fetcher.send(
            .DELETE, resource.upstream.uri.origin + resource.upstream.requestPath, purpose: "mcp", headers: headers, body: nil, tls: resource.upstreamTLS,
            serverName: resource.policy.upstreamTLS.serverName, on: nil
        ).whenComplete { _ in }
    }

    /// Ends every held session (the bridge is replaced or turned off).
    func endAll() {
        self.sweeper.withLockedValue { task in
            task?.cancel()
            task = nil
        }
        for held in self.sessions.removeAll() { self.end(held, reason: "bridge_replaced") }
    }

    /// Ends idle sessions every little while (a tenth of `bridge.session_idle_seconds`, at
    /// least once a minute); started with the first bridged request.
    private func startSweeping(eventLoop: any EventLoop) {
        let idle = TimeAmount.seconds(Int64(self.settings.sessionIdleSeconds))
        let every = TimeAmount.seconds(Int64(min(60, max(1, self.settings.sessionIdleSeconds / 10))))
        self.sweeper.withLockedValue { task in
            guard task == nil else { return }
            task = eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { [weak self] _ in
                guard let self else { return }
                for held in self.sessions.idle(since: .now() - idle) { self.end(held, reason: "idle") }
            }
        }
    }

    /// POSTs one message to `resource`'s upstream on a connection of this loop's pool (with
    /// none, GETs the session's stream).
    func post(
        _ message: JSONValue?, headers: [(String, String)], resource: ResolvedResource, gateway: Gateway, eventLoop: any EventLoop
    ) -> EventLoopFuture<(BridgeUpstreamCall, HTTPResponseHead)> {
        BridgeUpstreamCall.post(
            message, headers: headers, resource: resource, limits: gateway.policy.limits, pool: gateway.pools.pool(for: eventLoop), eventLoop: eventLoop,
            timeout: .seconds(gateway.policy.limits.upstreamResponseTimeoutSeconds)
        )
    }

    /// The response with `id` among the messages of `call` (others are skipped).
    func response(to id: JSONValue, from call: BridgeUpstreamCall, gateway: Gateway) -> EventLoopFuture<JSONValue?> {
        call.next(within: .seconds(gateway.policy.limits.upstreamResponseTimeoutSeconds)).assumeIsolated().flatMap { message in
            guard let message else { return call.eventLoop.makeSucceededFuture(nil) }
            if message["id"] == id, message["method"] == nil { return call.eventLoop.makeSucceededFuture(message) }
            return self.response(to: id, from: call, gateway: gateway)
        }.nonisolated()
    }

    static func withID(_ message: JSONValue, _ id: JSONValue) -> JSONValue {
        guard case .object(var members) = message else { return message }
        members["id"] = id
        return .object(members)
    }
}
