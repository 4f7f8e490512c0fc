import Yams

/// `authorization_servers:`: the issuers whose tokens the gateway accepts, each with its
/// keys, token checks and the gateway's own client there.
extension PolicyReader {
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
        let problems = self.problems.count
        guard let section = self.section(
            node, path,
            allowed: ["issuer", "metadata_url", "jwks_uri", "algorithms", "leeway_seconds", "require_at_jwt_type",
                      "scope_claims", "subject_claim", "required_claims", "jwks_refresh_min_interval_seconds", "jwks_max_age_seconds", "tls",
                      "client", "token_endpoint", "introspection_endpoint", "token_format",
                      "introspection_cache_seconds", "introspection_negative_cache_seconds", "scope_implies"],
            required: ["issuer"]
        ), let issuer = section.nonEmptyString("issuer") else { return nil }
        _ = self.checkedURL(issuer, section["issuer"], section.childPath("issuer"), allowQuery: false)
        var server = AuthorizationServerPolicy(name: name, issuer: issuer)
        server.metadataURL = self.fetchableURL(section, "metadata_url")
        server.jwksURI = self.fetchableURL(section, "jwks_uri")
        server.tokenEndpoint = self.fetchableURL(section, "token_endpoint")
        server.introspectionEndpoint = self.fetchableURL(section, "introspection_endpoint")

        if let algorithms = section.choices("algorithms", JWSAlgorithm.self, problem: { name in
            let hint = name.uppercased().hasPrefix("HS") || name.lowercased() == "none" ? " (symmetric and unsigned tokens are never accepted)" : ""
            return "unsupported algorithm '\(name)'\(hint); allowed: \(JWSAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))"
        }) {
            if algorithms.isEmpty { section.report("algorithms", "at least one algorithm is required") }
            server.algorithms = Set(algorithms)
        }
        if let claims = section.stringList("scope_claims") {
            if claims.isEmpty { section.report("scope_claims", "at least one claim is required (the default is [scope, scp])") }
            if Set(claims).count != claims.count { section.report("scope_claims", "a claim is named twice") }
            server.scopeClaims = claims.map(ScopeClaim.init(rawValue:))
        }
        server.subjectClaim = section.nonEmptyString("subject_claim") ?? server.subjectClaim
        if let node = section["required_claims"] {
            server.requiredClaims = self.requiredClaims(node, section.childPath("required_claims"))
        }
        section.read(AuthorizationServerPolicy.integerSettings, into: &server)
        server.requireAccessTokenType = section.bool("require_at_jwt_type") ?? server.requireAccessTokenType
        server.tokenFormat = section.choice("token_format", TokenFormat.self, message: "must be jwt, opaque or auto") ?? server.tokenFormat
        if let node = section["client"] {
            server.client = self.oauthClient(node, section.childPath("client"))
        }
        if server.tokenFormat == .opaque, section["client"] == nil {
            section.report("token_format", "opaque tokens are introspected with the gateway's client: add 'client'")
        }
        if let node = section["scope_implies"], let implications = self.scopeImplications(node, section.childPath("scope_implies")) {
            server.scopeImplications = implications
        }
        guard let tls = self.clientTLS(section["tls"], section.childPath("tls")) else { return nil }
        server.tls = tls
        return self.problems.count == problems ? server : nil
    }

    /// `required_claims: { tid: "...", azp: [app-a, app-b] }`: a claim name and the value, or
    /// the values, one of which it must have.
    func requiredClaims(_ node: Node, _ path: String) -> [RequiredClaim] {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of claim names to the value (or list of values) each must have")
            return []
        }
        var claims: [RequiredClaim] = []
        for (keyNode, value) in mapping {
            let name = keyNode.scalar?.string ?? ""
            let childPath = "\(path).\(name)"
            guard !name.isEmpty else {
                self.report(keyNode, path, "claim names must be non-empty strings")
                continue
            }
            if ["iss", "aud", "exp", "nbf", "iat"].contains(name) {
                self.report(keyNode, childPath, "\(name) is checked by the gateway already (issuer, resource and lifetime); it cannot be required here")
                continue
            }
            let values: [String]?
            if case .sequence = value {
                values = self.stringList(value, childPath)
                if values?.isEmpty == true { self.report(value, childPath, "at least one value is required") }
            } else {
                values = self.nonEmptyString(value, childPath).map { [$0] }
            }
            if let values, !values.isEmpty { claims.append(RequiredClaim(name: name, values: values)) }
        }
        return claims
    }

    /// `scope_implies: { "jira:admin": ["jira:write"], "jira:write": ["jira:read"] }`: scope
    /// tokens only, and no cycle.
    func scopeImplications(_ node: Node, _ path: String) -> ScopeImplications? {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of scopes to the scopes they imply")
            return nil
        }
        var direct: [String: [String]] = [:]
        let problems = self.problems.count
        for (keyNode, value) in mapping {
            guard let scope = keyNode.scalar?.string, Self.isScopeToken(scope) else {
                self.report(keyNode, path, "'\(keyNode.scalar?.string ?? "")' is not a valid scope token (no spaces, quotes or backslashes)")
                continue
            }
            let childPath = "\(path).\(scope)"
            guard direct[scope] == nil else {
                self.report(keyNode, childPath, "duplicate scope '\(scope)'")
                continue
            }
            guard case .sequence = value, let implied = self.scopeList(value, childPath) else {
                if case .sequence = value {} else { self.report(value, childPath, "expected a list of scopes") }
                continue
            }
            direct[scope] = implied
        }
        guard self.problems.count == problems else { return nil }
        do {
            return try ScopeImplications(direct)
        } catch {
            self.report(node, path, "scopes imply each other in a cycle: \(error) (a hierarchy goes one way)")
            return nil
        }
    }

    /// The gateway's own OAuth client at an authorization server, and how it authenticates.
    func oauthClient(_ node: Node, _ path: String) -> OAuthClientCredentials? {
        guard let section = self.section(node, path, allowed: ["id", "secret", "private_key", "auth_method"], required: ["id"]),
              let id = section.nonEmptyString("id")
        else { return nil }
        let secret = section.string("secret")
        var key: AssertionSigningKey?
        if let pem = section.string("private_key") {
            do {
                key = try AssertionSigningKey(pem: pem)
            } catch {
                section.report("private_key", "\(error.reason) (give the PEM itself, e.g. ${file:/run/secrets/key.pem})")
                return nil
            }
        }
        var method: ClientAuthenticationMethod = key != nil ? .privateKeyJWT : .clientSecretBasic
        if section["auth_method"] != nil {
            guard let chosen = section.choice("auth_method", ClientAuthenticationMethod.self) else { return nil }
            method = chosen
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

    /// An optional URL the gateway fetches (https, or http on loopback), as written.
    private func fetchableURL(_ section: PolicySection, _ key: String) -> String? {
        guard let url = section.string(key) else { return nil }
        _ = self.checkedURL(url, section[key], section.childPath(key), allowQuery: true)
        return url
    }
}
