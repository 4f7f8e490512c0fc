import Yams

/// Turns policy YAML into a ``GatewayPolicy``, collecting every problem with its line and
/// key path instead of stopping at the first. Unknown keys are problems: a typo such as
/// `scope:` for `scopes_supported:` must not silently weaken a policy.
///
/// `mcp-bouncer check` and `mcp-bouncer run` both call this one function.
public enum PolicyLoader {
    public static func load(yaml: String, secrets: SecretSource) throws(PolicyValidationError) -> GatewayPolicy {
        let reader = PolicyReader(secrets: secrets)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw PolicyValidationError(problems: [reader.yamlProblem(error)])
        } catch {
            throw PolicyValidationError(problems: [PolicyProblem(line: nil, column: nil, keyPath: "", message: "not valid YAML: \(error)")])
        }
        guard let root else {
            throw PolicyValidationError(problems: [PolicyProblem(line: nil, column: nil, keyPath: "", message: "the policy file is empty")])
        }
        let policy = reader.policy(root)
        if var policy, reader.problems.isEmpty {
            policy.warnings = reader.warnings
            return policy
        }
        throw PolicyValidationError(problems: reader.problems.sorted { ($0.line ?? 0, $0.column ?? 0) < ($1.line ?? 0, $1.column ?? 0) })
    }
}

/// The document's top level: `listen`, `public_url`, then each section in the order of
/// `policies/README.md`, each read by its own file.
extension PolicyReader {
    func policy(_ root: Node) -> GatewayPolicy? {
        guard let top = self.section(
            root, "",
            allowed: ["listen", "public_url", "tls", "limits", "authorization_servers", "resources", "audit", "admin", "sessions", "trusted_proxies", "client_certificate_header", "bridge", "dpop"],
            required: ["listen", "public_url", "authorization_servers", "resources"]
        ) else { return nil }

        let listen = top["listen"].flatMap { self.listenAddress($0, "listen") }
        let publicURL = top["public_url"].flatMap { self.publicURL($0, "public_url") }
        let tls = top["tls"].flatMap { self.serverTLS($0, "tls") }
        let limits = top["limits"].map { self.limits($0, "limits") } ?? GatewayLimits()
        let servers = top["authorization_servers"].map { self.authorizationServers($0, "authorization_servers") } ?? [:]
        let dpop = top["dpop"].map { self.dpop($0, "dpop") } ?? DPoPSettings()
        var resources: [ResourcePolicy] = []
        if let node = top["resources"] {
            // Resources are checked even when public_url is broken, so one run reports everything.
            let base = publicURL ?? (try! CanonicalURI("https://public-url.invalid"))
            resources = self.resources(node, "resources", publicURL: base, servers: servers, dpop: (dpop ?? DPoPSettings()).requirements)
        }
        let audit = top["audit"].flatMap { self.audit($0, "audit") }
        let admin = top["admin"].flatMap { self.admin($0, "admin", listen: listen) }
        let sessions = top["sessions"].map { self.sessions($0, "sessions") } ?? SessionSettings()
        let trustedProxies = top["trusted_proxies"].map { self.trustedProxies($0, "trusted_proxies") } ?? TrustedProxies()
        let bridge = top["bridge"].map { self.bridge($0, "bridge") } ?? BridgeSettings()
        guard let listen, let publicURL, let sessions, let trustedProxies, let bridge, let dpop else { return nil }
        if publicURL.scheme == "http", !publicURL.hasLoopbackHost, tls == nil {
            // Allowed: a TLS-terminating load balancer may sit in front and rewrite the scheme;
            // but then public_url should say https. A plain-http public URL off loopback sends
            // bearer tokens in the clear.
            self.report(top["public_url"], "public_url", "must be https unless its host is loopback (bearer tokens would travel in the clear)")
        }
        var policy = GatewayPolicy(
            listen: listen, publicURL: publicURL, tls: tls, limits: limits, authorizationServers: servers, resources: resources, audit: audit, admin: admin
        )
        policy.sessions = sessions
        policy.trustedProxies = trustedProxies
        policy.bridge = bridge
        policy.dpop = dpop
        if let node = top["client_certificate_header"] {
            if self.nonEmptyString(node, "client_certificate_header")?.equalsIgnoringASCIICase(ClientCertField.name) != true {
                self.report(node, "client_certificate_header", "only Client-Cert (RFC 9440) is read")
            } else if trustedProxies.isEmpty {
                self.report(node, "client_certificate_header", "needs trusted_proxies: the header is believed only from them")
            } else {
                policy.clientCertificateHeader = true
            }
        }
        return policy
    }

    func listenAddress(_ node: Node, _ path: String) -> ListenAddress? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        var host: Substring
        var portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(after: close)...].drop { $0 == ":" }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            self.report(node, path, "expected host:port, e.g. 0.0.0.0:8443")
            return nil
        }
        if host.isEmpty { host = "0.0.0.0" }
        guard let port = Int(portText), (0...65535).contains(port) else {
            self.report(node, path, "'\(portText)' is not a port number (0-65535)")
            return nil
        }
        return ListenAddress(host: String(host), port: port)
    }

    func publicURL(_ node: Node, _ path: String) -> CanonicalURI? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        do {
            return try CanonicalURI(text)
        } catch {
            self.report(node, path, error.reason)
            return nil
        }
    }
}
