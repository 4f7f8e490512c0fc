import Yams

/// `resources:`: the protected MCP servers, each with its public path, upstream and rules.
extension PolicyReader {
    func resources(_ node: Node, _ path: String, publicURL: CanonicalURI, servers: [String: AuthorizationServerPolicy], dpop: DPoPRequirements) -> [ResourcePolicy] {
        guard case .sequence(let sequence) = node else {
            self.report(node, path, "expected a list of resources")
            return []
        }
        if sequence.count == 0 { self.report(node, path, "at least one resource is required") }
        var resources: [ResourcePolicy] = []
        var paths: Set<String> = []
        for (index, element) in sequence.enumerated() {
            let childPath = "\(path)[\(index)]"
            guard let resource = self.resource(element, childPath, publicURL: publicURL, servers: servers, dpop: dpop) else { continue }
            if !paths.insert(resource.path).inserted {
                self.report(element, "\(childPath).path", "path '\(resource.path)' is used by another resource")
                continue
            }
            if let (other, shared) = resources.lazy.compactMap({ other in Self.sharedAudience(resource, other).map { (other, $0) } }).first {
                // A token for one would be accepted by the other: the confused deputy the
                // audience check exists to stop.
                self.report(element, "\(childPath).accepted_audiences", "audience '\(shared)' is also accepted by resource \(other.path): a token for one would be replayed at the other; give each resource its own")
                continue
            }
            resources.append(resource)
        }
        return resources
    }

    /// An `aud` value both resources accept, if any.
    static func sharedAudience(_ one: ResourcePolicy, _ other: ResourcePolicy) -> String? {
        if let value = one.acceptedAudiences.first(where: { other.acceptedAudiences.contains($0) || other.uri.isNamed(by: $0) }) { return value }
        return other.acceptedAudiences.first { one.uri.isNamed(by: $0) }
    }

    /// `accepted_audiences`: non-empty strings, each once. Values shaped like a client id get a
    /// warning: ID tokens issued to that client carry it in `aud` too.
    func acceptedAudiences(_ section: PolicySection, resourceURI: CanonicalURI, servers: [String: AuthorizationServerPolicy]) -> [String]? {
        guard let values = section.stringList("accepted_audiences") else { return [] }
        let path = section.childPath("accepted_audiences")
        var accepted: [String] = []
        for value in values {
            if accepted.contains(value) {
                section.report("accepted_audiences", "'\(value)' is listed twice")
                return nil
            }
            if resourceURI.isNamed(by: value) {
                section.report("accepted_audiences", "'\(value)' is the resource URI itself, always accepted; list only other values")
                return nil
            }
            if let hint = Self.clientIDHint(value, servers: servers) {
                self.warn(section["accepted_audiences"], path, "'\(value)' looks like a client id (\(hint)); an ID token issued to that client names it in aud as well. Accept it only if it is this API's own identifier, and require at+jwt (require_at_jwt_type) or pin required_claims")
            }
            accepted.append(value)
        }
        return accepted
    }

