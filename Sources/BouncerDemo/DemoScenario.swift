import BouncerCore
import BouncerDevServer
import BouncerProxy
import NIOCore
import NIOHTTP1
import Foundation

/// The walkthrough `mcp-bouncer demo --scenario` runs: every step is a real request, and
/// every outcome is checked.
package struct DemoScenario: Sendable {
    package struct Step: Sendable {
        package var title: String
        package var request: String
        package var outcome: String
        package var passed: Bool
    }

    let environment: DemoEnvironment
    let fetcher: HTTPFetcher
    let print: @Sendable (String) -> Void

    package init(environment: DemoEnvironment, group: any EventLoopGroup, print: @escaping @Sendable (String) -> Void) {
        self.environment = environment
        self.fetcher = HTTPFetcher(group: group)
        self.print = print
    }

    /// Runs every step, printing each as it completes. Stops at the first failure.
    package func run() async -> [Step] {
        var steps: [Step] = []
        var context = Context()
        for step in self.steps() {
            let result: Step
            do {
                result = try await step(&context)
            } catch {
                result = Step(title: "unexpected error", request: "", outcome: "\(error)", passed: false)
            }
            steps.append(result)
            self.print("\(result.passed ? "✔" : "✘") \(result.title)\n    \(result.request)\n    → \(result.outcome)\n")
            if !result.passed { break }
        }
        return steps
    }

    struct Context {
        var metadataURL = ""
        var readToken = ""
        var writeToken = ""
        var session = ""
    }

    typealias StepFunction = @Sendable (inout Context) async throws -> Step

    func steps() -> [StepFunction] {
        let env = self.environment
        return [
            { context in
                let response = try await self.rpc(token: nil, method: "tools/list", id: 1)
                let challenge = response.header("WWW-Authenticate") ?? ""
                context.metadataURL = Self.parameter("resource_metadata", in: challenge) ?? ""
                return Step(
                    title: "1. A client calls the MCP server without a token and is told where to go",
                    request: "POST \(env.resourceURL) tools/list (no Authorization)",
                    outcome: "\(response.status), WWW-Authenticate: \(challenge)",
                    passed: response.status == 401 && !context.metadataURL.isEmpty && !challenge.contains("error=")
                )
            },
            { context in
                let response = try await self.fetcher.send(.GET, context.metadataURL, purpose: "demo", headers: [], body: nil, tls: nil, serverName: nil, on: nil).get()
                let document = try? JSONParser().parse(response.body)
                return Step(
                    title: "2. It reads the protected resource metadata (RFC 9728)",
                    request: "GET \(context.metadataURL)",
                    outcome: "\(response.status) \(response.text)",
                    passed: response.status == 200 && document?["resource"] == .string(env.resourceURL)
                        && document?["authorization_servers"] == .array([.string(env.issuer)])
                )
            },
            { context in
                let response = try await self.token(scope: "jira:read", resource: env.resourceURL)
                context.readToken = Self.accessToken(response) ?? ""
                let claims = Self.claims(context.readToken)
                return Step(
                    title: "3. It gets a token from that authorization server, bound to this server with resource (RFC 8707)",
                    request: "POST \(env.issuer)/token grant_type=client_credentials scope=jira:read resource=\(env.resourceURL)",
                    outcome: "\(response.status), token aud=\(claims?["aud"]?.stringValue ?? "?") scope=\(claims?["scope"]?.stringValue ?? "?")",
                    passed: response.status == 200 && claims?["aud"] == .string(env.resourceURL)
                )
            },
            { context in
                let initialize = try await self.rpc(token: context.readToken, method: "initialize", id: 2, params: Self.initializeParams)
                context.session = initialize.header("Mcp-Session-Id") ?? ""
                let call = try await self.rpc(token: context.readToken, method: "tools/call", id: 3, params: #"{"name":"list_issues","arguments":{"project":"OPS"}}"#, session: context.session)
                return Step(
                    title: "4. With it, a tool its scope allows goes through",
                    request: "POST \(env.resourceURL) initialize, then tools/call list_issues",
                    outcome: "\(initialize.status), then \(call.status) \(call.text)",
                    passed: initialize.status == 200 && call.status == 200 && call.text.contains("OPS-1")
                )
            },
            { context in
                let list = try await self.rpc(token: context.readToken, method: "tools/list", id: 10, session: context.session)
                let answer = MCPResponses.response(id: .number("10"), body: list.body, contentType: list.header("Content-Type"))
                var names: [String] = []
                if case .array(let tools)? = answer?["result"]?["tools"] { names = tools.compactMap { $0["name"]?.stringValue } }
                let upstream = env.mcpServer.toolNames
                return Step(
                    title: "5. Its tools/list shows only the tools its scope can call (the server has more)",
                    request: "POST \(env.resourceURL) tools/list",
                    outcome: "\(list.status): \(names.joined(separator: ", ")); hidden: \(upstream.filter { !names.contains($0) }.joined(separator: ", "))",
                    passed: list.status == 200 && Set(names) == ["list_issues", "slow_report", "sign_in", "export_issues"] && upstream.count > names.count
                )
            },
            { context in
                let call = try await self.rpc(token: context.readToken, method: "tools/call", id: 11, params: #"{"name":"sign_in","arguments":{}}"#, session: context.session)
                let answer = MCPResponses.response(id: .number("11"), body: call.body, contentType: call.header("Content-Type"))
                let text = answer?["result"]?["content"]?.arrayValue?.first?["text"]?.stringValue ?? call.text
                let answers = env.mcpServer.elicitationAnswers
                return Step(
                    title: "6. A tool asks the user for a password (elicitation, which MCP forbids): the client never sees the form, the gateway declines it in the user's place",
                    request: "POST \(env.resourceURL) tools/call sign_in",
                    outcome: "\(call.status), client saw an elicitation: \(call.text.contains("elicitation/create")); tool result: \(text); the server got: \(answers.joined(separator: ", "))",
                    passed: call.status == 200 && !call.text.contains("elicitation/create") && !call.text.contains("password") && text == "sign-in: decline"
                        && answers == ["decline"]
                )
            },
            { context in
                env.mcpServer.rugPull()
                let list = try await self.rpc(token: context.readToken, method: "tools/list", id: 12, session: context.session)
                let answer = MCPResponses.response(id: .number("12"), body: list.body, contentType: list.header("Content-Type"))
                let names = answer?["result"]?["tools"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
                let call = try await self.rpc(token: context.readToken, method: "tools/call", id: 13, params: #"{"name":"export_issues","arguments":{}}"#, session: context.session)
                let message = (try? JSONParser().parse(call.body))?["error"]?["message"]?.stringValue ?? call.text
                return Step(
                    title: "7. The server changes a tool's description after it was approved (rug pull): hidden from the list, its call refused",
                    request: "export_issues's description now asks for ~/.ssh/id_rsa; POST \(env.resourceURL) tools/list, then tools/call export_issues",
                    outcome: "\(list.status): \(names.joined(separator: ", ")); then \(call.status) \(message)",
                    passed: list.status == 200 && !names.contains("export_issues") && names.contains("list_issues") && call.status == 403
                        && message.contains("changed since it was approved")
                )
            },
            { context in
                let call = try await self.rpc(token: context.readToken, method: "tools/call", id: 4, params: #"{"name":"create_issue","arguments":{"title":"printer on fire"}}"#, session: context.session)
                let challenge = call.header("WWW-Authenticate") ?? ""
                return Step(
                    title: "8. A tool that needs more scope is refused with the scope to ask for (step-up)",
                    request: "POST \(env.resourceURL) tools/call create_issue",
                    outcome: "\(call.status), WWW-Authenticate: \(challenge)",
                    passed: call.status == 403 && challenge.contains(#"error="insufficient_scope""#) && challenge.contains(#"scope="jira:write""#)
                )
            },
            { context in
                let response = try await self.token(scope: "jira:read jira:write", resource: env.resourceURL)
                context.writeToken = Self.accessToken(response) ?? ""
                let initialize = try await self.rpc(token: context.writeToken, method: "initialize", id: 5, params: Self.initializeParams)
                let session = initialize.header("Mcp-Session-Id") ?? ""
                let call = try await self.rpc(token: context.writeToken, method: "tools/call", id: 6, params: #"{"name":"create_issue","arguments":{"title":"printer on fire"}}"#, session: session)
                return Step(
                    title: "9. Re-authorised with jira:write, the same call goes through",
                    request: "POST \(env.issuer)/token scope=\"jira:read jira:write\", then tools/call create_issue",
                    outcome: "\(call.status) \(call.text)",
                    passed: call.status == 200 && call.text.contains("created: printer on fire")
                )
            },
            { _ in
                let response = try await self.token(scope: "jira:read jira:write jira:admin", resource: Self.otherResource)
                let foreign = Self.accessToken(response) ?? ""
                let before = env.mcpServer.requestsSeen.count
                let call = try await self.rpc(token: foreign, method: "tools/list", id: 7)
                let reached = env.mcpServer.requestsSeen.count - before
                return Step(
                    title: "10. A token minted for a different MCP server is refused (no confused deputy)",
                    request: "POST \(env.resourceURL) tools/list with a token whose aud is \(Self.otherResource)",
                    outcome: "\(call.status), WWW-Authenticate: \(call.header("WWW-Authenticate") ?? ""); requests that reached the legacy server: \(reached)",
                    passed: call.status == 401 && (call.header("WWW-Authenticate") ?? "").contains(#"error="invalid_token""#) && reached == 0
                )
            },
            { context in
                let seen = env.mcpServer.requestsSeen
                let clientTokens = [context.readToken, context.writeToken].filter { !$0.isEmpty }
                let leaked = seen.filter { request in clientTokens.contains { token in request.headers.contains { $0.1.contains(token) } } }
                let credentials = seen.compactMap { $0.header("Authorization") }
                let audiences = Set(credentials.compactMap { Self.claims(String($0.dropFirst(7)))?["aud"]?.stringValue })
                let actors = Set(credentials.compactMap { Self.claims(String($0.dropFirst(7)))?["act"]?["sub"]?.stringValue })
                return Step(
                    title: "11. The legacy server's view: never a client token, only its own exchanged one (RFC 8693)",
                    request: "\(seen.count) requests received by \(env.upstreamURL)",
                    outcome: "\(leaked.count) carried a client token; \(credentials.count) carried a token with aud=\(audiences.sorted().joined(separator: ",")) act=\(actors.sorted().joined(separator: ","))",
                    passed: !seen.isEmpty && leaked.isEmpty && credentials.count == seen.count && audiences == ["demo-upstream"]
                )
            },
        ]
    }

    /// How many steps a full run has.
    package static let stepCount = 11

    static var otherResource: String { DemoEnvironment.otherResource }

    /// `initialize`'s parameters, as the gateway's own client sends them.
    static let initializeParams = MCPClient.initializeParams(clientName: "demo").serialized

    func rpc(token: String?, method: String, id: Int, params: String? = nil, session: String? = nil) async throws -> HTTPFetchResponse {
        var headers = MCPClient.streamableHeaders
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        if let session, !session.isEmpty {
            headers.append(("Mcp-Session-Id", session))
            headers.append(("MCP-Protocol-Version", MCPProtocol.clientVersion))
        }
        let body = #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)"\#(params.map { ",\"params\":\($0)" } ?? "")}"#
        return try await self.fetcher.send(.POST, self.environment.resourceURL, purpose: "demo", headers: headers, body: body, tls: nil, serverName: nil, on: nil).get()
    }

    func token(scope: String, resource: String) async throws -> HTTPFetchResponse {
        let client = self.environment.walkthroughClient
        return try await self.fetcher.postForm(
            self.environment.issuer + "/token", purpose: "demo",
            fields: [("grant_type", "client_credentials"), ("scope", scope), ("resource", resource)],
            headers: [("Authorization", "Basic " + Base64URL.encodeStandard("\(client.id):\(client.secret)".utf8))],
            tls: nil, serverName: nil, on: self.fetcher.group.next()
        ).get()
    }

    static func accessToken(_ response: HTTPFetchResponse) -> String? {
        (try? JSONParser().parse(response.body))?["access_token"]?.stringValue
    }

    static func claims(_ token: String) -> JSONValue? {
        guard let jws = try? CompactJWS(token) else { return nil }
        return jws.payload
    }

    static func parameter(_ name: String, in challenge: String) -> String? {
        guard let range = challenge.range(of: "\(name)=\"") else { return nil }
        let rest = challenge[range.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }
}
