import BouncerCore
import BouncerProxy
import BouncerTLS
import Foundation
import NIOCore
import NIOHTTP1

/// What `mcp-bouncer probe` may use besides the URL.
package struct ProbeOptions: Sendable {
    /// A token valid for the server probed: it must be accepted.
    package var token: String?
    /// A token of the same issuer for another resource: it must be refused.
    package var foreignToken: String?
    /// A client of the authorization server, to ask for a token with `resource` = the URL.
    package var clientID: String?
    package var clientSecret: String?
    /// The key `token` is DPoP-bound to (`--dpop-key`): the token goes as `DPoP` with proofs,
    /// and the attacks of RFC 9449 are tried.
    package var dpopSigner: DPoPSigner?
    /// The whole probe of one server, every request included.
    package var timeout: Duration = .seconds(30)
    /// One request at most this long (within `timeout`).
    package var requestTimeout: Duration = .seconds(10)

    package init() {}
}

/// The probe ran out of time: what was found so far is reported with a timeout finding.
struct ProbeTimedOut: Error {}

/// Assesses one MCP endpoint as a client and an attacker would, with plain HTTP requests:
/// nothing but `initialize`, lists, `ping`, batches of `ping`, metadata fetches, a token request
/// when given client credentials, and calls of tools annotated read-only that need no argument.
package struct ServerProbe: Sendable {
    package let fetcher: HTTPFetcher
    package let tls: TLSContext
    package let options: ProbeOptions

    package init(fetcher: HTTPFetcher, tls: TLSContext, options: ProbeOptions) {
        self.fetcher = fetcher
        self.tls = tls
        self.options = options
    }

    static let foreignOrigin = "https://attacker.example"

    package func run(_ url: String) async -> ProbeReport {
        var report = ProbeReport(url: url)
        guard let uri = try? CanonicalURI(url), !url.contains("?"), !url.contains("#") else {
            report.add(ProbeRules.unreachable, "'\(url)' is not an http(s) URL without query or fragment")
            return report
        }
        var run = ProbeRun(probe: self, url: url, uri: uri, deadline: .now + self.options.timeout)
        do {
            try await run.assess()
        } catch is ProbeTimedOut {
            run.report.add(ProbeRules.timeout, "stopped after \(self.options.timeout) (--timeout); the findings above are what was seen until then")
        } catch {
            run.report.add(ProbeRules.unreachable, "\(error)")
        }
        return run.report
    }
}

/// One probe of one server: its requests share a deadline and a report.
struct ProbeRun {
    let probe: ServerProbe
    let url: String
    let uri: CanonicalURI
    let deadline: ContinuousClock.Instant
    var report: ProbeReport
    var nextID = 1
    /// The last `DPoP-Nonce` the server asked for (with `--dpop-key`).
    var dpopNonce: String?

    init(probe: ServerProbe, url: String, uri: CanonicalURI, deadline: ContinuousClock.Instant) {
        self.probe = probe
        self.url = url
        self.uri = uri
        self.deadline = deadline
        self.report = ProbeReport(url: url)
    }

    var options: ProbeOptions { self.probe.options }

    // MARK: The assessment

