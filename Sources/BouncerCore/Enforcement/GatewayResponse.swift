/// A response the gateway writes itself (challenges, errors, metadata).
public struct GatewayResponse: Sendable, Hashable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: String

    public init(status: Int, headers: [(String, String)] = [], body: String = "") {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: GatewayResponse, rhs: GatewayResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && lhs.headers.map { "\($0.0): \($0.1)" } == rhs.headers.map { "\($0.0): \($0.1)" }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.status)
        hasher.combine(self.body)
    }

    public func header(_ name: String) -> String? {
        self.headers.first { $0.0.equalsIgnoringASCIICase(name) }?.1
    }

    public static func json(_ status: Int, _ body: String, extra: [(String, String)] = []) -> GatewayResponse {
        GatewayResponse(status: status, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")] + extra, body: body)
    }

    /// A plain-text answer, for refusals made before the request is known to be MCP.
    static func plain(_ status: Int, _ text: String, extra: [(String, String)] = []) -> GatewayResponse {
        GatewayResponse(status: status, headers: [("Content-Type", "text/plain")] + extra, body: text + "\n")
    }
}
