/// The protocol revisions the gateway understands.
public enum MCPProtocol {
    public static let knownVersions: Set<String> = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
    public static let defaultVersions: Set<String> = ["2025-06-18", "2025-11-25", "2026-07-28"]
    /// The stateless revision: POST only, mirrored `Mcp-Method`/`Mcp-Name` headers.
    public static let statelessVersion = "2026-07-28"
    /// The one revision with JSON-RPC batches.
    public static let batchVersion = "2025-03-26"
    /// The revision the gateway's own MCP client offers in `initialize` (`pin`, `init`,
    /// `probe`, the demo): the newest with sessions, which every legacy server may answer.
    public static let clientVersion = "2025-11-25"
    /// The revisions with `initialize` and sessions, oldest first.
    public static var sessionVersions: [String] { Self.knownVersions.subtracting([Self.statelessVersion]).sorted() }
}