    mutating func assess() async throws {
        if self.uri.scheme == "http", !self.uri.hasLoopbackHost {
            self.report.add(ProbeRules.plainHTTP, "\(self.url) is plain http: tokens and tool data cross the network in the clear")
        }
        let opening: HTTPFetchResponse
        do {
            opening = try await self.post(self.initialize(), token: nil)
        } catch let error as FetchError where self.uri.scheme == "https" && Self.isTLSFailure(error) {
            self.report.add(ProbeRules.tlsFailed, error.reason)
            return
        } catch let error as FetchError {
            self.report.add(error.code == .timeout ? ProbeRules.timeout : ProbeRules.unreachable, "POST initialize: \(error.reason)")
            return
        }
        if let version = opening.tlsVersion { self.report.add(ProbeRules.tlsFacts, "\(version), certificate verified for \(self.uri.host)") }
        let answer = self.message(opening)
        var open = false
        if (200..<300).contains(opening.status), ProbeChecks.succeeded(answer) {
            self.report.transport = "streamable-http"
            open = true
            if let version = answer?["result"]?["protocolVersion"]?.stringValue { self.report.protocolVersions.append(version) }
            self.report.add(ProbeRules.openInitialize, "POST initialize without Authorization answered \(opening.status) with a result")
        } else if opening.status == 401 || answer != nil || opening.header("Content-Type")?.lowercased().hasPrefix("text/event-stream") == true {
            self.report.transport = "streamable-http"
        } else if try await self.detectLegacyTransport() {
            return
        }
        try await self.discover()
        if self.report.transport == nil {
            self.report.add(ProbeRules.unreachable, "POST initialize answered \(opening.status) \(opening.header("Content-Type") ?? ""), not JSON-RPC; GET offered no event stream")
            return
        }
        if open {
            try await self.assessOpenServer(session: opening.header("Mcp-Session-Id"), version: self.report.protocolVersions.first)
        } else {
            self.judgeChallenge(opening)
        }
        let servers = try await self.resourceMetadata(challenge: opening.header("WWW-Authenticate"))
        if let issuer = servers.first {
            let tokenEndpoint = try await self.serverMetadata(issuer)
            if let tokenEndpoint { try await self.requestToken(at: tokenEndpoint) }
        }
        if !open {
            try await self.assessTokens()
            var untested: [String] = []
            if self.options.token == nil { untested.append("without --token, that a valid token is accepted (and refused in the query string), Origin validation and batches") }
            if self.options.token != nil, self.options.dpopSigner == nil, self.report.findings.contains(where: { $0.rule == ProbeRules.senderConstraint }) {
                untested.append("without --dpop-key (the key a DPoP-bound --token is bound to), that the server refuses it as Bearer, with a replayed, misdirected or stale proof")
            }
            if self.options.foreignToken == nil { untested.append("without --foreign-token, audience validation (a token for another resource must be refused)") }
            if self.options.clientID == nil, !servers.isEmpty { untested.append("without --client-id/--client-secret, whether the authorization server honours resource (RFC 8707)") }
            if !untested.isEmpty { self.report.add(ProbeRules.notTested, untested.joined(separator: "; ")) }
        }
        self.report.add(ProbeRules.transport, "\(self.report.transport ?? "none")" + (self.report.protocolVersions.isEmpty ? "" : "; protocol revisions \(self.report.protocolVersions.joined(separator: ", "))"))
    }

    static func isTLSFailure(_ error: FetchError) -> Bool {
        let reason = error.reason.lowercased()
        return (error.code == .connectionClosed || error.code == .connectFailed) && ["tls", "ssl", "certificate", "handshake"].contains { reason.contains($0) }
    }

    /// The 2024-11-05 transport: GET opens an event stream whose first event is `endpoint`.
    mutating func detectLegacyTransport() async throws -> Bool {
        let response: HTTPFetchResponse
        do {
            response = try await self.send(.GET, self.url, headers: [("Accept", "text/event-stream")], body: nil, untilFirstEvent: true, timeout: .seconds(3))
        } catch is FetchError {
            return false
        }
        guard response.status == 200, response.text.contains("event: endpoint") || response.text.contains("event:endpoint") else { return false }
        self.report.transport = "http+sse"
        self.report.add(ProbeRules.legacyTransport, "GET \(self.url) opened an event stream announcing its message endpoint")
        self.report.add(ProbeRules.openInitialize, "the 2024-11-05 event stream opened without a token (that transport has no authorization)")
        return true
    }

    /// `server/discover` (2026-07-28): the revisions a stateless server supports.
    mutating func discover() async throws {
        let request = self.request("server/discover", params: .object([:]))
        let response = try await self.post(request, token: self.options.token, headers: [("MCP-Protocol-Version", MCPProtocol.statelessVersion), ("Mcp-Method", "server/discover")])
        let answer = self.message(response)
        guard (200..<300).contains(response.status), let versions = answer?["result"]?["supportedVersions"]?.arrayValue?.compactMap(\.stringValue) else { return }
        self.report.transport = "streamable-http"
        for version in versions where !self.report.protocolVersions.contains(version) { self.report.protocolVersions.append(version) }
    }

