import Yams

/// Turns policy YAML into a ``GatewayPolicy``, collecting every problem with its line and
/// key path instead of stopping at the first. Unknown keys are problems: a typo such as
/// `scope:` for `scopes_supported:` must not silently weaken a policy.
///
/// `mcp-bouncer check` and `mcp-bouncer run` both call this one function.
public enum PolicyLoader {
    public static func load(yaml: String, secrets: SecretSource) throws(PolicyValidationError) -> GatewayPolicy {
        let walker = PolicyWalker(secrets: secrets)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw PolicyValidationError(problems: [walker.yamlProblem(error)])
        } catch {
            throw PolicyValidationError(problems: [PolicyProblem(line: nil, column: nil, keyPath: "", message: "not valid YAML: \(error)")])
        }
        guard let root else {
            throw PolicyValidationError(problems: [PolicyProblem(line: nil, column: nil, keyPath: "", message: "the policy file is empty")])
        }
        let policy = walker.policy(root)
        if let policy, walker.problems.isEmpty { return policy }
        throw PolicyValidationError(problems: walker.problems.sorted { ($0.line ?? 0, $0.column ?? 0) < ($1.line ?? 0, $1.column ?? 0) })
    }
}

/// A mapping whose keys are checked against the ones a section allows.
private struct Section {
    let node: Node
    let path: String
    let entries: [(key: String, keyNode: Node, value: Node)]

    subscript(key: String) -> Node? {
        self.entries.first { $0.key == key }?.value
    }

    func childPath(_ key: String) -> String {
        self.path.isEmpty ? key : "\(self.path).\(key)"
    }
}

private final class PolicyWalker {
    var problems: [PolicyProblem] = []
    let secrets: SecretSource

    init(secrets: SecretSource) {
        self.secrets = secrets
    }

    // MARK: Reporting

    func report(_ node: Node?, _ path: String, _ message: String) {
        self.problems.append(PolicyProblem(line: node?.mark?.line, column: node?.mark?.column, keyPath: path, message: message))
    }