    /// Why `value` looks like an OAuth client id rather than an API identifier, if it does.
    static func clientIDHint(_ value: String, servers: [String: AuthorizationServerPolicy]) -> String? {
        if let server = servers.values.sorted(by: { $0.name < $1.name }).first(where: { $0.client?.clientID == value }) {
            return "the gateway's own client id at \(server.name)"
        }
        if value.hasSuffix(".apps.googleusercontent.com") { return "a Google OAuth client id" }
        let hex = value.utf8.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false).map(\.count)
        if hex == [8, 4, 4, 4, 12], value.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }) {
            return "a GUID, as Entra ID application (client) ids are"
        }
        if !value.contains(":") { return "not a URI, as API identifiers usually are" }
        return nil
    }

    func resource(_ node: Node, _ path: String, publicURL: CanonicalURI, servers: [String: AuthorizationServerPolicy], dpop: DPoPRequirements) -> ResourcePolicy? {
        guard let section = self.section(
            node, path,
            allowed: ["path", "name", "documentation", "authorization_server", "scopes_supported", "upstream", "upstream_tls",
                      "upstream_credentials", "methods", "client_responses", "allowed_origins", "protocol_versions", "list_filtering", "tool_pins", "on_tool_change",
                      "elicitation", "server_requests", "inspect_responses", "rate_limit", "accepted_audiences", "upstream_protocol", "sender_constraint"],
            required: ["path", "authorization_server", "upstream", "methods"]
        ) else { return nil }
        var valid = true
        let resourcePath = self.resourcePath(section["path"], section.childPath("path"))
        if resourcePath == nil { valid = false }
        let name = section.string("name")
        let documentation = section.string("documentation")
        let serverName = section.nonEmptyString("authorization_server")
        if let serverName, servers[serverName] == nil {
            let known = servers.keys.sorted().joined(separator: ", ")
            section.report("authorization_server", "no authorization server named '\(serverName)' (defined: \(known.isEmpty ? "none" : known))")
            valid = false
        }
        let scopesSupported = section.scopeList("scopes_supported") ?? []
        if scopesSupported.contains("offline_access") {
            section.report("scopes_supported", "must not list offline_access (MCP: scopes_supported is the baseline a client needs)")
            valid = false
        }
        let upstream = section["upstream"].flatMap { self.upstream($0, section.childPath("upstream")) }
        let upstreamTLS = self.clientTLS(section["upstream_tls"], section.childPath("upstream_tls"))
        if upstreamTLS == nil { valid = false }
        let credentials = section["upstream_credentials"].map { self.credentials($0, section.childPath("upstream_credentials")) } ?? UpstreamCredentials.none
        let methods = section["methods"].flatMap { self.methodTable($0, section.childPath("methods")) }
        let responses = section.scopeList("client_responses")
        let listFiltering = section.bool("list_filtering") ?? true
        var toolPinning: ToolPinning?
        let onToolChange = section.choice("on_tool_change", ToolChangeAction.self, message: "must be block or alert")
        if let file = section.nonEmptyString("tool_pins") {
            switch self.secrets.readFile(file) {
            case .failure(let error):
                section.report("tool_pins", "cannot read \(file): \(error.reason)")
                valid = false
            case .success(let text):
                do {
                    toolPinning = ToolPinning(pins: try ToolPins(yaml: text), onChange: onToolChange ?? .block)
                } catch {
                    section.report("tool_pins", "\(file): \(error.reason)")
                    valid = false
                }
            }
        } else if section["on_tool_change"] != nil {
            section.report("on_tool_change", "needs tool_pins (the file of approved tool definitions)")
            valid = false
        }
        let serverRequests = self.serverRequests(section)
        let inspectResponses = section.bool("inspect_responses") ?? true
        if !inspectResponses {
            // Off means none of them: a policy that asks for one of them and turns them all off
            // says two things.
            for key in ["list_filtering", "tool_pins", "on_tool_change", "elicitation", "server_requests"] where section[key] != nil {
                section.report(key, "has no effect with inspect_responses: false (responses are relayed unread)")
                valid = false
            }
        }
        var origins: Set<String> = []
        if let list = section.stringList("allowed_origins") {
            for origin in list {
                if origin == "null" {
                    origins.insert(origin)
                } else if let uri = try? CanonicalURI(origin), uri.path.isEmpty {
                    origins.insert(uri.origin)
                } else {
                    section.report("allowed_origins", "'\(origin)' is not an origin (scheme://host[:port])")
                    valid = false
                }
            }
        }
        var versions = MCPProtocol.defaultVersions
        if let list = section.stringList("protocol_versions") {
            versions = []
            for version in list {
                if MCPProtocol.knownVersions.contains(version) {
                    versions.insert(version)
                } else {
                    section.report("protocol_versions", "unknown MCP protocol revision '\(version)' (known: \(MCPProtocol.knownVersions.sorted().joined(separator: ", ")))")
                    valid = false
                }
            }
        }
        if case .tokenExchange = credentials, let serverName, let server = servers[serverName], server.client == nil {
            section.report("upstream_credentials", "token_exchange needs the gateway's client at authorization server '\(serverName)' (authorization_servers.\(serverName).client)")
            valid = false
        }
        let upstreamProtocol = section.choice("upstream_protocol", UpstreamProtocol.self, message: "must be auto, legacy or modern")
        if section["upstream_protocol"] != nil, upstreamProtocol == nil { valid = false }
        let senderConstraint = section.choice("sender_constraint", SenderConstraint.Mode.self, message: "must be optional or required")
        if section["sender_constraint"] != nil, senderConstraint == nil { valid = false }
        let (rateLimitValid, rateLimit) = self.rateLimit(section)
        let uri = publicURL.appendingPath(resourcePath ?? "/")
        let acceptedAudiences = self.acceptedAudiences(section, resourceURI: uri, servers: servers)
        guard valid, rateLimitValid, let resourcePath, let serverName, let upstream, let upstreamTLS, let methods, let acceptedAudiences else { return nil }
        // The resource's own origin is always allowed: a browser page served by it is same-origin.
        origins.insert(publicURL.origin)
        return ResourcePolicy(
            path: resourcePath, uri: uri, name: name, documentation: documentation, authorizationServer: serverName,
            scopesSupported: scopesSupported, upstream: upstream, upstreamTLS: upstreamTLS, credentials: credentials, methods: methods,
            clientResponses: responses, allowedOrigins: origins, protocolVersions: versions, listFiltering: listFiltering,
            toolPinning: toolPinning, serverRequests: serverRequests, inspectResponses: inspectResponses, rateLimit: rateLimit,
            acceptedAudiences: acceptedAudiences, upstreamProtocol: upstreamProtocol ?? .auto, senderConstraint: senderConstraint ?? .optional, dpop: dpop
        )
    }

    /// `rate_limit: { requests_per_second: N, burst: M }` (burst defaults to N, at least 1).
    func rateLimit(_ resource: PolicySection) -> (valid: Bool, limit: RateLimit?) {
        guard resource["rate_limit"] != nil else { return (true, nil) }
        guard let section = resource.section("rate_limit", allowed: ["requests_per_second", "burst"], required: ["requests_per_second"]) else { return (false, nil) }
        guard let text = section.string("requests_per_second") else { return (false, nil) }
        guard let rate = Double(text), rate.isFinite, rate >= 0.001, rate <= 1_000_000 else {
            section.report("requests_per_second", "must be a number from 0.001 to 1000000")
            return (false, nil)
        }
        let burst = section["burst"] == nil ? Int64(max(1, rate.rounded(.up))) : section.integer("burst", range: 1...1_000_000)
        guard let burst else { return (false, nil) }
        return (true, RateLimit(requestsPerSecond: rate, burst: Int(burst)))
    }

    /// `elicitation:` and `server_requests:` (``ServerRequestPolicy``); absent keys keep the
    /// defaults.
    func serverRequests(_ resource: PolicySection) -> ServerRequestPolicy {
        var policy = ServerRequestPolicy.standard
        if let section = resource.section("elicitation", allowed: ["allow_credential_fields", "rate_limit_per_session", "url_allowed_origins"]) {
            if let allow = section.bool("allow_credential_fields") { policy.allowCredentialFields = allow }
            if let limit = section.integer("rate_limit_per_session", range: 0...1_000_000) { policy.rateLimitPerSession = Int(limit) }
            for origin in section.stringList("url_allowed_origins") ?? [] {
                if let uri = try? CanonicalURI(origin), uri.path.isEmpty, uri.origin.hasPrefix("https://") || uri.host == "127.0.0.1" || uri.host == "localhost" {
                    policy.urlAllowedOrigins.insert(uri.origin)
                } else {
                    section.report("url_allowed_origins", "'\(origin)' is not an https origin (https://host[:port]; http only for localhost)")
                }
            }
        }
        if let section = resource.section("server_requests", allowed: ["sampling", "roots"]) {
            let message = "must be allow or deny"
            if let rule = section.choice("sampling", ServerRequestPolicy.Rule.self, message: message) { policy.sampling = rule }
            if let rule = section.choice("roots", ServerRequestPolicy.Rule.self, message: message) { policy.roots = rule }
        }
        return policy
    }

    func resourcePath(_ node: Node?, _ path: String) -> String? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        guard text.hasPrefix("/"), text.count > 1 else {
            self.report(node, path, "must start with '/' and name an endpoint, e.g. /jira/mcp")
            return nil
        }
        guard !text.hasSuffix("/") else {
            self.report(node, path, "must not end with '/' (resource URIs have no trailing slash)")
            return nil
        }
        guard !text.contains("?"), !text.contains("#"), !text.contains("//"), !text.contains(" "), !text.split(separator: "/").contains("..") else {
            self.report(node, path, "must be a plain path without query, fragment, empty or '..' segments")
            return nil
        }
        guard !text.hasPrefix("/.well-known/"), text != "/healthz", text != "/readyz" else {
            self.report(node, path, "'\(text)' is reserved by the gateway")
            return nil
        }
        return text
    }

    func upstream(_ node: Node, _ path: String) -> UpstreamTarget? {
        guard let text = self.nonEmptyString(node, path) else { return nil }
        let parts = text.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let uri: CanonicalURI
        do {
            uri = try CanonicalURI(String(parts[0]))
        } catch {
            self.report(node, path, error.reason)
            return nil
        }
        // Keep the upstream path as written: some servers care about a trailing slash.
        var requestPath = String(parts[0].drop { $0 != "/" }.dropFirst(2).drop { $0 != "/" })
        if requestPath.isEmpty { requestPath = "/" }
        if parts.count == 2 { requestPath += "?" + parts[1] }
        return UpstreamTarget(uri: uri, requestPath: requestPath)
    }
}
