import BouncerCore

/// A loopback test's policy, written once: a listener on a free port, the public URL the
/// harness's tokens name, its authorization server (`local`, keys from the stand-in backend)
/// and one resource at `/mcp`. A suite sets what it tests and nothing else:
///
/// ```swift
/// try harness.start(LoopbackPolicy(harness).limits("max_body_bytes: 4096").upstream(url))
/// ```
///
/// Blocks are YAML lines at their section's indentation (a limit, an audit key, a resource key).
package struct LoopbackPolicy: Sendable {
    package var listen = "127.0.0.1:0"
    package var publicURL: String
    package var issuer: String
    /// The authorization server's name in the policy.
    package var serverName = "local"
    package var jwksURL: String
    package var upstream: String
    package var limits: [String] = []
    package var audit: [String] = []
    package var sessions: [String] = []
    /// Lines at the top level (`trusted_proxies`, `admin`...).
    package var top: [String] = []
    /// Lines under the authorization server (`scope_implies`, `token_format`...).
    package var server: [String] = []
    /// Lines under the resource (`list_filtering`, `upstream_credentials`, `rate_limit`...).
    package var resource: [String] = []
    /// `upstream_protocol` of every resource: `legacy` (the backend is a stand-in legacy
    /// server), so the gateway sends it nothing of its own; nil leaves the default (`auto`:
    /// `server/discover` when the gateway runs).
    package var upstreamProtocol: String? = "legacy"
    /// The resource's `methods:` lines.
    package var methods = ["tools/call:", "  echo: [read]"]
    /// More resources after `/mcp`, each its list item's lines (`- path: /other/mcp`, ...).
    package var others: [String] = []

    package init(_ harness: LoopbackHarness) {
        self.publicURL = harness.publicURL
        self.issuer = harness.issuer
        self.jwksURL = harness.backend.url + "/jwks"
        self.upstream = harness.backend.url + "/upstream/mcp"
    }

    package func upstream(_ url: String) -> Self { self.with { $0.upstream = url } }
    package func limits(_ lines: String...) -> Self { self.limits(lines) }
    package func limits(_ lines: [String]) -> Self { self.with { $0.limits += lines } }
    package func audit(_ lines: String...) -> Self { self.audit(lines) }
    package func audit(_ lines: [String]) -> Self { self.with { $0.audit += lines } }
    package func sessions(_ lines: String...) -> Self { self.with { $0.sessions += lines } }
    package func top(_ lines: String...) -> Self { self.with { $0.top += lines } }
    package func server(_ lines: String...) -> Self { self.server(lines) }
    package func server(_ lines: [String]) -> Self { self.with { $0.server += lines } }
    package func resource(_ lines: String...) -> Self { self.resource(lines) }
    package func resource(_ lines: [String]) -> Self { self.with { $0.resource += lines } }
    package func methods(_ lines: String...) -> Self { self.with { $0.methods = lines } }
    /// `upstream_protocol` of every resource (nil: the default, `auto`).
    package func era(_ era: String?) -> Self { self.with { $0.upstreamProtocol = era } }
    /// Another resource of the same authorization server, with the same methods; `lines` are
    /// its other keys.
    package func other(path: String, upstream: String, _ lines: String...) -> Self {
        self.with {
            $0.others += ["- path: \(path)", "  authorization_server: \($0.serverName)", "  upstream: \(upstream)"]
                + ($0.upstreamProtocol.map { ["  upstream_protocol: \($0)"] } ?? []) + lines.map { "  " + $0 }
                + ["  methods:"] + $0.methods.map { "    " + $0 }
        }
    }

    private func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }

    /// The policy file's text.
    package var yaml: String {
        func block(_ key: String, _ lines: [String]) -> [String] {
            lines.isEmpty ? [] : [key + ":"] + lines.flatMap { $0.split(separator: "\n", omittingEmptySubsequences: false) }.map { "  " + $0 }
        }
        var out = ["listen: \(self.listen)", "public_url: \(self.publicURL)"] + self.top
        out += block("limits", self.limits) + block("audit", self.audit) + block("sessions", self.sessions)
        out += ["authorization_servers:", "  \(self.serverName):", "    issuer: \(self.issuer)", "    jwks_uri: \(self.jwksURL)"] + self.server.map { "    " + $0 }
        out += ["resources:", "  - path: /mcp", "    authorization_server: \(self.serverName)", "    upstream: \(self.upstream)"]
        out += self.upstreamProtocol.map { ["    upstream_protocol: \($0)"] } ?? []
        out += self.resource.flatMap { $0.split(separator: "\n", omittingEmptySubsequences: false) }.map { "    " + $0 }
        out += ["    methods:"] + self.methods.map { "      " + $0 }
        out += self.others.map { "  " + $0 }
        return out.joined(separator: "\n") + "\n"
    }
}