    /// A server that answered `initialize` without a token: what else it gives away.
    mutating func assessOpenServer(session: String?, version: String?) async throws {
        var headers: [(String, String)] = []
        if let session { headers.append(("Mcp-Session-Id", session)) }
        if let version { headers.append(("MCP-Protocol-Version", version)) }
        _ = try await self.post(MCPClient.notification("notifications/initialized"), token: nil, headers: headers)
        let listing = try await self.post(self.request("tools/list", params: .object([:])), token: nil, headers: headers + [("Mcp-Method", "tools/list")])
        let listed = self.message(listing)
        if (200..<300).contains(listing.status), ProbeChecks.succeeded(listed) {
            let tools = listed?["result"]?["tools"]?.arrayValue ?? []
            self.report.add(ProbeRules.openToolsList, "tools/list without Authorization listed \(tools.count) tool\(tools.count == 1 ? "" : "s"): \(tools.prefix(8).compactMap { $0["name"]?.stringValue }.joined(separator: ", "))")
            if let tool = ProbeChecks.harmlessTools(tools).first {
                let call = try await self.post(
                    self.request("tools/call", params: .object(["name": .string(tool), "arguments": .object([:])])), token: nil,
                    headers: headers + [("Mcp-Method", "tools/call"), ("Mcp-Name", tool)]
                )
                self.report.toolsCalled.append(tool)
                if (200..<300).contains(call.status), ProbeChecks.succeeded(self.message(call)) {
                    self.report.add(ProbeRules.openToolCall, "tools/call \(tool) (annotated read-only) without Authorization returned a result")
                }
            } else {
                self.report.add(ProbeRules.noToolCalled, "no tool is annotated readOnlyHint: true without required arguments; none was called")
            }
        }
        try await self.judgeOriginAndBatches(token: nil, headers: headers)
        if let session {
            _ = try? await self.send(.DELETE, self.url, headers: [("Mcp-Session-Id", session)], body: nil)
        }
    }

    /// Origin validation (DNS rebinding) and JSON-RPC batches, where requests otherwise succeed.
    mutating func judgeOriginAndBatches(token: String?, headers: [(String, String)]) async throws {
        let foreign = try await self.post(self.initialize(), token: token, headers: [("Origin", ServerProbe.foreignOrigin)])
        if (200..<300).contains(foreign.status), ProbeChecks.succeeded(self.message(foreign)) {
            self.report.add(ProbeRules.originNotValidated, "initialize with Origin: \(ServerProbe.foreignOrigin) answered \(foreign.status) with a result")
            if let session = foreign.header("Mcp-Session-Id") { _ = try? await self.send(.DELETE, self.url, headers: self.authorization(token, method: "DELETE") + [("Mcp-Session-Id", session)], body: nil) }
        }
        let batch = JSONValue.array([self.request("ping", params: nil), self.request("ping", params: nil)])
        let answered = try await self.post(batch, token: token, headers: headers)
        let body = answered.text
        if (200..<300).contains(answered.status), body.contains("\"result\""), !body.contains("\"error\"") {
            self.report.add(ProbeRules.batchAccepted, "a batch of two pings answered \(answered.status) with results")
        }
    }

    /// The challenge a request without a token got.
    mutating func judgeChallenge(_ response: HTTPFetchResponse) {
        guard response.status == 401, let header = response.header("WWW-Authenticate"), let parameters = ProbeChecks.bearerParameters(header) else {
            self.report.add(ProbeRules.noChallenge, "POST initialize without a token answered \(response.status)\(response.header("WWW-Authenticate").map { ", WWW-Authenticate: \($0)" } ?? " without WWW-Authenticate: Bearer")")
            return
        }
        if parameters["resource_metadata"] == nil {
            self.report.add(ProbeRules.noResourceMetadata, "WWW-Authenticate: \(header)")
        }
        if parameters["scope"] == nil {
            self.report.add(ProbeRules.noChallengeScope, "WWW-Authenticate: \(header)")
        }
    }

