import Yams

/// A resource's `upstream_credentials:`: what the gateway presents upstream (never the
/// client's token): nothing, a static header, or a token of the upstream's own (RFC 8693).
extension PolicyReader {
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
              let header = fields.nonEmptyString("header"),
              let value = fields.nonEmptyString("value")
        else { return .none }
        let lowered = header.lowercased()
        if !header.utf8.allSatisfy({ HTTPToken.isTokenCharacter($0) }) {
            fields.report("header", "'\(header)' is not a valid header name")
        } else if ["host", "content-length", "transfer-encoding", "connection", "mcp-session-id", "cookie"].contains(lowered) {
            fields.report("header", "'\(header)' cannot carry an upstream credential")
        }
        if value.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0x00 }) {
            fields.report("value", "must not contain line breaks")
        }
        return .staticHeader(name: header, value: value)
    }

    func tokenExchange(_ node: Node, _ path: String) -> TokenExchangePolicy? {
        guard let section = self.section(node, path, allowed: ["resource", "audience", "scope", "requested_token_type", "actor", "tools", "dpop_key"]),
              let target = self.exchangeTarget(section)
        else { return nil }
        var policy = TokenExchangePolicy(target: target)
        policy.sendActorToken = section.bool("actor") ?? false
        if let key = section.nonEmptyString("dpop_key") {
            if key == "generate" {
                policy.dpopKey = .generate
            } else {
                do {
                    policy.dpopKey = .pem(try AssertionSigningKey(pem: key))
                } catch {
                    section.report("dpop_key", "\(error.reason) (give 'generate', or the PEM itself, e.g. ${file:/run/secrets/dpop.pem})")
                    return nil
                }
            }
        }
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

    func exchangeTarget(_ section: PolicySection, requireTarget: Bool = true) -> TokenExchangeTarget? {
        func list(_ key: String) -> [String]? {
            guard let node = section[key] else { return [] }
            if case .scalar = node { return self.nonEmptyString(node, section.childPath(key)).map { [$0] } }
            return self.stringList(node, section.childPath(key))
        }
        guard let resources = list("resource"), let audiences = list("audience") else { return nil }
        for resource in resources where (try? CanonicalURI(resource)) == nil {
            section.report("resource", "'\(resource)' is not an absolute http(s) URI (use 'audience' for logical names)")
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
        let requested = section.string("requested_token_type")
        return TokenExchangeTarget(resources: resources, audiences: audiences, scope: scope, requestedTokenType: requested)
    }
}
