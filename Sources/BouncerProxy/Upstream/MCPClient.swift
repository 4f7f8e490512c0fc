import BouncerCore
import BouncerTLS
import NIOCore
import NIOHTTP1

/// Why a call to an MCP server failed.
package struct MCPClientError: CodedError {
    package enum Code: String, Sendable {
        case unreachable
        case refused
        case malformed
    }

    package var code: Code
    package var reason: String

    package init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// The MCP client the gateway's tools share (`pin`, `init`, `probe`, the demo, and the
/// gateway's own listing of pinned resources): the messages it sends, and a server's catalogue
/// over Streamable HTTP, every page. A session-based server (2024-11-05 to 2025-11-25) gets
/// `initialize` and `notifications/initialized` first and its session ended after; a server
/// that refuses `initialize` is asked as a stateless 2026-07-28 server.
package struct MCPClient: Sendable {
    package var fetcher: HTTPFetcher
    package var url: String
    package var headers: [(String, String)]
    package var tls: TLSContext?
    /// A server that pages forever is not followed further.
    package static let maxPages = 1000

    package init(fetcher: HTTPFetcher, url: String, headers: [(String, String)], tls: TLSContext?) {
        self.fetcher = fetcher
        self.url = url
        self.headers = headers
        self.tls = tls
    }

    // MARK: Messages

    /// The header fields every Streamable HTTP POST carries.
    package static let streamableHeaders = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]

    /// A JSON-RPC request.
    package static func request(id: Int, _ method: String, params: JSONValue? = nil) -> JSONValue {
        var members: [String: JSONValue] = ["jsonrpc": .string("2.0"), "id": .number(String(id)), "method": .string(method)]
        if let params { members["params"] = params }
        return .object(members)
    }

    /// A JSON-RPC notification.
    package static func notification(_ method: String) -> JSONValue {
        .object(["jsonrpc": .string("2.0"), "method": .string(method)])
    }

    /// `initialize`'s parameters: the revision the gateway's client speaks
    /// (``MCPProtocol/clientVersion``), its capabilities (none unless given), and who it is.
    package static func initializeParams(clientName: String, capabilities: JSONValue = .object([:])) -> JSONValue {
        .object([
            "protocolVersion": .string(MCPProtocol.clientVersion), "capabilities": capabilities,
            "clientInfo": .object(["name": .string(clientName), "version": .string(MCPBouncerVersion.current)]),
        ])
    }

    /// Asks the server `server/discover` (2026-07-28) as a client that speaks only that
    /// revision: no session, the version in the header and, with the client's (empty)
    /// capabilities and identity, in the `_meta` envelope every 2026-07-28 request carries. The
    /// answer, whatever it is (``UpstreamDiscovery`` reads it); throws only when none came.
    package func discover(clientName: String = "mcp-bouncer") async throws(MCPClientError) -> HTTPFetchResponse {
        let request = Self.request(id: 1, "server/discover", params: .object([
            "_meta": .object([
                "io.modelcontextprotocol/protocolVersion": .string(MCPProtocol.statelessVersion),
                "io.modelcontextprotocol/clientCapabilities": .object([:]),
                "io.modelcontextprotocol/clientInfo": .object(["name": .string(clientName), "version": .string(MCPBouncerVersion.current)]),
            ]),
        ]))
        let headers = self.headers + Self.streamableHeaders + [("MCP-Protocol-Version", MCPProtocol.statelessVersion), ("Mcp-Method", "server/discover")]
        do {
            return try await self.fetcher.send(.POST, self.url, purpose: "mcp", headers: headers, body: request.serialized, tls: self.tls, serverName: nil, on: nil).get()
        } catch {
            throw MCPClientError(.unreachable, "\(self.url): \(error)")
        }
    }

    // MARK: A server's catalogue

    package func listTools() async throws(MCPClientError) -> [JSONValue] {
        try await self.catalogue(tools: true, prompts: false, resources: false).tools
    }

    /// What a server offers: its `initialize` result (nil for a stateless server), and the
    /// tools, prompts and resources it lists (each only when asked for and, after an
    /// `initialize`, only when its capabilities announce it).
    package struct Catalogue: Sendable {
        package var initializeResult: JSONValue?
        package var tools: [JSONValue] = []
        package var prompts: [JSONValue] = []
        package var resources: [JSONValue] = []
        package var resourceTemplates: [JSONValue] = []
    }

    package func catalogue(tools: Bool = true, prompts: Bool = true, resources: Bool = true) async throws(MCPClientError) -> Catalogue {
        var headers = self.headers + Self.streamableHeaders
        let initialize = Self.request(id: 1, "initialize", params: Self.initializeParams(clientName: "mcp-bouncer"))
        let session: String?
        var catalogue = Catalogue()
        let (response, answer) = try await self.call(initialize, headers: headers)
        if response.status == 200, let result = answer?["result"] {
            catalogue.initializeResult = result
            session = response.header("Mcp-Session-Id")
            headers.append(("MCP-Protocol-Version", result["protocolVersion"]?.stringValue ?? MCPProtocol.clientVersion))
            if let session { headers.append(("Mcp-Session-Id", session)) }
            let initialized = Self.notification("notifications/initialized")
            let (notified, _) = try await self.call(initialized, headers: headers)
            guard (200..<300).contains(notified.status) else { throw MCPClientError(.refused, "notifications/initialized answered \(notified.status)") }
        } else {
            // No initialize (or not this one): a stateless server.
            session = nil
            headers.append(("MCP-Protocol-Version", MCPProtocol.statelessVersion))
        }
        let capabilities = catalogue.initializeResult?["capabilities"]
        func offers(_ capability: String) -> Bool { capabilities == nil || capabilities?[capability] != nil }
        let listed: Result<Catalogue, MCPClientError>
        do {
            if tools { catalogue.tools = try await self.pages("tools/list", "tools", headers: headers) }
            if prompts, offers("prompts") { catalogue.prompts = try await self.pages("prompts/list", "prompts", headers: headers) }
            if resources, offers("resources") {
                catalogue.resources = try await self.pages("resources/list", "resources", headers: headers)
                // Optional even for servers with resources.
                catalogue.resourceTemplates = (try? await self.pages("resources/templates/list", "resourceTemplates", headers: headers)) ?? []
            }
            listed = .success(catalogue)
        } catch {
            listed = .failure(error)
        }
        if let session {
            // Ends the session; the answer does not matter.
            _ = try? await self.fetcher.send(.DELETE, self.url, purpose: "mcp", headers: self.headers + [("Mcp-Session-Id", session)], body: nil, tls: self.tls, serverName: nil, on: nil).get()
        }
        return try listed.get()
    }

    /// A list method (`tools/list`, `prompts/list`, ...), page after page.
    private func pages(_ method: String, _ key: String, headers: [(String, String)]) async throws(MCPClientError) -> [JSONValue] {
        var entries: [JSONValue] = []
        var cursor: String?
        for page in 0..<Self.maxPages {
            let request = Self.request(id: page + 2, method, params: .object(cursor.map { ["cursor": .string($0)] } ?? [:]))
            let (response, answer) = try await self.call(request, headers: headers + [("Mcp-Method", method)])
            guard response.status == 200, let answer else {
                throw MCPClientError(.refused, "\(method) answered \(response.status): \(response.text.prefix(200))")
            }
            if let error = answer["error"] {
                throw MCPClientError(.refused, "\(method) failed: \(error["message"]?.stringValue ?? error.serialized)")
            }
            guard case .array(let listed)? = answer["result"]?[key] else { throw MCPClientError(.malformed, "\(method) result without a \(key) list") }
            entries += listed
            cursor = answer["result"]?["nextCursor"]?.stringValue
            if cursor == nil { return entries }
        }
        throw MCPClientError(.malformed, "\(method) still had a nextCursor after \(Self.maxPages) pages")
    }

    /// POSTs one message; the response message with its id (requests), if any.
    private func call(_ message: JSONValue, headers: [(String, String)]) async throws(MCPClientError) -> (HTTPFetchResponse, JSONValue?) {
        let response: HTTPFetchResponse
        do {
            response = try await self.fetcher.send(.POST, self.url, purpose: "mcp", headers: headers, body: message.serialized, tls: self.tls, serverName: nil, on: nil).get()
        } catch {
            throw MCPClientError(.unreachable, "\(self.url): \(error)")
        }
        guard let id = message["id"] else { return (response, nil) }
        return (response, MCPResponses.response(id: id, body: response.body, contentType: response.header("Content-Type")))
    }
}