    /// Protected Resource Metadata: the challenge's URL, the path-suffixed and the root
    /// well-known URLs. Returns the authorization servers it names.
    mutating func resourceMetadata(challenge: String?) async throws -> [String] {
        let (suffixed, root) = ProbeChecks.metadataURLs(for: self.uri)
        var candidates = [suffixed, root]
        if let named = challenge.flatMap(ProbeChecks.bearerParameters)?["resource_metadata"], !candidates.contains(named) { candidates.insert(named, at: 0) }
        for candidate in candidates {
            guard let document = try await self.fetchJSON(candidate) else { continue }
            if candidate == root, suffixed != root, !self.uri.path.isEmpty {
                self.report.add(ProbeRules.metadataRootOnly, "\(suffixed) is missing; \(root) answered")
            }
            return ProbeChecks.judgeResourceMetadata(document, url: self.uri, source: candidate, into: &self.report)
        }
        self.report.add(ProbeRules.metadataMissing, "none of \(candidates.joined(separator: ", ")) answered 200 with JSON")
        return []
    }

    /// The authorization server's metadata; returns its token endpoint.
    mutating func serverMetadata(_ issuer: String) async throws -> String? {
        for candidate in AuthorizationServerMetadata.discoveryURLs(forIssuer: issuer) {
            guard let document = try await self.fetchJSON(candidate) else { continue }
            ProbeChecks.judgeServerMetadata(document, issuer: issuer, source: candidate, into: &self.report)
            return document["token_endpoint"]?.stringValue
        }
        self.report.add(ProbeRules.serverMetadataMissing, "no metadata at \(AuthorizationServerMetadata.discoveryURLs(forIssuer: issuer).joined(separator: ", "))")
        return nil
    }

    /// With `--client-id/--client-secret`: does a token asked for with `resource` = the URL
    /// name it in `aud`?
    mutating func requestToken(at endpoint: String) async throws {
        guard let id = self.options.clientID, let secret = self.options.clientSecret else { return }
        let credentials = Data("\(FormEncoding.encode(id)):\(FormEncoding.encode(secret))".utf8).base64EncodedString()
        let body = FormEncoding.body([("grant_type", "client_credentials"), ("resource", self.url)])
        let response = try await self.send(.POST, endpoint, headers: [
            ("Authorization", "Basic \(credentials)"), ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"),
        ], body: body)
        let document = try? JSONParser(maxDepth: 16).parse(response.body)
        guard response.status == 200, let token = document?["access_token"]?.stringValue else {
            let error = document?["error"]?.stringValue
            if error == "invalid_target" {
                self.report.add(ProbeRules.resourceRefused, "\(endpoint) answered invalid_target for resource=\(self.url)")
            } else {
                self.report.add(ProbeRules.tokenRequestFailed, "\(endpoint) answered \(response.status)\(error.map { " \($0)" } ?? "")")
            }
            return
        }
        guard let audiences = ProbeChecks.unverifiedAudiences(of: token) else {
            self.report.add(ProbeRules.serverFacts, "the token for resource=\(self.url) is opaque: whether it is bound to this server cannot be seen")
            return
        }
        if audiences.contains(where: { self.uri.isNamed(by: $0) }) {
            self.report.add(ProbeRules.resourceHonoured, "a token asked for with resource=\(self.url) names it in aud")
        } else {
            self.report.add(ProbeRules.resourceIgnored, "a token asked for with resource=\(self.url) has aud \(audiences.isEmpty ? "(none)" : audiences.joined(separator: ", "))")
        }
    }

    /// `--token` must be accepted, `--foreign-token` refused, a token in the query refused;
    /// with a working token, Origin validation and batches are judged too.
    mutating func assessTokens() async throws {
        if let token = self.options.token, let signer = self.options.dpopSigner {
            try await self.assessDPoP(token: token, signer: signer)
        }
        if let token = self.options.token {
            let response = try await self.post(self.initialize(), token: token)
            let answer = self.message(response)
            if (200..<300).contains(response.status), ProbeChecks.succeeded(answer) {
                var headers: [(String, String)] = []
                if let session = response.header("Mcp-Session-Id") { headers.append(("Mcp-Session-Id", session)) }
                if let version = answer?["result"]?["protocolVersion"]?.stringValue {
                    headers.append(("MCP-Protocol-Version", version))
                    if !self.report.protocolVersions.contains(version) { self.report.protocolVersions.insert(version, at: 0) }
                }
                _ = try await self.post(MCPClient.notification("notifications/initialized"), token: token, headers: headers)
                try await self.judgeOriginAndBatches(token: token, headers: headers)
                if let session = response.header("Mcp-Session-Id") {
                    _ = try? await self.send(.DELETE, self.url, headers: self.authorization(token, method: "DELETE") + [("Mcp-Session-Id", session)], body: nil)
                }
            } else {
                self.report.add(ProbeRules.validTokenRefused, "POST initialize with --token answered \(response.status)")
            }
            // The same token in the query string instead of the header.
            let query = try await self.send(.POST, "\(self.url)?access_token=\(FormEncoding.encode(token))", headers: self.mcpHeaders, body: self.initialize().serialized)
            if (200..<300).contains(query.status), ProbeChecks.succeeded(self.message(query)) {
                self.report.add(ProbeRules.queryTokenAccepted, "POST \(self.uri.path)?access_token=... without Authorization answered \(query.status) with a result")
            }
        }
        if let foreign = self.options.foreignToken {
            let response = try await self.post(self.initialize(), token: foreign)
            if (200..<300).contains(response.status), ProbeChecks.succeeded(self.message(response)) {
                let audiences = ProbeChecks.unverifiedAudiences(of: foreign).map { " (its aud: \($0.joined(separator: ", ")))" } ?? ""
                self.report.add(ProbeRules.foreignTokenAccepted, "initialize with --foreign-token\(audiences) answered \(response.status) with a result")
            }
        }
    }

