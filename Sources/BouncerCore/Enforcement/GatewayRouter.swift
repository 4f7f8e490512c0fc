/// Where a request path leads. `Resource` is what a protected resource resolves to: its
/// policy here in the core, everything a request needs in the proxy (resolved once, at load).
public enum Route<Resource: Sendable>: Sendable {
    /// The RFC 9728 document of a resource.
    case metadata(Resource)
    /// A protected MCP endpoint.
    case resource(Resource)
    case health
    case readiness
    case notFound
}

/// Maps request paths to routes. Built once per policy; lookups are dictionary hits.
///
/// Inlinable, so that the proxy's lookup is specialised for its resource type: called from
/// another module unspecialised, every lookup paid for generic metadata at run time.
public struct GatewayRouter<Resource: Sendable>: Sendable {
    public static var metadataPrefix: String { "/.well-known/oauth-protected-resource" }

    @usableFromInline
    var routes: [String: Route<Resource>] = [:]

    /// - Parameter resources: each resource's path (its URI's path) and what it resolves to.
    public init(resources: [(path: String, resource: Resource)]) {
        for (path, resource) in resources {
            self.routes[path] = .resource(resource)
            self.routes[Self.metadataPrefix + path] = .metadata(resource)
        }
        if resources.count == 1 {
            self.routes[Self.metadataPrefix] = .metadata(resources[0].resource)
        }
        self.routes["/healthz"] = .health
        self.routes["/readyz"] = .readiness
    }

    /// - Parameter path: the request target without its query.
    @inlinable
    public func route(_ path: String) -> Route<Resource> {
        self.routes[path] ?? .notFound
    }
}

/// A request target in origin-form.
public enum RequestTarget {
    /// Splits a request target (origin-form: see ``RequestHeadFacts/originForm(of:)``) into
    /// path and query.
    public static func split(target: Substring) -> (path: String, query: Substring?) {
        guard let mark = target.firstIndex(of: "?") else { return (String(target), nil) }
        return (String(target[..<mark]), target[target.index(after: mark)...])
    }
}

extension GatewayRouter where Resource == ResourcePolicy {
    public init(policy: GatewayPolicy) {
        self.init(resources: policy.resources.map { ($0.uri.path, $0) })
    }
}

extension ResourcePolicy {
    /// The RFC 9728 document: `resource` is exactly the public URL of the endpoint.
    /// - Parameter certificateBound: the gateway verifies client certificates, so it can check
    ///   certificate-bound tokens (RFC 8705).
    public func metadataDocument(issuer: String, certificateBound: Bool = false) -> String {
        var document = JSONWriter()
        document.add("resource", self.uri.description)
        document.add("authorization_servers", [issuer])
        if !self.scopesSupported.isEmpty { document.add("scopes_supported", self.scopesSupported) }
        document.add("bearer_methods_supported", ["header"])
        // RFC 9728 §2: what sender-constrained tokens the resource takes.
        document.add("dpop_signing_alg_values_supported", self.dpop.algorithms.map(\.rawValue).sorted())
        document.add("dpop_bound_access_tokens_required", .bool(self.senderConstraint == .required))
        document.add("tls_client_certificate_bound_access_tokens", .bool(certificateBound))
        if let name { document.add("resource_name", name) }
        if let documentation { document.add("resource_documentation", documentation) }
        return document.string
    }
}
