/// Where a request path leads.
public enum Route: Sendable {
    /// The RFC 9728 document of a resource.
    case metadata(ResourcePolicy)
    /// A protected MCP endpoint.
    case resource(ResourcePolicy)
    case health
    case readiness
    case notFound
}

/// Maps request paths to routes. Built once per policy; lookups are dictionary hits.
public struct GatewayRouter: Sendable {
    public static let metadataPrefix = "/.well-known/oauth-protected-resource"

    private var routes: [String: Route] = [:]

    public init(policy: GatewayPolicy) {
        for resource in policy.resources {
            self.routes[resource.uri.path] = .resource(resource)
            self.routes[Self.metadataPrefix + resource.uri.path] = .metadata(resource)
        }
        if policy.resources.count == 1 {
            self.routes[Self.metadataPrefix] = .metadata(policy.resources[0])
        }
        self.routes["/healthz"] = .health
        self.routes["/readyz"] = .readiness
    }

    /// - Parameter path: the request target without its query.
    public func route(_ path: String) -> Route {
        self.routes[path] ?? .notFound
    }

    /// Splits a request target (origin-form: see ``RequestHeadRules/originForm(of:)``) into
    /// path and query.
    public static func split(target: Substring) -> (path: String, query: Substring?) {
        guard let mark = target.firstIndex(of: "?") else { return (String(target), nil) }
        return (String(target[..<mark]), target[target.index(after: mark)...])
    }
}

extension ResourcePolicy {
    /// The RFC 9728 document: `resource` is exactly the public URL of the endpoint.
    public func metadataDocument(issuer: String) -> String {
        var document = JSONWriter()
        document.add("resource", self.uri.description)
        document.add("authorization_servers", [issuer])
        if !self.scopesSupported.isEmpty { document.add("scopes_supported", self.scopesSupported) }
        document.add("bearer_methods_supported", ["header"])
        if let name { document.add("resource_name", name) }
        if let documentation { document.add("resource_documentation", documentation) }
        return document.string
    }
}