    // MARK: Requests

    mutating func initialize() -> JSONValue {
        self.request("initialize", params: MCPClient.initializeParams(clientName: "mcp-bouncer-probe"))
    }

    mutating func request(_ method: String, params: JSONValue?) -> JSONValue {
        defer { self.nextID += 1 }
        return MCPClient.request(id: self.nextID, method, params: params)
    }

    var mcpHeaders: [(String, String)] { MCPClient.streamableHeaders }

    /// The token as `Bearer`, or with `--dpop-key` as `DPoP` with a fresh proof for `method`.
    func authorization(_ token: String?, method: String = "POST") -> [(String, String)] {
        guard let token else { return [] }
        if let signer = self.options.dpopSigner { return self.dpopAuthorization(token, signer: signer, method: method) }
        return [("Authorization", "Bearer \(token)")]
    }

    func post(_ message: JSONValue, token: String?, headers: [(String, String)] = []) async throws -> HTTPFetchResponse {
        try await self.send(.POST, self.url, headers: self.mcpHeaders + self.authorization(token) + headers, body: message.serialized)
    }

    /// The JSON-RPC response in a POST's answer (JSON or the first response on an SSE stream).
    func message(_ response: HTTPFetchResponse) -> JSONValue? {
        let type = response.header("Content-Type")
        if type?.lowercased().hasPrefix("text/event-stream") == true {
            for line in response.text.split(whereSeparator: \.isNewline) where line.hasPrefix("data:") {
                if let value = try? JSONParser(maxDepth: 64).parse(String(line.dropFirst(5))), value["id"] != nil { return value }
            }
            return nil
        }
        guard type?.lowercased().hasPrefix("application/json") == true, let value = try? JSONParser(maxDepth: 64).parse(response.body) else { return nil }
        return value.objectValue != nil ? value : nil
    }

    /// GETs a JSON document; nil unless 200 with a JSON body.
    func fetchJSON(_ url: String) async throws -> JSONValue? {
        guard let response = try? await self.send(.GET, url, headers: [("Accept", "application/json")], body: nil), response.status == 200 else {
            try self.checkDeadline()
            return nil
        }
        return try? JSONParser(maxDepth: 64).parse(response.body)
    }

    func checkDeadline() throws {
        if ContinuousClock.now >= self.deadline { throw ProbeTimedOut() }
    }

    /// One request, within the probe's deadline.
    func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)], body: String?, untilFirstEvent: Bool = false, timeout: Duration? = nil) async throws -> HTTPFetchResponse {
        let remaining = ContinuousClock.now.duration(to: self.deadline)
        guard remaining > .zero else { throw ProbeTimedOut() }
        var fetcher = self.probe.fetcher
        fetcher.responseTimeout = TimeAmount(min(remaining, timeout ?? self.options.requestTimeout))
        do {
            return try await fetcher.send(method, url, purpose: "probe", headers: headers, body: body, tls: self.probe.tls, serverName: nil, on: nil, untilFirstEvent: untilFirstEvent).get()
        } catch let error as FetchError where error.code == .timeout {
            try self.checkDeadline()
            throw error
        }
    }
}
