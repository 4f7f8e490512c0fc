import BouncerCore
import Crypto
import CryptoExtras
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// A DEVELOPMENT-ONLY OAuth 2.1 authorization server for `mcp-bouncer demo` and tests.
///
/// It auto-approves every authorization request (there is no user, no login, no consent), keeps
/// everything in memory and generates its keys at start. It exists so a newcomer can see the
/// whole flow with nothing to install. Its metadata and key set carry
/// `"mcp_bouncer_development_only": true`, and `mcp-bouncer run` refuses to trust a server that
/// says so. Never put it in front of anything real.
///
/// What it implements, as the MCP authorization flow needs it: RFC 8414 metadata, a JWKS with an
/// ES256 and an RS256 key, RFC 7591 dynamic registration, the authorization code grant with
/// PKCE S256 (auto-approved), client credentials, refresh tokens (rotated), RFC 8693 token
/// exchange, RFC 7662 introspection. `resource` (RFC 8707) becomes the token's `aud` and must
/// name a configured resource, else `invalid_target`; requested scopes are narrowed to what the
/// client (or, for exchange, the subject token) holds.
package final class DevAuthorizationServer: Sendable {
    /// A resource or audience the server issues tokens for, with the scopes it knows.
    package struct Audience: Sendable {
        package var name: String
        package var scopes: [String]

        package init(name: String, scopes: [String]) {
            self.name = name
            self.scopes = scopes
        }
    }

    struct Client {
        var id: String
        var secret: String?
        var redirectURIs: [String]
        var grantTypes: [String]
        var scope: [String]
        var authMethod: String
    }

    struct Code {
        var clientID: String
        var redirectURI: String
        var challenge: String
        var scope: [String]
        var resource: String
        var expiresAt: Int64
    }

    struct Refresh {
        var clientID: String
        var scope: [String]
        var resource: String
        var subject: String
    }

    struct State {
        var issuer = ""
        var clients: [String: Client] = [:]
        var codes: [String: Code] = [:]
        var refreshTokens: [String: Refresh] = [:]
        /// Introspection: every access token issued, by its digest.
        var issued: [String: JSONValue] = [:]
        var revoked: Set<String> = []
    }

    package static let marker = DevelopmentMarker.key
    package static let demoUser = "demo-user"

    let audiences: [String: Audience]
    let tokenSigner: JWSSigner
    let exchangeSigner: JWSSigner
    let tokenLifetime: Int64
    let state = NIOLockedValueBox(State())
    let now: @Sendable () -> Int64

    package init(audiences: [Audience], tokenLifetimeSeconds: Int64 = 600, now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) throws {
        self.audiences = Dictionary(audiences.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.tokenSigner = JWSSigner(key: .p256(P256.Signing.PrivateKey()), keyID: "dev-es256")
        self.exchangeSigner = JWSSigner(key: .rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048)), keyID: "dev-rs256")
        self.tokenLifetime = tokenLifetimeSeconds
        self.now = now
    }

    /// Set once the listener is bound: the issuer is `http://host:port`.
    package var issuer: String {
        get { self.state.withLockedValue { $0.issuer } }
        set { self.state.withLockedValue { $0.issuer = newValue } }
    }

    /// Registers a confidential client directly (for the demo's own steps and tests).
    package func registerClient(id: String, secret: String, scope: [String], grantTypes: [String] = ["client_credentials"]) {
        self.state.withLockedValue {
            $0.clients[id] = Client(id: id, secret: secret, redirectURIs: [], grantTypes: grantTypes, scope: scope, authMethod: "client_secret_basic")
        }
    }

    // MARK: Routing

    package func handle(_ request: DevRequest) -> DevResponse {
        switch (request.method, request.path) {
        case (.GET, "/.well-known/oauth-authorization-server"), (.GET, "/.well-known/openid-configuration"):
            return .json(.ok, self.metadata())
        case (.GET, "/jwks"):
            return .json(.ok, self.jwks())
        case (.POST, "/register"):
            return self.register(request)
        case (.GET, "/authorize"):
            return self.authorize(request)
        case (.POST, "/token"):
            return self.token(request)
        case (.POST, "/introspect"):
            return self.introspect(request)
        case (.POST, "/revoke"):
            return self.revoke(request)
        default:
            return .json(.notFound, #"{"error":"not_found"}"#)
        }
    }

    func metadata() -> String {
        let issuer = self.issuer
        var document = JSONWriter()
        document.add("issuer", issuer)
        document.add("authorization_endpoint", issuer + "/authorize")
        document.add("token_endpoint", issuer + "/token")
        document.add("registration_endpoint", issuer + "/register")
        document.add("introspection_endpoint", issuer + "/introspect")
        document.add("revocation_endpoint", issuer + "/revoke")
        document.add("jwks_uri", issuer + "/jwks")
        document.add("response_types_supported", ["code"])
        document.add("grant_types_supported", ["authorization_code", "client_credentials", "refresh_token", TokenType.grantType])
        document.add("code_challenge_methods_supported", ["S256"])
        document.add("token_endpoint_auth_methods_supported", ["client_secret_basic", "client_secret_post", "none"])
        document.add("scopes_supported", Array(Set(self.audiences.values.flatMap(\.scopes))).sorted())
        document.add("authorization_response_iss_parameter_supported", .bool(true))
        document.add(Self.marker, .bool(true))
        return document.string
    }

    func jwks() -> String {
        let keys = [self.tokenSigner, self.exchangeSigner].map { $0.key.publicJWK(keyID: $0.keyID ?? "").string }
        return #"{"keys":[\#(keys.joined(separator: ","))],"\#(Self.marker)":true}"#
    }

    // MARK: RFC 7591 registration

    func register(_ request: DevRequest) -> DevResponse {
        guard let body = try? JSONParser().parse(request.body), body.objectValue != nil else {
            return Self.error(.badRequest, "invalid_client_metadata", "the body must be a JSON object")
        }
        let redirectURIs = body["redirect_uris"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let grantTypes = body["grant_types"]?.arrayValue?.compactMap(\.stringValue) ?? ["authorization_code"]
        if grantTypes.contains("authorization_code"), redirectURIs.isEmpty {
            return Self.error(.badRequest, "invalid_redirect_uri", "authorization_code clients need redirect_uris")
        }
        let method = body["token_endpoint_auth_method"]?.stringValue ?? "client_secret_basic"
        guard ["client_secret_basic", "client_secret_post", "none"].contains(method) else {
            return Self.error(.badRequest, "invalid_client_metadata", "unsupported token_endpoint_auth_method \(method)")
        }
        let scope = body["scope"]?.stringValue?.split(separator: " ").map(String.init) ?? Array(Set(self.audiences.values.flatMap(\.scopes))).sorted()
        let id = "dev-" + UUID().uuidString.lowercased()
        let secret = method == "none" ? nil : Self.random()
        self.state.withLockedValue {
            $0.clients[id] = Client(id: id, secret: secret, redirectURIs: redirectURIs, grantTypes: grantTypes, scope: scope, authMethod: method)
        }
        var response = JSONWriter()
        response.add("client_id", id)
        if let secret { response.add("client_secret", secret) }
        response.add("client_id_issued_at", .number(String(self.now())))
        response.add("redirect_uris", redirectURIs)
        response.add("grant_types", grantTypes)
        response.add("token_endpoint_auth_method", method)
        response.add("scope", scope.joined(separator: " "))
        if let name = body["client_name"]?.stringValue { response.add("client_name", name) }
        return .json(.created, response.string)
    }

    // MARK: Authorization code + PKCE (auto-approved)

    func authorize(_ request: DevRequest) -> DevResponse {
        let query = Dictionary(FormEncoding.decode(request.query) ?? [], uniquingKeysWith: { first, _ in first })
        guard let clientID = query["client_id"], let client = self.state.withLockedValue({ $0.clients[clientID] }) else {
            return Self.error(.badRequest, "invalid_request", "unknown client_id")
        }
        guard let redirect = query["redirect_uri"], client.redirectURIs.contains(redirect) else {
            // Never redirect to an unregistered URI.
            return Self.error(.badRequest, "invalid_request", "redirect_uri is not registered for this client")
        }
        func redirectError(_ code: String, _ description: String) -> DevResponse {
            var location = redirect + (redirect.contains("?") ? "&" : "?") + FormEncoding.body([("error", code), ("error_description", description), ("iss", self.issuer)])
            if let state = query["state"] { location += "&" + FormEncoding.body([("state", state)]) }
            return .empty(.found, headers: [("Location", location)])
        }
        guard query["response_type"] == "code" else { return redirectError("unsupported_response_type", "only code") }
        guard let challenge = query["code_challenge"], query["code_challenge_method"] == "S256" else {
            return redirectError("invalid_request", "PKCE with S256 is required")
        }
        let resource = query["resource"] ?? ""
        guard let audience = self.audiences[resource] else { return redirectError("invalid_target", "unknown resource \(resource)") }
        guard let scope = self.narrow(requested: query["scope"], allowed: client.scope, audience: audience) else {
            return redirectError("invalid_scope", "the requested scope is not allowed for this client or resource")
        }
        let code = Self.random()
        self.state.withLockedValue {
            $0.codes[code] = Code(clientID: clientID, redirectURI: redirect, challenge: challenge, scope: scope, resource: resource, expiresAt: self.now() + 120)
        }
        var fields = [("code", code), ("iss", self.issuer)]
        if let state = query["state"] { fields.append(("state", state)) }
        return .empty(.found, headers: [("Location", redirect + (redirect.contains("?") ? "&" : "?") + FormEncoding.body(fields))])
    }

    // MARK: Token endpoint

    func token(_ request: DevRequest) -> DevResponse {
        guard let fields = FormEncoding.decode(String(decoding: request.body, as: UTF8.self)) else {
            return Self.error(.badRequest, "invalid_request", "malformed form body")
        }
        var form: [String: String] = [:]
        var resources: [String] = []
        var audiencesRequested: [String] = []
        for (name, value) in fields {
            if name == "resource" { resources.append(value) } else if name == "audience" { audiencesRequested.append(value) } else { form[name] = value }
        }
        let client: Client
        switch self.authenticate(request, form: form) {
        case .success(let authenticated): client = authenticated
        case .failure(let error): return error.response
        }
        let grant = form["grant_type"] ?? ""
        guard client.grantTypes.contains(grant) || (grant == "refresh_token" && client.grantTypes.contains("authorization_code")) else {
            return Self.error(.badRequest, "unauthorized_client", "this client may not use \(grant)")
        }
        switch grant {
        case "authorization_code": return self.authorizationCodeGrant(client, form: form, resources: resources)
        case "client_credentials": return self.clientCredentialsGrant(client, form: form, resources: resources)
        case "refresh_token": return self.refreshGrant(client, form: form)
        case TokenType.grantType: return self.exchangeGrant(client, form: form, resources: resources, audiences: audiencesRequested)
        default: return Self.error(.badRequest, "unsupported_grant_type", "unsupported grant_type \(grant)")
        }
    }

    func authenticate(_ request: DevRequest, form: [String: String]) -> Result<Client, DevResponseError> {
        var id = form["client_id"]
        var secret = form["client_secret"]
        if let authorization = request.header("Authorization"), authorization.lowercased().hasPrefix("basic "),
           let decoded = Data(base64Encoded: String(authorization.dropFirst(6))).flatMap({ String(data: $0, encoding: .utf8) }),
           let colon = decoded.firstIndex(of: ":") {
            id = FormEncoding.decodeComponent(decoded[..<colon])
            secret = FormEncoding.decodeComponent(decoded[decoded.index(after: colon)...])
        }
        guard let id, let client = self.state.withLockedValue({ $0.clients[id] }) else {
            return .failure(DevResponseError(Self.error(.unauthorized, "invalid_client", "unknown client")))
        }
        if let expected = client.secret, secret != expected {
            return .failure(DevResponseError(Self.error(.unauthorized, "invalid_client", "client authentication failed")))
        }
        return .success(client)
    }

    func authorizationCodeGrant(_ client: Client, form: [String: String], resources: [String]) -> DevResponse {
        guard let code = form["code"], let record = self.state.withLockedValue({ $0.codes.removeValue(forKey: code) }),
              record.clientID == client.id, record.expiresAt > self.now()
        else { return Self.error(.badRequest, "invalid_grant", "unknown, used or expired code") }
        guard form["redirect_uri"] == record.redirectURI else { return Self.error(.badRequest, "invalid_grant", "redirect_uri mismatch") }
        guard let verifier = form["code_verifier"],
              Base64URL.encode(SHA256.hash(data: Array(verifier.utf8))) == record.challenge
        else { return Self.error(.badRequest, "invalid_grant", "PKCE verification failed") }
        if let resource = resources.first, resource != record.resource {
            return Self.error(.badRequest, "invalid_target", "resource differs from the authorization request")
        }
        let refresh = Self.random()
        self.state.withLockedValue {
            $0.refreshTokens[refresh] = Refresh(clientID: client.id, scope: record.scope, resource: record.resource, subject: Self.demoUser)
        }
        return self.issue(subject: Self.demoUser, clientID: client.id, audience: record.resource, scope: record.scope, refresh: refresh)
    }

    func clientCredentialsGrant(_ client: Client, form: [String: String], resources: [String]) -> DevResponse {
        let resource = resources.first ?? ""
        guard let audience = self.audiences[resource] else { return Self.error(.badRequest, "invalid_target", "unknown resource \(resource)") }
        guard let scope = self.narrow(requested: form["scope"], allowed: client.scope, audience: audience) else {
            return Self.error(.badRequest, "invalid_scope", "the requested scope is not allowed for this client or resource")
        }
        return self.issue(subject: "client:\(client.id)", clientID: client.id, audience: resource, scope: scope, refresh: nil)
    }

    func refreshGrant(_ client: Client, form: [String: String]) -> DevResponse {
        guard let token = form["refresh_token"], let record = self.state.withLockedValue({ $0.refreshTokens.removeValue(forKey: token) }),
              record.clientID == client.id
        else { return Self.error(.badRequest, "invalid_grant", "unknown or used refresh token") }
        let requested = form["scope"]?.split(separator: " ").map(String.init) ?? record.scope
        guard Set(requested).isSubset(of: record.scope) else { return Self.error(.badRequest, "invalid_scope", "a refresh cannot widen the scope") }
        let rotated = Self.random()
        self.state.withLockedValue { $0.refreshTokens[rotated] = Refresh(clientID: client.id, scope: requested, resource: record.resource, subject: record.subject) }
        return self.issue(subject: record.subject, clientID: client.id, audience: record.resource, scope: requested, refresh: rotated)
    }

    func exchangeGrant(_ client: Client, form: [String: String], resources: [String], audiences: [String]) -> DevResponse {
        guard let subjectToken = form["subject_token"], form["subject_token_type"] == TokenType.accessToken else {
            return Self.error(.badRequest, "invalid_request", "subject_token and subject_token_type (access_token) are required")
        }
        let subject = self.state.withLockedValue { state -> JSONValue? in
            let digest = TokenDigest.sha256(subjectToken)
            return state.revoked.contains(digest) ? nil : state.issued[digest]
        }
        guard let subject, (subject["exp"]?.int64Value ?? 0) > self.now() else {
            return Self.error(.badRequest, "invalid_grant", "the subject token is not active")
        }
        let target = resources.first ?? audiences.first ?? ""
        guard let audience = self.audiences[target] else { return Self.error(.badRequest, "invalid_target", "unknown resource or audience \(target)") }
        let held = subject["scope"]?.stringValue?.split(separator: " ").map(String.init) ?? []
        guard let scope = self.narrow(requested: form["scope"], allowed: held, audience: audience, fallbackToAllowed: false) else {
            return Self.error(.badRequest, "invalid_scope", "the exchange cannot widen the subject token's scope")
        }
        var actor = JSONWriter()
        actor.add("sub", "client:\(client.id)")
        return self.issue(subject: subject["sub"]?.stringValue ?? "", clientID: client.id, audience: target, scope: scope, refresh: nil, actor: actor,
                          signer: self.exchangeSigner, issuedType: TokenType.accessToken)
    }

    /// The scope to grant: the request narrowed to what is allowed, or `nil` if it asks for
    /// anything outside. An absent request gets everything allowed that the audience knows.
    func narrow(requested: String?, allowed: [String], audience: Audience, fallbackToAllowed: Bool = true) -> [String]? {
        let known = Set(audience.scopes)
        guard let requested else {
            let granted = allowed.filter(known.contains)
            return fallbackToAllowed || !granted.isEmpty ? granted : nil
        }
        let asked = requested.split(separator: " ").map(String.init)
        guard Set(asked).isSubset(of: Set(allowed).intersection(known)) else { return nil }
        return asked
    }

    func issue(subject: String, clientID: String, audience: String, scope: [String], refresh: String?, actor: JSONWriter? = nil,
               signer: JWSSigner? = nil, issuedType: String? = nil) -> DevResponse {
        let now = self.now()
        var claims = JSONWriter()
        claims.add("iss", self.issuer)
        claims.add("sub", subject)
        claims.add("aud", audience)
        claims.add("client_id", clientID)
        claims.add("scope", scope.joined(separator: " "))
        claims.add("iat", .number(String(now)))
        claims.add("exp", .number(String(now + self.tokenLifetime)))
        claims.add("jti", UUID().uuidString)
        if let actor { claims.add("act", actor) }
        guard let token = try? (signer ?? self.tokenSigner).sign(claims, type: "at+jwt"),
              let parsed = try? JSONParser().parse(claims.string)
        else { return Self.error(.internalServerError, "server_error", "cannot sign") }
        self.state.withLockedValue { $0.issued[TokenDigest.sha256(token)] = parsed }
        var response = JSONWriter()
        response.add("access_token", token)
        response.add("token_type", "Bearer")
        response.add("expires_in", .number(String(self.tokenLifetime)))
        response.add("scope", scope.joined(separator: " "))
        if let refresh { response.add("refresh_token", refresh) }
        if let issuedType { response.add("issued_token_type", issuedType) }
        return .json(.ok, response.string)
    }

    // MARK: RFC 7662 introspection, RFC 7009 revocation

    func introspect(_ request: DevRequest) -> DevResponse {
        let form = Dictionary(FormEncoding.decode(String(decoding: request.body, as: UTF8.self)) ?? [], uniquingKeysWith: { first, _ in first })
        if case .failure(let error) = self.authenticate(request, form: form) { return error.response }
        let digest = form["token"].map(TokenDigest.sha256) ?? ""
        let claims = self.state.withLockedValue { $0.revoked.contains(digest) ? nil : $0.issued[digest] }
        guard var members = claims?.objectValue, (claims?["exp"]?.int64Value ?? 0) > self.now() else {
            return .json(.ok, #"{"active":false}"#)
        }
        members["active"] = .bool(true)
        members["token_type"] = .string("Bearer")
        return .json(.ok, JSONValue.object(members).serialized)
    }

    func revoke(_ request: DevRequest) -> DevResponse {
        let form = Dictionary(FormEncoding.decode(String(decoding: request.body, as: UTF8.self)) ?? [], uniquingKeysWith: { first, _ in first })
        if case .failure(let error) = self.authenticate(request, form: form) { return error.response }
        if let token = form["token"] {
            _ = self.state.withLockedValue { $0.revoked.insert(TokenDigest.sha256(token)) }
        }
        return .empty(.ok)
    }

    static func error(_ status: HTTPResponseStatus, _ code: String, _ description: String) -> DevResponse {
        var body = JSONWriter()
        body.add("error", code)
        body.add("error_description", description)
        return .json(status, body.string)
    }

    package static func random() -> String {
        Base64URL.encode((0..<32).map { _ in UInt8.random(in: 0...255) })
    }
}

struct DevResponseError: Error {
    var response: DevResponse
    init(_ response: DevResponse) { self.response = response }
}
