import BouncerCore
import BouncerDevServer
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The development authorization server's OAuth behaviour, through its request handler.
@Suite("Development authorization server")
struct DevAuthorizationServerTests {
    let server: DevAuthorizationServer = {
        let server = try! DevAuthorizationServer(audiences: [
            .init(name: "http://127.0.0.1:8443/mcp", scopes: ["read", "write"]),
            .init(name: "upstream", scopes: ["read", "write"]),
        ])
        server.issuer = "http://127.0.0.1:9000"
        return server
    }()

    func send(_ method: HTTPMethod, _ path: String, query: String = "", body: String = "", headers: [(String, String)] = []) -> (status: HTTPResponseStatus, headers: [(String, String)], json: JSONValue?) {
        var fields = HTTPHeaders()
        for (name, value) in headers { fields.add(name: name, value: value) }
        switch self.server.handle(DevRequest(method: method, path: path, query: query, headers: fields, body: Array(body.utf8))) {
        case .full(let status, let headers, let body):
            return (status, headers, try? JSONParser().parse(body))
        case .stream(let status, let headers, _), .live(let status, let headers, _):
            return (status, headers, nil)
        }
    }

    func register(_ json: String) -> JSONValue {
        let response = self.send(.POST, "/register", body: json)
        #expect(response.status == .created)
        return response.json ?? .null
    }

    func token(_ fields: [(String, String)]) -> (status: HTTPResponseStatus, json: JSONValue?) {
        let response = self.send(.POST, "/token", body: FormEncoding.body(fields))
        return (response.status, response.json)
    }

    @Test func metadataIsMarkedDevelopmentOnly() throws {
        let metadata = try #require(self.send(.GET, "/.well-known/oauth-authorization-server").json)
        #expect(metadata["issuer"] == .string("http://127.0.0.1:9000"))
        #expect(metadata[DevelopmentMarker.key] == .bool(true))
        let keys = try JSONWebKeySet(json: Array(self.send(.GET, "/jwks").json!.serialized.utf8))
        #expect(keys.isDevelopmentOnly)
        #expect(Set(keys.keys.compactMap(\.algorithm)) == [.es256, .rs256])
    }

