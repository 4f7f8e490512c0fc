/// The version `mcp-bouncer --version` and `mcp_bouncer_build_info` report.
public enum MCPBouncerVersion {
    public static let current = "0.13.0"
}