    func yamlProblem(_ error: YamlError) -> PolicyProblem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return PolicyProblem(line: mark.line, column: mark.column, keyPath: "", message: "not valid YAML: \(problem)")
        case .composer(_, let problem, let mark, _):
            return PolicyProblem(line: mark.line, column: mark.column, keyPath: "", message: "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return PolicyProblem(line: context.mark.line, column: context.mark.column, keyPath: "", message: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) (every key may appear once)")
        default:
            return PolicyProblem(line: nil, column: nil, keyPath: "", message: "not valid YAML: \(error)")
        }
    }

    // MARK: Shapes

    func section(_ node: Node, _ path: String, allowed: Set<String>, required: [String] = [], later: [String: String] = [:]) -> Section? {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of keys to values")
            return nil
        }
        var entries: [(String, Node, Node)] = []
        var seen: Set<String> = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                self.report(keyNode, path, "keys must be plain strings")
                continue
            }
            let key = scalar.string
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            if !seen.insert(key).inserted {
                self.report(keyNode, keyPath, "duplicate key '\(key)'")
                continue
            }
            if let reason = later[key] {
                self.report(keyNode, keyPath, reason)
                continue
            }
            if !allowed.contains(key) {
                self.report(keyNode, keyPath, "unknown key '\(key)' (allowed here: \(allowed.sorted().joined(separator: ", ")))")
                continue
            }
            entries.append((key, keyNode, value))
        }
        let result = Section(node: node, path: path, entries: entries)
        for key in required where result[key] == nil && !seen.contains(key) {
            self.report(node, result.childPath(key), "required key '\(key)' is missing")
        }
        return result
    }

    func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node else {
            self.report(node, path, "expected a string")
            return nil
        }
        return self.substitute(scalar.string, node, path)
    }

    func nonEmptyString(_ node: Node?, _ path: String) -> String? {
        guard let value = self.string(node, path) else { return nil }
        if value.isEmpty {
            self.report(node, path, "must not be empty")
            return nil
        }
        return value
    }

    func integer(_ node: Node?, _ path: String, range: ClosedRange<Int64>) -> Int64? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node, let value = Int64(scalar.string) else {
            self.report(node, path, "expected a whole number")
            return nil
        }
        guard range.contains(value) else {
            self.report(node, path, "must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return value
    }

    func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node, ["true", "false"].contains(scalar.string) else {
            self.report(node, path, "expected true or false")
            return nil
        }
        return scalar.string == "true"
    }

    func stringList(_ node: Node?, _ path: String) -> [String]? {
        guard let node else { return nil }
        guard case .sequence(let sequence) = node else {
            self.report(node, path, "expected a list, e.g. [a, b]")
            return nil
        }
        var values: [String] = []
        for (index, element) in sequence.enumerated() {
            if let value = self.nonEmptyString(element, "\(path)[\(index)]") { values.append(value) }
        }
        return values
    }

    /// RFC 6750 section 3: scope tokens are %x21 / %x23-5B / %x5D-7E.
    func scopeList(_ node: Node?, _ path: String) -> [String]? {
        guard let node, let values = self.stringList(node, path) else { return nil }
        var valid: [String] = []
        for value in values {
            if value.utf8.allSatisfy({ $0 == 0x21 || (0x23...0x5B).contains($0) || (0x5D...0x7E).contains($0) }) {
                if !valid.contains(value) { valid.append(value) }
            } else {
                self.report(node, path, "'\(value)' is not a valid scope token (no spaces, quotes or backslashes)")
            }
        }
        return valid
    }

    // MARK: Substitution

    /// Replaces `${env:NAME}` and `${file:PATH}`; anything else starting with `${` is a problem.
    func substitute(_ text: String, _ node: Node, _ path: String) -> String? {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                self.report(node, path, "unterminated '${' (use ${env:NAME} or ${file:PATH})")
                return nil
            }
            let reference = rest[start.upperBound..<end]
            rest = rest[rest.index(after: end)...]
            if reference.hasPrefix("env:") {
                let name = String(reference.dropFirst(4))
                guard let value = self.secrets.environment(name) else {
                    self.report(node, path, "environment variable \(name) is not set")
                    return nil
                }
                out += value
            } else if reference.hasPrefix("file:") {
                let file = String(reference.dropFirst(5))
                switch self.secrets.readFile(file) {
                case .success(var contents):
                    while contents.hasSuffix("\n") || contents.hasSuffix("\r") { contents.removeLast() }
                    out += contents
                case .failure(let error):
                    self.report(node, path, "cannot read \(file): \(error.reason)")
                    return nil
                }
            } else {
                self.report(node, path, "unknown substitution '${\(reference)}' (use ${env:NAME} or ${file:PATH})")
                return nil
            }
        }
        return out + rest
    }

    // MARK: Document

    func policy(_ root: Node) -> GatewayPolicy? {
        guard let top = self.section(
            root, "",
            allowed: ["listen", "public_url", "tls", "limits", "authorization_servers", "resources"],
            required: ["listen", "public_url", "authorization_servers", "resources"]
        ) else { return nil }

        let listen = top["listen"].flatMap { self.listenAddress($0, "listen") }
        let publicURL = top["public_url"].flatMap { self.publicURL($0, "public_url") }
        let tls = top["tls"].flatMap { self.serverTLS($0, "tls") }
        let limits = top["limits"].map { self.limits($0, "limits") } ?? GatewayLimits()
        let servers = top["authorization_servers"].map { self.authorizationServers($0, "authorization_servers") } ?? [:]
        var resources: [ResourcePolicy] = []
        if let node = top["resources"] {
            // Resources are checked even when public_url is broken, so one run reports everything.
            let base = publicURL ?? (try! CanonicalURI("https://public-url.invalid"))
            resources = self.resources(node, "resources", publicURL: base, servers: servers)
        }
        guard let listen, let publicURL else { return nil }
        if publicURL.scheme == "http", !Self.isLoopback(publicURL.host), tls == nil {
            // Allowed: a TLS-terminating load balancer may sit in front and rewrite the scheme;
            // but then public_url should say https. A plain-http public URL off loopback sends
            // bearer tokens in the clear.
            self.report(top["public_url"], "public_url", "must be https unless its host is loopback (bearer tokens would travel in the clear)")
        }
        return GatewayPolicy(listen: listen, publicURL: publicURL, tls: tls, limits: limits, authorizationServers: servers, resources: resources)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "[::1]"
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

    func certificateFiles(_ section: Section, certificateKey: String = "certificate", keyKey: String = "private_key") -> CertificateFiles? {
        guard let certificate = self.nonEmptyString(section[certificateKey], section.childPath(certificateKey)),
              let key = self.nonEmptyString(section[keyKey], section.childPath(keyKey))
        else { return nil }
        return CertificateFiles(certificate: certificate, privateKey: key)
    }

    func serverTLS(_ node: Node, _ path: String) -> ServerTLSSettings? {
        guard let section = self.section(
            node, path,
            allowed: ["certificate", "private_key", "sni", "min_version", "client_ca", "client_verify", "handshake_timeout_seconds", "reload_interval_seconds"],
            required: ["certificate", "private_key"]
        ), let certificate = self.certificateFiles(section) else { return nil }
        var settings = ServerTLSSettings(certificate: certificate)
        var valid = true
        if let version = self.string(section["min_version"], section.childPath("min_version")) {
            if let parsed = MinimumTLSVersion(rawValue: version) {
                settings.minimumVersion = parsed
            } else {
                self.report(section["min_version"], section.childPath("min_version"), "must be \"1.2\" or \"1.3\" (older versions are never offered)")
                valid = false
            }
        }
        settings.clientCA = self.string(section["client_ca"], section.childPath("client_ca"))
        if let verify = self.string(section["client_verify"], section.childPath("client_verify")) {
            if let parsed = ClientCertificateVerification(rawValue: verify) {
                settings.clientVerification = parsed
                if parsed != .none, settings.clientCA == nil {
                    self.report(section["client_verify"], section.childPath("client_verify"), "client_verify \(verify) needs client_ca")
                    valid = false
                }
            } else {
                self.report(section["client_verify"], section.childPath("client_verify"), "must be none, optional or required")
                valid = false
            }
        }
        if let value = self.integer(section["handshake_timeout_seconds"], section.childPath("handshake_timeout_seconds"), range: 1...300) { settings.handshakeTimeoutSeconds = value }
        if let value = self.integer(section["reload_interval_seconds"], section.childPath("reload_interval_seconds"), range: 0...86_400) { settings.reloadIntervalSeconds = value }
        if let sniNode = section["sni"] {
            guard case .sequence(let entries) = sniNode else {
                self.report(sniNode, section.childPath("sni"), "expected a list of {server_names, certificate, private_key}")
                return nil
            }
            for (index, entry) in entries.enumerated() {
                let entryPath = "\(section.childPath("sni"))[\(index)]"
                guard let fields = self.section(entry, entryPath, allowed: ["server_names", "certificate", "private_key"], required: ["server_names", "certificate", "private_key"]),
                      let names = self.stringList(fields["server_names"], fields.childPath("server_names")),
                      let files = self.certificateFiles(fields)
                else { valid = false; continue }
                for name in names {
                    let lowered = name.lowercased()
                    if settings.sniCertificates[lowered] != nil {
                        self.report(fields["server_names"], fields.childPath("server_names"), "server name \(name) appears twice")
                        valid = false
                    }
                    settings.sniCertificates[lowered] = files
                }
            }
        }
        return valid ? settings : nil
    }

    func clientTLS(_ node: Node?, _ path: String) -> ClientTLSSettings? {
        guard let node else { return ClientTLSSettings() }
        guard let section = self.section(node, path, allowed: ["ca_file", "server_name", "client_certificate", "client_key", "insecure_skip_verify"]) else { return nil }
        var settings = ClientTLSSettings()
        settings.caFile = self.string(section["ca_file"], section.childPath("ca_file"))
        settings.serverName = self.string(section["server_name"], section.childPath("server_name"))
        if section["client_certificate"] != nil || section["client_key"] != nil {
            guard let files = self.certificateFiles(section, certificateKey: "client_certificate", keyKey: "client_key") else {
                self.report(node, path, "client_certificate and client_key go together")
                return nil
            }
            settings.clientCertificate = files
        }
        settings.insecureSkipVerify = self.bool(section["insecure_skip_verify"], section.childPath("insecure_skip_verify")) ?? false
        return settings
    }

    func limits(_ node: Node, _ path: String) -> GatewayLimits {
        var limits = GatewayLimits()
        guard let section = self.section(node, path, allowed: Set(GatewayLimits.settings.map(\.key))) else { return limits }
        for setting in GatewayLimits.settings {
            if let value = self.integer(section[setting.key], section.childPath(setting.key), range: setting.range) {
                setting.set(value, in: &limits)
            }
        }
        return limits
    }

    // MARK: Authorization servers

    func authorizationServers(_ node: Node, _ path: String) -> [String: AuthorizationServerPolicy] {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of names to authorization servers")
            return [:]
        }
        var servers: [String: AuthorizationServerPolicy] = [:]
        for (keyNode, value) in mapping {
            let name = keyNode.scalar?.string ?? ""
            let childPath = "\(path).\(name)"
            if name.isEmpty {
                self.report(keyNode, path, "authorization server names must be non-empty strings")
                continue
            }
            if servers[name] != nil {
                self.report(keyNode, childPath, "duplicate authorization server '\(name)'")
                continue
            }
            if let server = self.authorizationServer(value, childPath, name: name) { servers[name] = server }
        }
        if mapping.count == 0 { self.report(node, path, "at least one authorization server is required") }
        return servers
    }

    func authorizationServer(_ node: Node, _ path: String, name: String) -> AuthorizationServerPolicy? {
        guard let section = self.section(
            node, path,
            allowed: ["issuer", "metadata_url", "jwks_uri", "algorithms", "leeway_seconds", "require_at_jwt_type",
                      "scope_claims", "jwks_refresh_min_interval_seconds", "jwks_max_age_seconds", "tls",
                      "client", "token_endpoint", "introspection_endpoint", "token_format",
                      "introspection_cache_seconds", "introspection_negative_cache_seconds"],
            required: ["issuer"]
        ) else { return nil }
        guard let issuer = self.nonEmptyString(section["issuer"], section.childPath("issuer")) else { return nil }
        var valid = true
        if self.checkedURL(issuer, section["issuer"], section.childPath("issuer"), allowQuery: false) == nil { valid = false }
        let metadataURL = self.string(section["metadata_url"], section.childPath("metadata_url"))
        if let metadataURL, self.checkedURL(metadataURL, section["metadata_url"], section.childPath("metadata_url"), allowQuery: true) == nil { valid = false }
        let jwksURI = self.string(section["jwks_uri"], section.childPath("jwks_uri"))
        if let jwksURI, self.checkedURL(jwksURI, section["jwks_uri"], section.childPath("jwks_uri"), allowQuery: true) == nil { valid = false }

        var algorithms = Set(JWSAlgorithm.allCases)
        if let names = self.stringList(section["algorithms"], section.childPath("algorithms")) {
            algorithms = []
            for name in names {
                if let algorithm = JWSAlgorithm(rawValue: name) {
                    algorithms.insert(algorithm)
                } else {
                    let hint = name.uppercased().hasPrefix("HS") || name.lowercased() == "none" ? " (symmetric and unsigned tokens are never accepted)" : ""
                    self.report(section["algorithms"], section.childPath("algorithms"), "unsupported algorithm '\(name)'\(hint); allowed: \(JWSAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
                    valid = false
                }
            }
            if names.isEmpty {
                self.report(section["algorithms"], section.childPath("algorithms"), "at least one algorithm is required")
                valid = false
            }
        }
        var scopeClaims = ["scope", "scp"]
        if let claims = self.stringList(section["scope_claims"], section.childPath("scope_claims")) {
            for claim in claims where claim != "scope" && claim != "scp" {
                self.report(section["scope_claims"], section.childPath("scope_claims"), "unknown scope claim '\(claim)' (use scope and/or scp)")
                valid = false
            }
            scopeClaims = claims
        }
        let leeway = self.integer(section["leeway_seconds"], section.childPath("leeway_seconds"), range: 0...300) ?? 60
        let minRefresh = self.integer(section["jwks_refresh_min_interval_seconds"], section.childPath("jwks_refresh_min_interval_seconds"), range: 1...3600) ?? 30
        let maxAge = self.integer(section["jwks_max_age_seconds"], section.childPath("jwks_max_age_seconds"), range: 60...604_800) ?? 3600
        let requireType = self.bool(section["require_at_jwt_type"], section.childPath("require_at_jwt_type")) ?? false
        var tokenEndpoint: String?
        var introspectionEndpoint: String?
        for (key, slot) in [("token_endpoint", 0), ("introspection_endpoint", 1)] {
            guard let url = self.string(section[key], section.childPath(key)) else { continue }
            if self.checkedURL(url, section[key], section.childPath(key), allowQuery: true) == nil { valid = false }
            if slot == 0 { tokenEndpoint = url } else { introspectionEndpoint = url }
        }
        var format = TokenFormat.auto
        if let text = self.string(section["token_format"], section.childPath("token_format")) {
            if let value = TokenFormat(rawValue: text) { format = value } else {
                self.report(section["token_format"], section.childPath("token_format"), "must be jwt, opaque or auto")
                valid = false
            }
        }
        var client: OAuthClientCredentials?
        if let node = section["client"] {
            client = self.oauthClient(node, section.childPath("client"))
            if client == nil { valid = false }
        }
        if format == .opaque, client == nil {
            self.report(section["token_format"], section.childPath("token_format"), "opaque tokens are introspected with the gateway's client: add 'client'")
            valid = false
        }
        let positiveTTL = self.integer(section["introspection_cache_seconds"], section.childPath("introspection_cache_seconds"), range: 0...86_400) ?? 300
        let negativeTTL = self.integer(section["introspection_negative_cache_seconds"], section.childPath("introspection_negative_cache_seconds"), range: 0...3600) ?? 10
        guard valid, let tls = self.clientTLS(section["tls"], section.childPath("tls")) else { return nil }
        var server = AuthorizationServerPolicy(
            name: name, issuer: issuer, metadataURL: metadataURL, jwksURI: jwksURI, algorithms: algorithms,
            leewaySeconds: leeway, requireAccessTokenType: requireType, scopeClaims: scopeClaims, tls: tls,
            jwksRefreshMinIntervalSeconds: minRefresh, jwksMaxAgeSeconds: maxAge
        )
        server.client = client
        server.tokenEndpoint = tokenEndpoint
        server.introspectionEndpoint = introspectionEndpoint
        server.tokenFormat = format
        server.introspectionCacheSeconds = positiveTTL
        server.introspectionNegativeCacheSeconds = negativeTTL
        return server
    }

    func oauthClient(_ node: Node, _ path: String) -> OAuthClientCredentials? {
        guard let section = self.section(node, path, allowed: ["id", "secret", "private_key", "auth_method"], required: ["id"]),
              let id = self.nonEmptyString(section["id"], section.childPath("id"))
        else { return nil }
        let secret = self.string(section["secret"], section.childPath("secret"))
        var key: AssertionSigningKey?
        if let pem = self.string(section["private_key"], section.childPath("private_key")) {
            do {
                key = try AssertionSigningKey(pem: pem)
            } catch {
                self.report(section["private_key"], section.childPath("private_key"), "\(error.reason) (give the PEM itself, e.g. ${file:/run/secrets/key.pem})")
                return nil
            }
        }
        var method: ClientAuthenticationMethod = key != nil ? .privateKeyJWT : .clientSecretBasic
        if let text = self.string(section["auth_method"], section.childPath("auth_method")) {
            guard let value = ClientAuthenticationMethod(rawValue: text) else {
                self.report(section["auth_method"], section.childPath("auth_method"), "must be one of \(ClientAuthenticationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
                return nil
            }
            method = value
        }
        switch method {
        case .clientSecretBasic, .clientSecretPost:
            guard secret != nil else {
                self.report(node, path, "\(method.rawValue) needs 'secret'")
                return nil
            }
        case .privateKeyJWT:
            guard key != nil else {
                self.report(node, path, "private_key_jwt needs 'private_key'")
                return nil
            }
        }
        if secret != nil, key != nil {
            self.report(node, path, "give either 'secret' or 'private_key', not both")
            return nil
        }
        return OAuthClientCredentials(clientID: id, method: method, secret: secret, key: key)
    }

    /// An http(s) URL the gateway will fetch: https, or http on loopback only.
    func checkedURL(_ text: String, _ node: Node?, _ path: String, allowQuery: Bool) -> CanonicalURI? {
        let base = allowQuery ? String(text.split(separator: "?", maxSplits: 1).first ?? "") : text
        do {
            let uri = try CanonicalURI(base)
            if uri.scheme == "http", !Self.isLoopback(uri.host) {
                self.report(node, path, "must be https unless its host is loopback")
                return nil
            }
            return uri
        } catch {
            self.report(node, path, error.reason)
            return nil
        }
    }

    // MARK: Resources

    func resources(_ node: Node, _ path: String, publicURL: CanonicalURI, servers: [String: AuthorizationServerPolicy]) -> [ResourcePolicy] {
        guard case .sequence(let sequence) = node else {
            self.report(node, path, "expected a list of resources")
            return []
        }
        if sequence.count == 0 { self.report(node, path, "at least one resource is required") }
        var resources: [ResourcePolicy] = []
        var paths: Set<String> = []
        for (index, element) in sequence.enumerated() {
            let childPath = "\(path)[\(index)]"
            guard let resource = self.resource(element, childPath, publicURL: publicURL, servers: servers) else { continue }
            if !paths.insert(resource.path).inserted {
                self.report(element, "\(childPath).path", "path '\(resource.path)' is used by another resource")
                continue
            }
            resources.append(resource)
        }
        return resources
    }

    func resource(_ node: Node, _ path: String, publicURL: CanonicalURI, servers: [String: AuthorizationServerPolicy]) -> ResourcePolicy? {
        guard let section = self.section(
            node, path,
            allowed: ["path", "name", "documentation", "authorization_server", "scopes_supported", "upstream", "upstream_tls",
                      "upstream_credentials", "methods", "client_responses", "allowed_origins", "protocol_versions"],
            required: ["path", "authorization_server", "upstream", "methods"]
        ) else { return nil }
        var valid = true
        let resourcePath = self.resourcePath(section["path"], section.childPath("path"))
        if resourcePath == nil { valid = false }
        let name = self.string(section["name"], section.childPath("name"))
        let documentation = self.string(section["documentation"], section.childPath("documentation"))
        let serverName = self.nonEmptyString(section["authorization_server"], section.childPath("authorization_server"))
        if let serverName, servers[serverName] == nil {
            let known = servers.keys.sorted().joined(separator: ", ")
            self.report(section["authorization_server"], section.childPath("authorization_server"), "no authorization server named '\(serverName)' (defined: \(known.isEmpty ? "none" : known))")
            valid = false
        }
        let scopesSupported = self.scopeList(section["scopes_supported"], section.childPath("scopes_supported")) ?? []
        if scopesSupported.contains("offline_access") {
            self.report(section["scopes_supported"], section.childPath("scopes_supported"), "must not list offline_access (MCP: scopes_supported is the baseline a client needs)")
            valid = false
        }
        let upstream = section["upstream"].flatMap { self.upstream($0, section.childPath("upstream")) }
        let upstreamTLS = self.clientTLS(section["upstream_tls"], section.childPath("upstream_tls"))
        if upstreamTLS == nil { valid = false }
        let credentials = section["upstream_credentials"].map { self.credentials($0, section.childPath("upstream_credentials")) } ?? UpstreamCredentials.none
        let methods = section["methods"].flatMap { self.methodTable($0, section.childPath("methods")) }
        let responses = self.scopeList(section["client_responses"], section.childPath("client_responses"))
        var origins: Set<String> = []
        if let list = self.stringList(section["allowed_origins"], section.childPath("allowed_origins")) {
            for origin in list {
                if origin == "null" {
                    origins.insert(origin)
                } else if let uri = try? CanonicalURI(origin), uri.path.isEmpty {
                    origins.insert(uri.origin)
                } else {
                    self.report(section["allowed_origins"], section.childPath("allowed_origins"), "'\(origin)' is not an origin (scheme://host[:port])")
                    valid = false
                }
            }
        }
        var versions = MCPProtocol.defaultVersions
        if let list = self.stringList(section["protocol_versions"], section.childPath("protocol_versions")) {
            versions = []
            for version in list {
                if MCPProtocol.knownVersions.contains(version) {
                    versions.insert(version)
                } else {
                    self.report(section["protocol_versions"], section.childPath("protocol_versions"), "unknown MCP protocol revision '\(version)' (known: \(MCPProtocol.knownVersions.sorted().joined(separator: ", ")))")
                    valid = false
                }
            }
        }
        if case .tokenExchange = credentials, let serverName, let server = servers[serverName], server.client == nil {
            self.report(section["upstream_credentials"], section.childPath("upstream_credentials"), "token_exchange needs the gateway's client at authorization server '\(serverName)' (authorization_servers.\(serverName).client)")
            valid = false
        }
        guard valid, let resourcePath, let serverName, let upstream, let upstreamTLS, let methods else { return nil }
        let uri = publicURL.appendingPath(resourcePath)
        // The resource's own origin is always allowed: a browser page served by it is same-origin.
        origins.insert(publicURL.origin)
        return ResourcePolicy(
            path: resourcePath, uri: uri, name: name, documentation: documentation, authorizationServer: serverName,
            scopesSupported: scopesSupported, upstream: upstream, upstreamTLS: upstreamTLS, credentials: credentials, methods: methods,
            clientResponses: responses, allowedOrigins: origins, protocolVersions: versions
        )
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

    func credentials(_ node: Node, _ path: String) -> UpstreamCredentials {
        if case .scalar(let scalar) = node {
            if scalar.string == "none" { return .none }
            self.report(node, path, "expected 'none' or a mapping with 'static'")
            return .none
        }
        guard let section = self.section(node, path, allowed: ["none", "static", "token_exchange"]) else { return .none }
        if section.entries.count != 1 {
            self.report(node, path, "exactly one of 'none', 'static' or 'token_exchange' is required")
            return .none
        }
        if section["none"] != nil { return .none }
        if let exchange = section["token_exchange"] {
            return self.tokenExchange(exchange, section.childPath("token_exchange")).map { .tokenExchange($0) } ?? .none
        }
        guard let staticNode = section["static"],
              let fields = self.section(staticNode, section.childPath("static"), allowed: ["header", "value"], required: ["header", "value"]),
              let header = self.nonEmptyString(fields["header"], fields.childPath("header")),
              let value = self.nonEmptyString(fields["value"], fields.childPath("value"))
        else { return .none }
        let lowered = header.lowercased()
        if !header.utf8.allSatisfy({ HTTPToken.isTokenCharacter($0) }) {
            self.report(fields["header"], fields.childPath("header"), "'\(header)' is not a valid header name")
        } else if ["host", "content-length", "transfer-encoding", "connection", "mcp-session-id", "cookie"].contains(lowered) {
            self.report(fields["header"], fields.childPath("header"), "'\(header)' cannot carry an upstream credential")
        }
        if value.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0x00 }) {
            self.report(fields["value"], fields.childPath("value"), "must not contain line breaks")
        }
        return .staticHeader(name: header, value: value)
    }

    func tokenExchange(_ node: Node, _ path: String) -> TokenExchangePolicy? {
        guard let section = self.section(node, path, allowed: ["resource", "audience", "scope", "requested_token_type", "actor", "tools"]),
              let target = self.exchangeTarget(section)
        else { return nil }
        var policy = TokenExchangePolicy(target: target)
        policy.sendActorToken = self.bool(section["actor"], section.childPath("actor")) ?? false
        if let toolsNode = section["tools"] {
            guard case .mapping(let tools) = toolsNode else {
                self.report(toolsNode, section.childPath("tools"), "expected a mapping of tool names to {resource, audience, scope}")
                return nil
            }
            for (nameNode, value) in tools {
                guard let name = nameNode.scalar?.string, !name.isEmpty else { continue }
                guard let fields = self.section(value, "\(section.childPath("tools")).\(name)", allowed: ["resource", "audience", "scope", "requested_token_type"]),
                      var override = self.exchangeTarget(fields, requireTarget: false)
                else { return nil }
                // Unset fields inherit the resource-wide ones.
                if override.resources.isEmpty { override.resources = target.resources }
                if override.audiences.isEmpty { override.audiences = target.audiences }
                if override.scope == nil { override.scope = target.scope }
                if override.requestedTokenType == nil { override.requestedTokenType = target.requestedTokenType }
                policy.toolTargets[name] = override
            }
        }
        return policy
    }

    func exchangeTarget(_ section: Section, requireTarget: Bool = true) -> TokenExchangeTarget? {
        func list(_ key: String) -> [String]? {
            guard let node = section[key] else { return [] }
            if case .scalar = node { return self.nonEmptyString(node, section.childPath(key)).map { [$0] } }
            return self.stringList(node, section.childPath(key))
        }
        guard let resources = list("resource"), let audiences = list("audience") else { return nil }
        for resource in resources where (try? CanonicalURI(resource)) == nil {
            self.report(section["resource"], section.childPath("resource"), "'\(resource)' is not an absolute http(s) URI (use 'audience' for logical names)")
            return nil
        }
        if requireTarget, resources.isEmpty, audiences.isEmpty {
            self.report(section.node, section.path, "name the upstream with 'resource' (its URI) and/or 'audience' (a logical name)")
            return nil
        }
        var scope: String?
        if let scopes = self.scopeList(section["scope"].map { node -> Node in
            if case .scalar(let scalar) = node { return .sequence(.init(scalar.string.split(separator: " ").map { .scalar(.init(String($0))) })) }
            return node
        }, section.childPath("scope")) {
            scope = scopes.joined(separator: " ")
        }
        let requested = self.string(section["requested_token_type"], section.childPath("requested_token_type"))
        return TokenExchangeTarget(resources: resources, audiences: audiences, scope: scope, requestedTokenType: requested)
    }

    func methodTable(_ node: Node, _ path: String) -> MethodTable? {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of JSON-RPC methods to scopes")
            return nil
        }
        var table = MethodTable()
        var seen: Set<String> = []
        var valid = true
        for (keyNode, value) in mapping {
            guard let method = keyNode.scalar?.string, !method.isEmpty else {
                self.report(keyNode, path, "method names must be non-empty strings")
                valid = false
                continue
            }
            let childPath = "\(path).\(method)"
            guard seen.insert(method).inserted else {
                self.report(keyNode, childPath, "duplicate method '\(method)'")
                valid = false
                continue
            }
            switch value {
            case .sequence:
                guard let scopes = self.scopeList(value, childPath) else { valid = false; continue }
                table.rules.insert(NamePattern(method), .scopes(scopes))
            case .mapping(let targets):
                guard MethodTable.targetParameter[method] != nil else {
                    self.report(value, childPath, "only tools/call, prompts/get and resources/read take per-target rules; give '\(method)' a list of scopes")
                    valid = false
                    continue
                }
                var rules = PatternTable<[String]>()
                var seenTargets: Set<String> = []
                for (targetKey, scopesNode) in targets {
                    guard let target = targetKey.scalar?.string, !target.isEmpty else {
                        self.report(targetKey, childPath, "names must be non-empty strings")
                        valid = false
                        continue
                    }
                    guard seenTargets.insert(target).inserted else {
                        self.report(targetKey, "\(childPath).\(target)", "duplicate entry '\(target)'")
                        valid = false
                        continue
                    }
                    guard let scopes = self.scopeList(scopesNode, "\(childPath).\(target)") else { valid = false; continue }
                    var pattern = target
                    // Matched against normalised request URIs (see ResourceURI). A glob that
                    // starts before any scheme (`*`, `*.md`) has nothing to normalise.
                    let leadingGlob = target.prefix { $0 != ":" }.contains("*")
                    if method == "resources/read", !leadingGlob {
                        do {
                            pattern = try ResourceURI.normalise(target)
                        } catch {
                            self.report(targetKey, "\(childPath).\(target)", "not a URI that can be matched safely: \(error.reason)")
                            valid = false
                            continue
                        }
                    }
                    rules.insert(NamePattern(pattern), scopes)
                }
                table.rules.insert(NamePattern(method), .byTarget(rules))
            default:
                self.report(value, childPath, "expected a list of scopes ([] for a valid token and no scope) or, for \(MethodTable.targetParameter.keys.sorted().joined(separator: ", ")), a mapping of names to scope lists")
                valid = false
            }
        }
        return valid ? table : nil
    }
}

private extension Node {
    var scalar: Node.Scalar? {
        if case .scalar(let scalar) = self { return scalar }
        return nil
    }
}
