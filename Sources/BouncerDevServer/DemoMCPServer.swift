import BouncerCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// A sample "legacy" MCP server for `mcp-bouncer demo`: Streamable HTTP, no authentication at
/// all, like the servers mcp-bouncer is meant to protect. Development only.
///
/// Tools: `list_issues` (read), `create_issue` (write), `delete_issue` (admin), `slow_report`
/// (streams progress notifications over SSE); one resource, `docs://readme`. It remembers the
/// headers of the requests it receives, so the demo can show what reached it.
public final class DemoMCPServer: Sendable {
    public static let supportedVersions = ["2025-03-26", "2025-06-18", "2025-11-25"]

    /// What one received request carried, for "the upstream's view".
    public struct Seen: Sendable {
        public var method: String
        public var headers: [(String, String)]

        public func header(_ name: String) -> String? { self.headers.first { $0.0.equalsIgnoringASCIICase(name) }?.1 }
    }

    private let seen = NIOLockedValueBox([Seen]())
    private let sessions = NIOLockedValueBox(Set<String>())

    public init() {}

    public var requestsSeen: [Seen] { self.seen.withLockedValue { $0 } }
    /// The tools the server lists (to anyone: it has no authentication).
    public var toolNames: [String] { Self.tools.map(\.name) }

    public func handle(_ request: DevRequest) -> DevResponse {
        guard request.path == "/mcp" else { return .json(.notFound, #"{"error":"not found"}"#) }
        self.seen.withLockedValue { seen in
            seen.append(Seen(method: request.method.rawValue, headers: request.headers.map { ($0.name, $0.value) }))
            if seen.count > 1000 { seen.removeFirst(seen.count - 1000) }
        }
        switch request.method {
        case .POST: return self.post(request)
        case .DELETE:
            if let session = request.header("Mcp-Session-Id") { _ = self.sessions.withLockedValue { $0.remove(session) } }
            return .empty(.ok)
        default:
            // No server-initiated stream: the spec allows 405 for GET.
            return .empty(.methodNotAllowed, headers: [("Allow", "POST, DELETE")])
        }
    }

    private func post(_ request: DevRequest) -> DevResponse {
        guard let message = try? JSONParser().parse(request.body), message.objectValue != nil else {
            return .json(.badRequest, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.parseError, message: "Parse error", id: nil))
        }
        let id = message["id"]
        guard let method = message["method"]?.stringValue else {
            return .empty(.accepted)  // a response to a server request: nothing to do here
        }
        guard let id else { return .empty(.accepted) }  // notifications
        let params = message["params"]
        if method == "initialize" {
            let requested = params?["protocolVersion"]?.stringValue ?? ""
            let version = Self.supportedVersions.contains(requested) ? requested : Self.supportedVersions.last!
            let session = UUID().uuidString
            _ = self.sessions.withLockedValue { $0.insert(session) }
            let result = #"{"protocolVersion":"\#(version)","capabilities":{"tools":{},"resources":{}},"serverInfo":{"name":"demo-legacy-jira","version":"1.0.0"},"instructions":"A legacy MCP server with no authentication of its own."}"#
            return .json(.ok, Self.result(id: id, result), headers: [("Mcp-Session-Id", session)])
        }
        if let session = request.header("Mcp-Session-Id"), !self.sessions.withLockedValue({ $0.contains(session) }) {
            return .json(.notFound, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.invalidRequest, message: "Session not found", id: id))
        }
        switch method {
        case "ping":
            return .json(.ok, Self.result(id: id, "{}"))
        case "tools/list":
            return .json(.ok, Self.result(id: id, #"{"tools":[\#(Self.tools.map(\.definition).joined(separator: ","))]}"#))
        case "tools/call":
            return self.callTool(id: id, params: params)
        case "resources/list":
            return .json(.ok, Self.result(id: id, #"{"resources":[{"uri":"docs://readme","name":"readme","mimeType":"text/plain"}]}"#))
        case "resources/read":
            guard params?["uri"]?.stringValue == "docs://readme" else {
                return .json(.ok, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.invalidParams, message: "Unknown resource", id: id))
            }
            return .json(.ok, Self.result(id: id, #"{"contents":[{"uri":"docs://readme","mimeType":"text/plain","text":"This legacy server trusts anyone who can reach it. mcp-bouncer fixes that."}]}"#))
        default:
            return .json(.ok, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.methodNotFound, message: "Method not found", id: id))
        }
    }

    struct Tool {
        var name: String
        var description: String
        var schema: String

        var definition: String {
            #"{"name":"\#(self.name)","description":"\#(self.description)","inputSchema":\#(self.schema)}"#
        }
    }

    static let tools = [
        Tool(name: "list_issues", description: "List the issues of a project (read).", schema: #"{"type":"object","properties":{"project":{"type":"string"}}}"#),
        Tool(name: "create_issue", description: "Create an issue (write).", schema: #"{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}"#),
        Tool(name: "delete_issue", description: "Delete an issue (admin).", schema: #"{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}"#),
        Tool(name: "slow_report", description: "Stream progress notifications, then a report.", schema: #"{"type":"object","properties":{"steps":{"type":"integer"}}}"#),
    ]

    private func callTool(id: JSONValue, params: JSONValue?) -> DevResponse {
        let arguments = params?["arguments"]
        func text(_ value: String) -> DevResponse {
            var content = JSONWriter()
            content.add("type", "text")
            content.add("text", value)
            return .json(.ok, Self.result(id: id, #"{"content":[\#(content.string)],"isError":false}"#))
        }
        switch params?["name"]?.stringValue {
        case "list_issues":
            let project = arguments?["project"]?.stringValue ?? "OPS"
            return text("\(project)-1: printer on fire; \(project)-2: coffee machine empty")
        case "create_issue":
            return text("created: \(arguments?["title"]?.stringValue ?? "untitled")")
        case "delete_issue":
            return text("deleted: \(arguments?["key"]?.stringValue ?? "?")")
        case "slow_report":
            let steps = max(1, min(Int(arguments?["steps"]?.int64Value ?? 3), 20))
            let token = params?["_meta"]?["progressToken"]
            var chunks: [(delay: TimeAmount, text: String)] = []
            if let token {
                for step in 1...steps {
                    let notification = #"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":\#(token.serialized),"progress":\#(step),"total":\#(steps),"message":"step \#(step)"}}"#
                    chunks.append((step == 1 ? .zero : .milliseconds(250), "event: message\ndata: \(notification)\n\n"))
                }
            }
            var content = JSONWriter()
            content.add("type", "text")
            content.add("text", "report done after \(steps) steps")
            let result = Self.result(id: id, #"{"content":[\#(content.string)],"isError":false}"#)
            chunks.append((.milliseconds(250), "event: message\ndata: \(result)\n\n"))
            return .stream(status: .ok, headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")], chunks: chunks)
        default:
            return .json(.ok, JSONRPCFailure.errorBody(code: JSONRPCErrorCode.invalidParams, message: "Unknown tool", id: id))
        }
    }

    static func result(id: JSONValue, _ result: String) -> String {
        #"{"jsonrpc":"2.0","id":\#(id.serialized),"result":\#(result)}"#
    }
}