    @Test func authorizationCodeWithPKCEAndRefreshRotation() throws {
        let client = self.register(#"{"redirect_uris":["http://127.0.0.1:5000/cb"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none","scope":"read write"}"#)
        let id = try #require(client["client_id"]?.stringValue)
        #expect(client["client_secret"] == nil)
        let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789"
        let challenge = Base64URL.encode(SHA256.hash(data: Array(verifier.utf8)))
        let query = FormEncoding.body([("response_type", "code"), ("client_id", id), ("redirect_uri", "http://127.0.0.1:5000/cb"),
                                       ("code_challenge", challenge), ("code_challenge_method", "S256"), ("scope", "read"),
                                       ("resource", "http://127.0.0.1:8443/mcp"), ("state", "s1")])
        let redirect = self.send(.GET, "/authorize", query: query)
        #expect(redirect.status == .found)
        let location = try #require(redirect.headers.first { $0.0 == "Location" }?.1)
        let parameters = Dictionary(FormEncoding.decode(String(location.split(separator: "?")[1]))!, uniquingKeysWith: { a, _ in a })
        #expect(parameters["state"] == "s1" && parameters["iss"] == "http://127.0.0.1:9000")
        let code = try #require(parameters["code"])

        let wrong = self.token([("grant_type", "authorization_code"), ("client_id", id), ("code", code), ("redirect_uri", "http://127.0.0.1:5000/cb"), ("code_verifier", "wrong")])
        #expect(wrong.status == .badRequest && wrong.json?["error"] == .string("invalid_grant"))
        // The failed attempt consumed the code (single use).
        let reused = self.token([("grant_type", "authorization_code"), ("client_id", id), ("code", code), ("redirect_uri", "http://127.0.0.1:5000/cb"), ("code_verifier", verifier)])
        #expect(reused.json?["error"] == .string("invalid_grant"))

        let second = Dictionary(FormEncoding.decode(String(try #require(self.send(.GET, "/authorize", query: query).headers.first { $0.0 == "Location" }?.1.split(separator: "?")[1])))!, uniquingKeysWith: { a, _ in a })
        let issued = self.token([("grant_type", "authorization_code"), ("client_id", id), ("code", second["code"]!), ("redirect_uri", "http://127.0.0.1:5000/cb"), ("code_verifier", verifier)])
        #expect(issued.status == .ok)
        let access = try #require(issued.json?["access_token"]?.stringValue)
        let claims = try CompactJWS(access)
        #expect(claims.payload["aud"] == .string("http://127.0.0.1:8443/mcp"))
        #expect(claims.payload["scope"] == .string("read"))
        #expect(claims.type == "at+jwt")

        let refresh = try #require(issued.json?["refresh_token"]?.stringValue)
        let refreshed = self.token([("grant_type", "refresh_token"), ("client_id", id), ("refresh_token", refresh)])
        #expect(refreshed.status == .ok && refreshed.json?["refresh_token"]?.stringValue != refresh)
        #expect(self.token([("grant_type", "refresh_token"), ("client_id", id), ("refresh_token", refresh)]).json?["error"] == .string("invalid_grant"))
    }

    @Test func unknownResourceIsInvalidTargetAndScopeIsNarrowed() {
        self.server.registerClient(id: "c1", secret: "s1", scope: ["read"])
        let auth = ("Authorization", "Basic " + Base64URL.encodeStandard("c1:s1".utf8))
        let unknown = self.send(.POST, "/token", body: FormEncoding.body([("grant_type", "client_credentials"), ("resource", "https://elsewhere/mcp")]), headers: [auth])
        #expect(unknown.status == .badRequest && unknown.json?["error"] == .string("invalid_target"))
        let wider = self.send(.POST, "/token", body: FormEncoding.body([("grant_type", "client_credentials"), ("scope", "read write"), ("resource", "http://127.0.0.1:8443/mcp")]), headers: [auth])
        #expect(wider.json?["error"] == .string("invalid_scope"))
        let badSecret = self.send(.POST, "/token", body: FormEncoding.body([("grant_type", "client_credentials"), ("resource", "http://127.0.0.1:8443/mcp")]),
                                  headers: [("Authorization", "Basic " + Base64URL.encodeStandard("c1:nope".utf8))])
        #expect(badSecret.status == .unauthorized)
    }

    @Test func tokenExchangeNarrowsAndNamesTheActorAndIntrospectionFollowsRevocation() throws {
        self.server.registerClient(id: "agent", secret: "a", scope: ["read", "write"])
        self.server.registerClient(id: "gateway", secret: "g", scope: ["read", "write"], grantTypes: [TokenType.grantType])
        let agent = ("Authorization", "Basic " + Base64URL.encodeStandard("agent:a".utf8))
        let gateway = ("Authorization", "Basic " + Base64URL.encodeStandard("gateway:g".utf8))
        let subject = try #require(self.send(.POST, "/token", body: FormEncoding.body([("grant_type", "client_credentials"), ("scope", "read"), ("resource", "http://127.0.0.1:8443/mcp")]), headers: [agent]).json?["access_token"]?.stringValue)

        func exchange(_ scope: String) -> (status: HTTPResponseStatus, headers: [(String, String)], json: JSONValue?) {
            self.send(.POST, "/token", body: FormEncoding.body(TokenExchange.formFields(subjectToken: subject, target: TokenExchangeTarget(audiences: ["upstream"], scope: scope), actorToken: nil)), headers: [gateway])
        }
        #expect(exchange("write").json?["error"] == .string("invalid_scope"), "cannot widen the subject's scope")
        let exchanged = exchange("read")
        #expect(exchanged.status == .ok && exchanged.json?["issued_token_type"] == .string(TokenType.accessToken))
        let claims = try CompactJWS(try #require(exchanged.json?["access_token"]?.stringValue))
        #expect(claims.algorithmName == "RS256")
        #expect(claims.payload["aud"] == .string("upstream") && claims.payload["act"]?["sub"] == .string("client:gateway"))

        let active = self.send(.POST, "/introspect", body: FormEncoding.body([("token", subject)]), headers: [gateway])
        #expect(active.json?["active"] == .bool(true) && active.json?["aud"] == .string("http://127.0.0.1:8443/mcp"))
        #expect(self.send(.POST, "/revoke", body: FormEncoding.body([("token", subject)]), headers: [agent]).status == .ok)
        #expect(self.send(.POST, "/introspect", body: FormEncoding.body([("token", subject)]), headers: [gateway]).json?["active"] == .bool(false))
        #expect(exchange("read").json?["error"] == .string("invalid_grant"), "a revoked subject cannot be exchanged")
    }
}
