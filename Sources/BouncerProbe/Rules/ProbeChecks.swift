import BouncerCore

/// The pure parts of a probe: reading what a server sent. The network side is `ServerProbe`.
public enum ProbeChecks {
    /// The parameters of a `Bearer` challenge (RFC 6750 section 3): names lowercased, quoted
    /// values unquoted. Nil when no Bearer challenge is there.
    public static func bearerParameters(_ header: String) -> [String: String]? {
        let characters = Array(header)
        let scheme = Array("bearer")
        guard let start = characters.indices.first(where: { index in
            index + scheme.count <= characters.count && (index == 0 || characters[index - 1] == " " || characters[index - 1] == ",")
                && zip(characters[index..<(index + scheme.count)], scheme).allSatisfy { $0.lowercased() == String($1) }
                && (index + scheme.count == characters.count || characters[index + scheme.count] == " ")
        }) else { return nil }
        var rest = Substring(String(characters[(start + scheme.count)...]))
        var parameters: [String: String] = [:]
        while true {
            rest = rest.drop { $0 == " " || $0 == "," || $0 == "\t" }
            guard let equals = rest.firstIndex(of: "=") else { break }
            let name = rest[..<equals].trimmingSpaces.lowercased()
            guard !name.isEmpty, !name.contains(" ") else { break }
            rest = rest[rest.index(after: equals)...].drop { $0 == " " }
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if escaped {
                        value.append(character)
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "\"" {
                        break
                    } else {
                        value.append(character)
                    }
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = String(rest[..<end]).trimmingSpaces
                rest = rest[end...]
            }
            if parameters[name] == nil { parameters[name] = value }
        }
        return parameters
    }

    /// The well-known URLs of `url`'s Protected Resource Metadata (RFC 9728 section 3.1): the
    /// path-suffixed one, then the root one (the same when the path is empty).
    public static func metadataURLs(for url: CanonicalURI) -> (suffixed: String, root: String) {
        (url.protectedResourceMetadataURL, url.origin + "/.well-known/oauth-protected-resource")
    }

    /// Judges a Protected Resource Metadata document fetched for `url`; returns the
    /// authorization servers it lists.
    public static func judgeResourceMetadata(_ document: JSONValue, url: CanonicalURI, source: String, into report: inout ProbeReport) -> [String] {
        guard document.objectValue != nil else {
            report.add(ProbeRules.metadataInvalid, "\(source) is not a JSON object")
            return []
        }
        let resource = document["resource"]?.stringValue
        if resource.map({ $0 != url.description && (try? CanonicalURI($0)) != url }) ?? true {
            report.add(ProbeRules.metadataResourceMismatch, "\(source) says resource \(resource.map { "'\($0)'" } ?? "(none)"), the URL probed is \(url)")
        }
        let servers = document["authorization_servers"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if servers.isEmpty { report.add(ProbeRules.metadataNoServers, "\(source) has no authorization_servers") }
        let algorithms = document["dpop_signing_alg_values_supported"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let dpopRequired = document["dpop_bound_access_tokens_required"] == .bool(true)
        let certificateBound = document["tls_client_certificate_bound_access_tokens"] == .bool(true)
        if !algorithms.isEmpty || dpopRequired || certificateBound {
            var facts: [String] = []
            if !algorithms.isEmpty { facts.append("DPoP proofs with \(algorithms.joined(separator: ", "))") }
            facts.append(dpopRequired ? "DPoP-bound tokens required" : "bearer tokens accepted too")
            if certificateBound { facts.append("certificate-bound tokens (RFC 8705)") }
            report.add(ProbeRules.senderConstraint, facts.joined(separator: "; "))
        }
        return servers
    }

    /// Judges an authorization server's metadata document (RFC 8414 / OpenID discovery).
    public static func judgeServerMetadata(_ document: JSONValue, issuer: String, source: String, into report: inout ProbeReport) {
        let named = document["issuer"]?.stringValue
        if named != issuer {
            report.add(ProbeRules.serverIssuerMismatch, "\(source) names issuer \(named.map { "'\($0)'" } ?? "(none)"), expected '\(issuer)'")
        }
        let challenges = document["code_challenge_methods_supported"]?.arrayValue?.compactMap(\.stringValue)
        if !(challenges ?? []).contains("S256") {
            report.add(ProbeRules.noPKCE, challenges.map { "code_challenge_methods_supported is \($0)" } ?? "\(issuer) has no code_challenge_methods_supported")
        }
        let metadataDocuments = document["client_id_metadata_document_supported"] == .bool(true)
        let registration = document["registration_endpoint"]?.stringValue
        if !metadataDocuments, registration == nil {
            report.add(ProbeRules.noRegistration, "\(issuer): clients must be registered in advance")
        }
        let methods = document["token_endpoint_auth_methods_supported"]?.arrayValue?.compactMap(\.stringValue) ?? ["client_secret_basic (default)"]
        var facts = ["issuer \(issuer)", "token endpoint auth methods: \(methods.joined(separator: ", "))"]
        if metadataDocuments { facts.append("client ID metadata documents") }
        if registration != nil { facts.append("dynamic registration") }
        report.add(ProbeRules.serverFacts, facts.joined(separator: "; "))
    }

    /// The `aud` of a JWT, read without verifying it (the probe only reports what the
    /// authorization server put there); nil for an opaque token.
    public static func unverifiedAudiences(of token: String) -> [String]? {
        guard CompactJWS.looksLikeJWS(token), let jws = try? CompactJWS(token) else { return nil }
        return TokenRequirements.audiences(in: jws.payload)
    }

    /// The tools a probe may call: annotated `readOnlyHint: true` and needing no argument.
    /// Nothing else is ever called.
    public static func harmlessTools(_ tools: [JSONValue]) -> [String] {
        tools.compactMap { tool in
            guard let name = tool["name"]?.stringValue, tool["annotations"]?["readOnlyHint"] == .bool(true) else { return nil }
            let required = tool["inputSchema"]?["required"]?.arrayValue ?? []
            return required.isEmpty ? name : nil
        }
    }

    /// Whether a response is a JSON-RPC success for `id` (a result, no error).
    public static func succeeded(_ message: JSONValue?) -> Bool {
        guard let message else { return false }
        return message["result"] != nil && message["error"] == nil
    }
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
