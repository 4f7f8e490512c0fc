/// The protocol revisions the gateway understands.
public enum MCPProtocol {
    public static let knownVersions: Set<String> = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
    public static let defaultVersions: Set<String> = ["2025-06-18", "2025-11-25", "2026-07-28"]
    /// The stateless revision: POST only, mirrored `Mcp-Method`/`Mcp-Name` headers.
    public static let statelessVersion = "2026-07-28"
}
