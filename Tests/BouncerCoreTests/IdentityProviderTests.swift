import BouncerCore
import BouncerTestSupport
import Foundation
import Testing

/// Identity providers without RFC 8707 (`accepted_audiences`) and with their own claim shapes
/// (`scope_claims`, `subject_claim`, `required_claims`), and the recipes of
/// docs/identity-providers.md, each checked with tokens shaped like that provider's.
@Suite("Identity provider settings")
struct IdentityProviderTests {
    static let secrets = SecretSource(environment: { _ in nil }, readFile: { _ in .failure(SecretReadError(reason: "no files here")) })

    static func policy(server: String = "", resource: String = "", second: String? = nil) throws(PolicyValidationError) -> GatewayPolicy {
        var yaml = """
            listen: 127.0.0.1:8443
            public_url: https://mcp.example.com
            authorization_servers:
              idp:
                issuer: https://idp.example.com
            \(server)
            resources:
              - path: /jira/mcp
                authorization_server: idp
                upstream: http://127.0.0.1:9001/mcp
            \(resource)
                methods: { initialize: [], tools/list: [jira:read] }

            """
        if let second {
            yaml += """
                  - path: /wiki/mcp
                    authorization_server: idp
                    upstream: http://127.0.0.1:9002/mcp
                \(second)
                    methods: { initialize: [] }

                """
        }
        return try PolicyLoader.load(yaml: yaml, secrets: Self.secrets)
    }

