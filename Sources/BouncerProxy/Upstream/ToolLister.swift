import BouncerCore
import BouncerTLS
import NIOCore
import NIOHTTP1

/// Why listing a server's tools failed.
public struct ToolListError: CodedError {
    public enum Code: String, Sendable {
        case unreachable
        case refused
        case malformed
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}

/// Connects to an MCP server as a client over Streamable HTTP and lists its tools, every page:
/// what `mcp-bouncer pin` pins. A session-based server (2024-11-05 to 2025-11-25) gets
/// `initialize` and `notifications/initialized` first and its session ended after; a server
/// that refuses `initialize` is asked as a stateless 2026-07-28 server.
public struct ToolLister: Sendable {
    public var fetcher: HTTPFetcher
    public var url: String
    public var headers: [(String, String)]
    public var tls: TLSContext?
    /// A server that pages forever is not followed further.
    public static let maxPages = 1000

    public init(fetcher: HTTPFetcher, url: String, headers: [(String, String)], tls: TLSContext?) {
        self.fetcher = fetcher
        self.url = url
        self.headers = headers
        self.tls = tls
    }

    public func listTools() async throws(ToolListError) -> [JSONValue] {
        try await self.catalogue(tools: true, prompts: false, resources: false).tools
    }

    /// What a server offers: its `initialize` result (nil for a stateless server), and the
    /// tools, prompts and resources it lists (each only when asked for and, after an
    /// `initialize`, only when its capabilities announce it).
    public struct Catalogue: Sendable {
        public var initializeResult: JSONValue?
        public var tools: [JSONValue] = []
        public var prompts: [JSONValue] = []
        public var resources: [JSONValue] = []
        public var resourceTemplates: [JSONValue] = []
    }

    public func catalogue(tools: Bool = true, prompts: Bool = true, resources: Bool = true) async throws(ToolListError) -> Catalogue {
        var headers = self.headers + [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
        let initialize = JSONValue.object([
            "jsonrpc": .string("2.0"), "id": .number("1"), "method": .string("initialize"),
            "params": .object([
                "protocolVersion": .string("2025-11-25"), "capabilities": .object([:]),
                "clientInfo": .object(["name": .string("mcp-bouncer"), "version": .string(MCPBouncerVersion.current)]),
            ]),
        ])
        let session: String?
        var catalogue = Catalogue()
        let (response, answer) = try await self.call(initialize, headers: headers)
        if response.status == 200, let result = answer?["result"] {
            catalogue.initializeResult = result
            session = response.header("Mcp-Session-Id")
            headers.append(("MCP-Protocol-Version", result["protocolVersion"]?.stringValue ?? "2025-11-25"))
            if let session { headers.append(("Mcp-Session-Id", session)) }
            let initialized = JSONValue.object(["jsonrpc": .string("2.0"), "method": .string("notifications/initialized")])
            let (notified, _) = try await self.call(initialized, headers: headers)
            guard (200..<300).contains(notified.status) else { throw ToolListError(.refused, "notifications/initialized answered \(notified.status)") }
        } else {
            // No initialize (or not this one): a stateless server.
            session = nil
            headers.append(("MCP-Protocol-Version", "2026-07-28"))
        }
        let capabilities = catalogue.initializeResult?["capabilities"]
        func offers(_ capability: String) -> Bool { capabilities == nil || capabilities?[capability] != nil }
        let listed: Result<Catalogue, ToolListError>
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
    private func pages(_ method: String, _ key: String, headers: [(String, String)]) async throws(ToolListError) -> [JSONValue] {
        var entries: [JSONValue] = []
        var cursor: String?
        for page in 0..<Self.maxPages {
            let request = JSONValue.object([
                "jsonrpc": .string("2.0"), "id": .number(String(page + 2)), "method": .string(method),
                "params": .object(cursor.map { ["cursor": .string($0)] } ?? [:]),
            ])
            let (response, answer) = try await self.call(request, headers: headers + [("Mcp-Method", method)])
            guard response.status == 200, let answer else {
                throw ToolListError(.refused, "\(method) answered \(response.status): \(response.text.prefix(200))")
            }
            if let error = answer["error"] {
                throw ToolListError(.refused, "\(method) failed: \(error["message"]?.stringValue ?? error.serialized)")
            }
            guard case .array(let listed)? = answer["result"]?[key] else { throw ToolListError(.malformed, "\(method) result without a \(key) list") }
            entries += listed
            cursor = answer["result"]?["nextCursor"]?.stringValue
            if cursor == nil { return entries }
        }
        throw ToolListError(.malformed, "\(method) still had a nextCursor after \(Self.maxPages) pages")
    }

    /// POSTs one message; the response message with its id (requests), if any.
    private func call(_ message: JSONValue, headers: [(String, String)]) async throws(ToolListError) -> (HTTPFetchResponse, JSONValue?) {
        let response: HTTPFetchResponse
        do {
            response = try await self.fetcher.send(.POST, self.url, purpose: "mcp", headers: headers, body: message.serialized, tls: self.tls, serverName: nil, on: nil).get()
        } catch {
            throw ToolListError(.unreachable, "\(self.url): \(error)")
        }
        guard let id = message["id"] else { return (response, nil) }
        return (response, MCPResponses.response(id: id, body: response.body, contentType: response.header("Content-Type")))
    }
}