    static func problems(server: String = "", resource: String = "", second: String? = nil) -> [String] {
        do {
            _ = try Self.policy(server: server, resource: resource, second: second)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    /// Verifies `payload` signed by `signer` (header `typ`) against the first resource of `policy`.
    static func verify(_ payload: String, policy: GatewayPolicy, signer: TestSigner = .rsa(), typ: String? = "JWT") -> Result<AccessTokenClaims, TokenError> {
        let resource = policy.resources[0]
        let requirements = TokenRequirements(server: policy.authorizationServers[resource.authorizationServer]!, resource: resource)
        return Result { () throws(TokenError) in
            try AccessTokenVerifier.verify(signer.sign(payload, typ: typ), keys: TestSigner.keySet(signer), requirements: requirements, now: Fixtures.now)
        }
    }

    static func code(_ result: Result<AccessTokenClaims, TokenError>) -> TokenError.Code? {
        if case .failure(let error) = result { return error.code }
        return nil
    }

    static let times = #""iat":\#(Fixtures.now - 10),"exp":\#(Fixtures.now + 600)"#

    // MARK: accepted_audiences

    @Test func acceptedAudiencesAreAcceptedBesidesTheResourceURIAndNothingNear() throws {
        let policy = try Self.policy(resource: "    accepted_audiences: [api://jira-mcp, https://jira-api.acme.example]")
        #expect(policy.resources[0].acceptedAudiences == ["api://jira-mcp", "https://jira-api.acme.example"])
        func token(_ aud: String) -> String { #"{"iss":"https://idp.example.com","sub":"alice","aud":\#(aud),\#(Self.times)}"# }
        #expect(try Self.verify(token(#""api://jira-mcp""#), policy: policy).get().audiences == ["api://jira-mcp"])
        #expect(try Self.verify(token(#"["account","https://jira-api.acme.example"]"#), policy: policy).get().subject == "alice")
        #expect(try Self.verify(token(#""https://mcp.example.com/jira/mcp""#), policy: policy).get().subject == "alice")
        // Byte for byte: case, a trailing slash, a prefix and another resource are not the value.
        for near in [#""API://jira-mcp""#, #""api://jira-mcp/""#, #""api://jira""#, #""https://jira-api.acme.example/""#, #""https://mcp.example.com/wiki/mcp""#, #"["account"]"#] {
            #expect(Self.code(Self.verify(token(near), policy: policy)) == .wrongAudience, "\(near)")
        }
        // Without the setting, the application ID URI is refused as before.
        #expect(Self.code(Self.verify(token(#""api://jira-mcp""#), policy: try Self.policy())) == .wrongAudience)
    }

    @Test func introspectionAnswersGetTheSameAudienceRules() throws {
        let policy = try Self.policy(resource: "    accepted_audiences: [api://jira-mcp]")
        let resource = policy.resources[0]
        let requirements = TokenRequirements(server: policy.authorizationServers["idp"]!, resource: resource)
        func answer(_ aud: String) throws -> Introspection.Outcome {
            let body = #"{"active":true,"sub":"alice","aud":"\#(aud)",\#(Self.times)}"#
            return try Introspection.parse(body: Array(body.utf8), requirements: requirements, now: Fixtures.now, maxLifetimeSeconds: 300).get()
        }
        guard case .active = try answer("api://jira-mcp") else { Issue.record("accepted audience refused by introspection"); return }
        guard case .rejected(let error) = try answer("api://other") else { Issue.record("another audience accepted by introspection"); return }
        #expect(error.code == .wrongAudience)
    }

    @Test func checkRefusesAnAudienceTwoResourcesShare() {
        // The same extra audience on two resources: a token for one would be replayed at the other.
        let shared = Self.problems(resource: "    accepted_audiences: [api://apps]", second: "    accepted_audiences: [api://apps]")
        #expect(shared.count == 1)
        #expect(shared.first?.contains("resources[1].accepted_audiences: audience 'api://apps' is also accepted by resource /jira/mcp") == true, "\(shared)")
        // Another resource's URI as an extra audience, either way round.
        let uri = Self.problems(resource: "    accepted_audiences: [https://mcp.example.com/wiki/mcp]", second: "")
        #expect(uri.count == 1 && uri[0].contains("'https://mcp.example.com/wiki/mcp' is also accepted by resource /jira/mcp"), "\(uri)")
        let reverse = Self.problems(second: "    accepted_audiences: [https://MCP.example.com/jira/mcp]")
        #expect(reverse.count == 1 && reverse[0].contains("is also accepted by resource /jira/mcp"), "\(reverse)")
        // Listed twice, or the resource's own URI: a mistake, said so.
        #expect(Self.problems(resource: "    accepted_audiences: [api://a, api://a]").first?.contains("'api://a' is listed twice") == true)
        #expect(Self.problems(resource: "    accepted_audiences: [https://mcp.example.com/jira/mcp]").first?.contains("is the resource URI itself") == true)
        #expect(Self.problems(resource: "    accepted_audiences: api://a").first?.contains("expected a list") == true)
        #expect(Self.problems(resource: #"    accepted_audiences: [""]"#).first?.contains("accepted_audiences[0]") == true)
        // Distinct values on two resources load.
        #expect(Self.problems(resource: "    accepted_audiences: [api://jira]", second: "    accepted_audiences: [api://wiki]").isEmpty)
    }

    @Test func checkWarnsWhenAnAudienceLooksLikeAClientID() throws {
        let server = "    client: { id: mcp-bouncer, secret: s }"
        let cases: [(String, String?)] = [
            ("api://jira-mcp", nil),
            ("https://jira-api.acme.example", nil),
            ("4f8c2a91-6d3e-4b7a-a5c1-9e2d7f3b8c06", "a GUID"),
            ("1234567890-abc.apps.googleusercontent.com", "a Google OAuth client id"),
            ("0oa9x2k4bqLd8sT2e357", "not a URI"),
            ("mcp-bouncer", "the gateway's own client id at idp"),
        ]
        for (value, hint) in cases {
            let policy = try Self.policy(server: server, resource: "    accepted_audiences: [\"\(value)\"]")
            if let hint {
                #expect(policy.warnings.count == 1 && policy.warnings[0].message.contains(hint), "\(value): \(policy.warnings)")
                #expect(policy.warnings.first?.keyPath == "resources[0].accepted_audiences")
            } else {
                #expect(policy.warnings.isEmpty, "\(value): \(policy.warnings)")
            }
        }
    }

    // MARK: scope_claims, subject_claim, required_claims

    @Test func anyClaimCarriesScopesAsAStringOrAnArray() throws {
        let policy = try Self.policy(server: "    scope_claims: [roles, \"https://acme.example/permissions\"]")
        #expect(policy.authorizationServers["idp"]?.scopeClaims.map(\.rawValue) == ["roles", "https://acme.example/permissions"])
        let token = #"{"iss":"https://idp.example.com","sub":"alice","aud":"https://mcp.example.com/jira/mcp",\#(Self.times),"roles":["Jira.Admin","jira:read"],"https://acme.example/permissions":"jira:write jira:comment","scope":"ignored:scope"}"#
        #expect(try Self.verify(token, policy: policy).get().scopes == ["Jira.Admin", "jira:read", "jira:write", "jira:comment"])
        // The default reads scope and scp.
        let plain = try Self.policy()
        #expect(try Self.verify(token, policy: plain).get().scopes == ["ignored:scope"])
        #expect(Self.problems(server: "    scope_claims: []").first?.contains("at least one claim") == true)
        #expect(Self.problems(server: "    scope_claims: [roles, roles]").first?.contains("named twice") == true)
        #expect(Self.problems(server: "    scope_claims: roles").first?.contains("expected a list") == true)
    }

    @Test func theSubjectComesFromTheConfiguredClaim() throws {
        let policy = try Self.policy(server: "    subject_claim: oid")
        func token(_ extra: String) -> String { #"{"iss":"https://idp.example.com","sub":"pairwise-123","aud":"https://mcp.example.com/jira/mcp",\#(Self.times)\#(extra)}"# }
        let claims = try Self.verify(token(#","oid":"00000000-0000-0000-66f3-3332eca7ea81""#), policy: policy).get()
        #expect(claims.subject == "00000000-0000-0000-66f3-3332eca7ea81")
        #expect(claims.user == "sub:00000000-0000-0000-66f3-3332eca7ea81", "sessions and rate limits follow the configured subject")
        // Absent: no subject (as a token without sub); not a string: malformed, not silently nobody.
        #expect(try Self.verify(token(#","client_id":"agent""#), policy: policy).get().user == "client:agent")
        #expect(Self.code(Self.verify(token(#","oid":42"#), policy: policy)) == .malformed)
        #expect(Self.code(Self.verify(token(#","oid":["a"]"#), policy: policy)) == .malformed)
        #expect(try Self.verify(token(""), policy: try Self.policy()).get().subject == "pairwise-123")
        #expect(Self.problems(server: #"    subject_claim: """#).first?.contains("subject_claim") == true)
    }

    @Test func requiredClaimsMustHaveTheirValue() throws {
        let policy = try Self.policy(server: """
                required_claims:
                  tid: 7a1e35c2
                  azp: [agent-a, agent-b]
                  email_verified: true
                  groups: mcp-users
            """)
        #expect(policy.authorizationServers["idp"]?.requiredClaims.count == 4)
        func token(_ claims: String) -> String { #"{"iss":"https://idp.example.com","sub":"alice","aud":"https://mcp.example.com/jira/mcp",\#(Self.times),\#(claims)}"# }
        let good = #""tid":"7a1e35c2","azp":"agent-b","email_verified":true,"groups":["staff","mcp-users"]"#
        #expect(try Self.verify(token(good), policy: policy).get().subject == "alice")
        let wrong: [(String, TokenError.Code)] = [
            (#""tid":"other","azp":"agent-b","email_verified":true,"groups":"mcp-users""#, .wrongClaim),
            (#""tid":"7a1e35c2","azp":"agent-c","email_verified":true,"groups":"mcp-users""#, .wrongClaim),
            (#""tid":"7a1e35c2","azp":"agent-a","email_verified":false,"groups":"mcp-users""#, .wrongClaim),
            (#""tid":"7a1e35c2","azp":"agent-a","email_verified":"yes","groups":"mcp-users""#, .wrongClaim),
            (#""tid":"7a1e35c2","azp":"agent-a","email_verified":true,"groups":["staff"]"#, .wrongClaim),
            (#""tid":"7a1e35c2","azp":"agent-a","email_verified":true,"groups":{"mcp-users":true}"#, .wrongClaim),
            (#""tid":["7a1e35c2 "],"azp":"agent-a","email_verified":true,"groups":"mcp-users""#, .wrongClaim),
            (#""azp":"agent-a","email_verified":true,"groups":"mcp-users""#, .missingClaim),
            (#""tid":null,"azp":"agent-a","email_verified":true,"groups":"mcp-users""#, .wrongClaim),
        ]
        for (claims, expected) in wrong {
            #expect(Self.code(Self.verify(token(claims), policy: policy)) == expected, "\(claims)")
        }
        #expect(Self.problems(server: "    required_claims: [tid]").first?.contains("expected a mapping") == true)
        #expect(Self.problems(server: "    required_claims: { aud: x }").first?.contains("checked by the gateway already") == true)
        #expect(Self.problems(server: "    required_claims: { tid: [] }").first?.contains("at least one value") == true)
        #expect(Self.problems(server: "    required_claims: { tid: { a: b } }").first?.contains("expected a string") == true)
    }

    // MARK: The recipes, with tokens shaped like each provider's

    static let recipesDirectory = ExamplePolicyTests.policiesDirectory.appendingPathComponent("recipes")

    static func recipe(_ name: String) throws -> GatewayPolicy {
        try PolicyLoader.load(yaml: String(contentsOf: Self.recipesDirectory.appendingPathComponent("\(name).yaml"), encoding: .utf8), secrets: Self.secrets)
    }

    @Test func everyRecipeIsDocumentedAndLoads() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.recipesDirectory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(names == ["auth0.yaml", "entra.yaml", "google.yaml", "keycloak.yaml", "okta.yaml"])
        let guide = try String(contentsOf: ExamplePolicyTests.policiesDirectory.deletingLastPathComponent().appendingPathComponent("docs/identity-providers.md"), encoding: .utf8)
        for name in names {
            _ = try Self.recipe(String(name.dropLast(5)))
            #expect(guide.contains("policies/recipes/\(name)"), "docs/identity-providers.md shows \(name)")
        }
    }

    @Test func keycloakTokensWithTheAudienceMapper() throws {
        let policy = try Self.recipe("keycloak")
        let issuer = "https://keycloak.example.com/realms/acme"
        func token(aud: String, azp: String = "claude-agent") -> String {
            #"{"exp":\#(Fixtures.now + 300),"iat":\#(Fixtures.now - 5),"jti":"onrtac:7f1c","iss":"\#(issuer)","aud":\#(aud),"sub":"f3c9a1d2-5e7b-4c8a-9d0e-1b2c3d4e5f60","typ":"Bearer","azp":"\#(azp)","sid":"a1b2","acr":"1","realm_access":{"roles":["offline_access","default-roles-acme"]},"scope":"openid jira:read profile email","email_verified":true,"preferred_username":"alice"}"#
        }
        let claims = try Self.verify(token(aud: #"["https://mcp.example.com/jira/mcp","account"]"#), policy: policy).get()
        #expect(claims.scopes.contains("jira:read") && claims.clientID == "claude-agent")
        // Without the mapper Keycloak's token names only "account" (or nothing): refused.
        #expect(Self.code(Self.verify(token(aud: #""account""#), policy: policy)) == .wrongAudience)
        #expect(Self.code(Self.verify(#"{"exp":\#(Fixtures.now + 300),"iss":"\#(issuer)","sub":"x","azp":"claude-agent"}"#, policy: policy)) == .missingClaim)
        // A client Keycloak also serves, not one of the agents.
        #expect(Self.code(Self.verify(token(aud: #""https://mcp.example.com/jira/mcp""#, azp: "grafana"), policy: policy)) == .wrongClaim)
        // ES256 realm keys work too.
        #expect((try? Self.verify(token(aud: #""https://mcp.example.com/jira/mcp""#), policy: policy, signer: .p256()).get()) != nil)
    }

    @Test func entraV2Tokens() throws {
        let policy = try Self.recipe("entra")
        let tenant = "7a1e35c2-9b4f-4d6e-8a21-3c5d9e0f1b24"
        let api = "4f8c2a91-6d3e-4b7a-a5c1-9e2d7f3b8c06"
        func token(aud: String = api, ver: String = "2.0", azp: String = "0b6d4c2e-5f81-4a3b-9c7d-2e8f1a6b3c90", iss: String? = nil, permissions: String = #""scp":"jira.read jira.write""#) -> String {
            let issuer = iss ?? "https://login.microsoftonline.com/\(tenant)/v2.0"
            return #"{"aud":"\#(aud)","iss":"\#(issuer)","iat":\#(Fixtures.now - 60),"nbf":\#(Fixtures.now - 60),"exp":\#(Fixtures.now + 3600),"aio":"AXQAi/8TAAAA","azp":"\#(azp)","azpacr":"0","name":"Alice","oid":"9f2d1c3b-4a5e-6f70-8192-a3b4c5d6e7f8","preferred_username":"alice@acme.example",\#(permissions),"sub":"AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ","tid":"\#(tenant)","uti":"fqiBqXLPj0eQa82S-IYFAA","ver":"\#(ver)"}"#
        }
        let user = try Self.verify(token(), policy: policy).get()
        #expect(user.subject == "9f2d1c3b-4a5e-6f70-8192-a3b4c5d6e7f8", "oid, not the per-application sub")
        #expect(user.scopes == ["jira.read", "jira.write"])
        // Application permissions (client credentials) arrive in roles.
        let app = try Self.verify(token(permissions: #""roles":["jira.read"],"idtyp":"app""#), policy: policy).get()
        #expect(app.scopes == ["jira.read"])
        #expect(Self.code(Self.verify(token(ver: "1.0"), policy: policy)) == .wrongClaim, "v1 tokens are not accepted")
        #expect(Self.code(Self.verify(token(azp: "11111111-2222-3333-4444-555555555555"), policy: policy)) == .wrongClaim, "another client application")
        #expect(Self.code(Self.verify(token(aud: "00000003-0000-0000-c000-000000000000"), policy: policy)) == .wrongAudience, "a Microsoft Graph token")
        #expect(Self.code(Self.verify(token(iss: "https://login.microsoftonline.com/99999999-9b4f-4d6e-8a21-3c5d9e0f1b24/v2.0"), policy: policy)) == .wrongIssuer, "another tenant")
    }

    @Test func oktaCustomAuthorizationServerTokens() throws {
        let policy = try Self.recipe("okta")
        func token(aud: String = "api://jira-mcp", cid: String = "0oa9x2k4bqLd8sT2e357") -> String {
            #"{"ver":1,"jti":"AT.uT1bq0k8r9","iss":"https://acme.okta.com/oauth2/aus9x2k4bqLd8sT2e357","aud":"\#(aud)","iat":\#(Fixtures.now - 5),"exp":\#(Fixtures.now + 3600),"cid":"\#(cid)","uid":"00u1a2b3c4d5e6f7g8h9","scp":["jira.read","openid"],"auth_time":\#(Fixtures.now - 100),"sub":"alice@acme.example"}"#
        }
        let claims = try Self.verify(token(), policy: policy, typ: nil).get()
        #expect(claims.subject == "00u1a2b3c4d5e6f7g8h9" && claims.scopes == ["jira.read", "openid"])
        #expect(Self.code(Self.verify(token(aud: "api://default"), policy: policy, typ: nil)) == .wrongAudience, "the default authorization server's audience")
        #expect(Self.code(Self.verify(token(cid: "0oaOTHERCLIENT"), policy: policy, typ: nil)) == .wrongClaim)
    }

    @Test func auth0APITokens() throws {
        let policy = try Self.recipe("auth0")
        func token(aud: String, typ: String = "JWT") -> (String, String) {
            (#"{"iss":"https://acme.us.auth0.com/","sub":"auth0|64f1c2d3e4","aud":\#(aud),"iat":\#(Fixtures.now - 5),"exp":\#(Fixtures.now + 86400),"scope":"openid read:issues","azp":"Xy7kQ2mN9pR4sT6v","permissions":["read:issues","write:issues"]}"#, typ)
        }
        // With openid requested Auth0 adds its userinfo audience: aud is an array.
        let (withUserinfo, typ) = token(aud: #"["https://jira-api.acme.example","https://acme.us.auth0.com/userinfo"]"#)
        let claims = try Self.verify(withUserinfo, policy: policy, typ: typ).get()
        #expect(claims.scopes == ["openid", "read:issues", "write:issues"] && claims.clientID == "Xy7kQ2mN9pR4sT6v")
        // The RFC 9068 profile (typ at+jwt), a single audience.
        #expect((try? Self.verify(token(aud: #""https://jira-api.acme.example""#).0, policy: policy, typ: "at+jwt").get()) != nil)
        // A token for another Auth0 API, or for userinfo only, is refused.
        #expect(Self.code(Self.verify(token(aud: #""https://billing-api.acme.example""#).0, policy: policy)) == .wrongAudience)
        #expect(Self.code(Self.verify(token(aud: #""https://acme.us.auth0.com/userinfo""#).0, policy: policy)) == .wrongAudience)
        #expect(Self.code(Self.verify(token(aud: #""https://jira-api.acme.example""#).0.replacingOccurrences(of: "acme.us.auth0.com/\"", with: "acme.us.auth0.com\""), policy: policy)) == .wrongIssuer, "Auth0's issuer has its slash")
    }

    @Test func googleServiceAccountIDTokens() throws {
        let policy = try Self.recipe("google")
        func token(aud: String = "https://mcp.example.com/jira/mcp", email: String = "jira-agent@acme-agents.iam.gserviceaccount.com", verified: String = "true") -> String {
            #"{"aud":"\#(aud)","azp":"113574198264650215127","email":"\#(email)","email_verified":\#(verified),"exp":\#(Fixtures.now + 3600),"iat":\#(Fixtures.now - 5),"iss":"https://accounts.google.com","sub":"113574198264650215127"}"#
        }
        let claims = try Self.verify(token(), policy: policy).get()
        #expect(claims.subject == "113574198264650215127" && claims.scopes.isEmpty)
        #expect(Self.code(Self.verify(token(email: "someone@gmail.com"), policy: policy)) == .wrongClaim, "another Google account")
        #expect(Self.code(Self.verify(token(verified: "false"), policy: policy)) == .wrongClaim)
        // A Sign-in-with-Google ID token names a client id, not this resource.
        #expect(Self.code(Self.verify(token(aud: "1234567890-abc.apps.googleusercontent.com"), policy: policy)) == .wrongAudience)
    }
}
