import BouncerCore
import Crypto
import Testing
import Foundation

@Suite("Policy file parsing and validation")
struct PolicyLoaderTests {
    static let valid = """
        listen: 0.0.0.0:8443
        public_url: https://MCP.example.com/
        authorization_servers:
          corp:
            issuer: http://127.0.0.1:9000/realms/corp
        resources:
          - path: /jira/mcp
            name: Jira
            authorization_server: corp
            scopes_supported: [jira:read]
            upstream: http://10.0.0.5:8080/mcp
            upstream_credentials:
              static: { header: X-Api-Key, value: "${env:JIRA_KEY}" }
            methods:
              initialize: []
              notifications/*: []
              tools/list: [jira:read]
              tools/call:
                list_issues: [jira:read]
                "admin_*": [jira:admin]
              resources/read:
                "file:///docs/*": [docs:read]
        """

    static let secrets = SecretSource(
        environment: { ["JIRA_KEY": "k-123"][$0] },
        readFile: { path in
            switch path {
            case "/run/secret": .success("from-file\n")
            case "/run/secret-key": .success("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
            default: .failure(SecretReadError(reason: "No such file"))
            }
        }
    )

    func problems(_ yaml: String) -> [PolicyProblem] {
        do {
            _ = try PolicyLoader.load(yaml: yaml, secrets: Self.secrets)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func theBridgeSectionIsReadAndChecked() throws {
        let defaults = try PolicyLoader.load(yaml: Self.valid, secrets: Self.secrets)
        #expect(defaults.bridge == BridgeSettings() && defaults.bridge.enabled)
        let set = try PolicyLoader.load(
            yaml: Self.valid + "\nbridge: { enabled: false, session_idle_seconds: 60, max_sessions: 5, input_timeout_seconds: 30, max_parked_calls: 7, replica: gw-1.eu }",
            secrets: Self.secrets
        )
        #expect(!set.bridge.enabled && set.bridge.sessionIdleSeconds == 60 && set.bridge.maxSessions == 5)
        #expect(set.bridge.inputTimeoutSeconds == 30 && set.bridge.maxParkedCalls == 7 && set.bridge.replica == "gw-1.eu")
        let wrong = [
            ("bridge: { sessions: 3 }", "bridge.sessions"),
            ("bridge: { input_timeout_seconds: 0 }", "bridge.input_timeout_seconds"),
            ("bridge: { max_sessions: 0 }", "bridge.max_sessions"),
            ("bridge: { replica: \"two words\" }", "bridge.replica"),
            ("bridge: { enabled: maybe }", "bridge.enabled"),
            ("bridge: [1]", "bridge"),
        ]
        for (yaml, key) in wrong {
            let problems = self.problems(Self.valid + "\n" + yaml)
            #expect(problems.contains { $0.keyPath == key }, "\(yaml): \(problems)")
        }
    }

    @Test func theDPoPSectionAndSenderConstraintAreReadAndChecked() throws {
        let loaded = try PolicyLoader.load(
            yaml: Self.valid.replacingOccurrences(of: "    methods:", with: "    sender_constraint: required\n    methods:")
                + "\ndpop: { algorithms: [ES256, EdDSA], iat_window_seconds: 30, nonce: true }",
            secrets: Self.secrets
        )
        #expect(loaded.resources[0].senderConstraint == .required && loaded.resources[0].dpop == DPoPRequirements(algorithms: [.es256, .edDSA], iatWindowSeconds: 30))
        #expect(loaded.dpop.nonce && loaded.dpop.nonceLifetimeSeconds == 60)
        for (yaml, key) in [
            ("dpop: { algorithms: [HS256] }", "dpop.algorithms"), ("dpop: { algorithms: [none] }", "dpop.algorithms"), ("dpop: { algorithms: [] }", "dpop.algorithms"),
            ("dpop: { iat_window_seconds: 301 }", "dpop.iat_window_seconds"), ("dpop: { replay: 1 }", "dpop.replay"),
        ] {
            let problems = self.problems(Self.valid + "\n" + yaml)
            #expect(problems.contains { $0.keyPath == key }, "\(yaml): \(problems)")
        }
        #expect(try PolicyLoader.load(yaml: Self.valid + "\ntrusted_proxies: [10.0.0.0/8]\nclient_certificate_header: client-cert", secrets: Self.secrets).clientCertificateHeader)
        #expect(self.problems(Self.valid + "\nclient_certificate_header: Client-Cert").contains { $0.keyPath == "client_certificate_header" }, "needs trusted_proxies")
        #expect(self.problems(Self.valid + "\ntrusted_proxies: [10.0.0.0/8]\nclient_certificate_header: X-SSL-Cert").contains { $0.keyPath == "client_certificate_header" })
        let wrongMode = self.problems(Self.valid.replacingOccurrences(of: "    methods:", with: "    sender_constraint: always\n    methods:"))
        #expect(wrongMode.contains { $0.keyPath == "resources[0].sender_constraint" }, "\(wrongMode)")
    }

    @Test func loadsTheDesignExample() throws {
        let policy = try PolicyLoader.load(yaml: Self.valid, secrets: Self.secrets)
        #expect(policy.listen == ListenAddress(host: "0.0.0.0", port: 8443))
        #expect(policy.publicURL.description == "https://mcp.example.com")
        let resource = try #require(policy.resources.first)
        #expect(resource.uri.description == "https://mcp.example.com/jira/mcp")
        #expect(resource.metadataURL == "https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp")
        #expect(resource.credentials == .staticHeader(name: "X-Api-Key", value: "k-123"))
        #expect(resource.upstream.requestPath == "/mcp")
        #expect(resource.upstream.port == 8080)
        #expect(policy.authorizationServers["corp"]?.leewaySeconds == 60)
        #expect(policy.limits == GatewayLimits())
    }

    @Test func unknownKeysAreErrorsWithLineAndPath() {
        let yaml = Self.valid.replacingOccurrences(of: "    scopes_supported: [jira:read]", with: "    scope: [jira:read]")
        let found = self.problems(yaml)
        #expect(found.count == 1)
        #expect(found.first?.line == 10)
        #expect(found.first?.keyPath == "resources[0].scope")
        #expect(found.first?.message.contains("unknown key 'scope'") == true)
    }

    @Test func everyProblemIsReportedNotJustTheFirst() {
        let yaml = """
            listen: nonsense
            public_url: ftp://x
            authorization_servers:
              corp:
                issuer: http://login.example.com
                algorithms: [HS256]
            resources:
              - path: jira
                authorization_server: nope
                upstream: http://10.0.0.5/mcp
                methods:
                  initialize: yes-please
            """
        let paths = Set(self.problems(yaml).map(\.keyPath))
        #expect(paths.isSuperset(of: [
            "listen", "public_url", "authorization_servers.corp.issuer", "authorization_servers.corp.algorithms",
            "resources[0].path", "resources[0].authorization_server", "resources[0].methods.initialize",
        ]))
    }

    @Test func missingEnvironmentVariable() {
        let yaml = Self.valid.replacingOccurrences(of: "env:JIRA_KEY", with: "env:NOPE")
        #expect(self.problems(yaml).map(\.message) == ["environment variable NOPE is not set"])
    }

    @Test func fileSubstitutionTrimsTheTrailingNewline() throws {
        let yaml = Self.valid.replacingOccurrences(of: "env:JIRA_KEY", with: "file:/run/secret")
        let policy = try PolicyLoader.load(yaml: yaml, secrets: Self.secrets)
        #expect(policy.resources[0].credentials == .staticHeader(name: "X-Api-Key", value: "from-file"))
        let missing = Self.valid.replacingOccurrences(of: "env:JIRA_KEY", with: "file:/nope")
        #expect(self.problems(missing).first?.message == "cannot read /nope: No such file")
    }

    @Test func duplicateKeysAreRefused() {
        let yaml = Self.valid.replacingOccurrences(of: "    name: Jira\n", with: "    name: Jira\n    name: Other\n")
        let problem = self.problems(yaml).first
        #expect(problem?.message.contains("duplicate key 'name'") == true)
        #expect(problem?.line != nil)
    }

    @Test func invalidScopeTokens() {
        let yaml = Self.valid.replacingOccurrences(of: "tools/list: [jira:read]", with: #"tools/list: ["jira read", "a\"b"]"#)
        #expect(self.problems(yaml).count == 2)
    }

    @Test func tokenExchangeNeedsTheGatewaysClient() {
        let yaml = Self.valid.replacingOccurrences(of: "static: { header: X-Api-Key, value: \"${env:JIRA_KEY}\" }", with: "token_exchange: { audience: jira }")
        #expect(self.problems(yaml).first?.message.contains("token_exchange needs the gateway's client at authorization server 'corp'") == true)
    }

    @Test func tokenExchangeWithPerToolOverrides() throws {
        let yaml = Self.valid
            .replacingOccurrences(of: "    issuer: http://127.0.0.1:9000/realms/corp", with: """
                    issuer: http://127.0.0.1:9000/realms/corp
                    client: { id: mcp-bouncer, secret: "${env:JIRA_KEY}", auth_method: client_secret_post }
                    token_format: opaque
                """)
            .replacingOccurrences(of: "static: { header: X-Api-Key, value: \"${env:JIRA_KEY}\" }", with: """
                token_exchange:
                        resource: https://jira.internal/mcp
                        audience: [jira-internal]
                        scope: "jira.read jira.write"
                        actor: true
                        tools:
                          delete_issue: { scope: jira.admin }
                """)
        let policy = try PolicyLoader.load(yaml: yaml, secrets: Self.secrets)
        let server = try #require(policy.authorizationServers["corp"])
        #expect(server.client?.method == .clientSecretPost)
        #expect(server.client?.secret == "k-123")
        #expect(server.tokenFormat == .opaque)
        guard case .tokenExchange(let exchange) = policy.resources[0].credentials else {
            Issue.record("expected token exchange")
            return
        }
        #expect(exchange.target == TokenExchangeTarget(resources: ["https://jira.internal/mcp"], audiences: ["jira-internal"], scope: "jira.read jira.write"))
        #expect(exchange.sendActorToken)
        #expect(exchange.target(forTool: "delete_issue") == TokenExchangeTarget(resources: ["https://jira.internal/mcp"], audiences: ["jira-internal"], scope: "jira.admin"))
        #expect(exchange.target(forTool: "list_issues") == exchange.target)
    }

    @Test func clientAuthenticationIsConsistent() {
        func problem(_ client: String) -> String? {
            let yaml = Self.valid.replacingOccurrences(of: "    issuer: http://127.0.0.1:9000/realms/corp", with: "    issuer: http://127.0.0.1:9000/realms/corp\n    client: \(client)")
            return self.problems(yaml).first?.message
        }
        #expect(problem("{ id: x }")?.contains("client_secret_basic needs 'secret'") == true)
        #expect(problem("{ id: x, secret: s, auth_method: private_key_jwt }")?.contains("private_key_jwt needs 'private_key'") == true)
        #expect(problem("{ id: x, private_key: not-a-pem }")?.contains("not a PEM") == true)
        #expect(problem("{ id: x, secret: s, auth_method: tls_client_auth }")?.contains("must be one of") == true)
        #expect(problem("{ id: x, secret: s }") == nil)
    }

    @Test("enumerated settings take their listed values only: a misspelling is a problem, never a silent default")
    func enumeratedSettingsRefuseUnknownValues() {
        func problem(_ setting: String) -> PolicyProblem? {
            let yaml = Self.valid.replacingOccurrences(of: "    issuer: http://127.0.0.1:9000/realms/corp", with: "    issuer: http://127.0.0.1:9000/realms/corp\n    \(setting)")
            return self.problems(yaml).first
        }
        #expect(problem("token_format: JWT")?.message == "must be jwt, opaque or auto")
        // scope_claims names claims, any of them (IdentityProviderTests).
        #expect(problem("scope_claims: [scope, roles]") == nil)
        #expect(problem("scope_claims: [scp]") == nil)
        #expect(problem("algorithms: [RS256, HS256]")?.message.contains("symmetric and unsigned tokens are never accepted") == true)
        #expect(problem("algorithms: []")?.message == "at least one algorithm is required")
        #expect(problem("leeway_seconds: 301")?.keyPath == "authorization_servers.corp.leeway_seconds")
        #expect(problem("require_at_jwt_type: yes")?.message == "expected true or false")
    }

    @Test func perTargetRulesOnlyWhereTheyMeanSomething() {
        let yaml = Self.valid.replacingOccurrences(of: "tools/list: [jira:read]", with: "tools/list: { a: [b] }")
        #expect(self.problems(yaml).first?.keyPath == "resources[0].methods.tools/list")
    }

    @Test func plainHTTPPublicURLOnlyOnLoopback() {
        let yaml = Self.valid.replacingOccurrences(of: "https://MCP.example.com/", with: "http://mcp.example.com")
        #expect(self.problems(yaml).first?.keyPath == "public_url")
        let loopback = Self.valid.replacingOccurrences(of: "https://MCP.example.com/", with: "http://127.0.0.1:8443")
        #expect(self.problems(loopback).isEmpty)
    }

    @Test func emptyAndInvalidDocuments() {
        #expect(self.problems("").first?.message == "the policy file is empty")
        #expect(self.problems("listen: [").first?.message.hasPrefix("not valid YAML") == true)
        #expect(self.problems("- a\n- b").first?.message == "expected a mapping of keys to values")
    }

    @Test func tlsBlocks() throws {
        let yaml = Self.valid + """

            tls:
              certificate: /etc/tls/chain.pem
              private_key: ${file:/run/secret}
              min_version: "1.3"
              client_ca: /etc/tls/clients.pem
              client_verify: optional
              sni:
                - server_names: [Other.Example.com, "*.example.org"]
                  certificate: /etc/tls/other.pem
                  private_key: /etc/tls/other.key
            """
        let policy = try PolicyLoader.load(yaml: yaml, secrets: Self.secrets)
        let tls = try #require(policy.tls)
        #expect(tls.certificate == CertificateFiles(certificate: "/etc/tls/chain.pem", privateKey: "from-file"))
        #expect(tls.minimumVersion == .tls13)
        #expect(tls.clientVerification == .optional)
        #expect(Set(tls.sniCertificates.keys) == ["other.example.com", "*.example.org"])
        #expect(self.problems(yaml.replacingOccurrences(of: "\"1.3\"", with: "\"1.1\"")).first?.keyPath == "tls.min_version")
        #expect(self.problems(yaml.replacingOccurrences(of: "  client_ca: /etc/tls/clients.pem\n", with: "")).first?.keyPath == "tls.client_verify")

        let upstream = Self.valid
            .replacingOccurrences(of: "upstream: http://10.0.0.5:8080/mcp", with: "upstream: https://jira.internal:8443/mcp\n    upstream_tls: { ca_file: /etc/ca.pem, server_name: jira.internal, insecure_skip_verify: false }")
        let resource = try PolicyLoader.load(yaml: upstream, secrets: Self.secrets).resources[0]
        #expect(resource.upstream.port == 8443)
        #expect(resource.upstreamTLS == ClientTLSSettings(caFile: "/etc/ca.pem", serverName: "jira.internal"))
        let halfPair = Self.valid.replacingOccurrences(of: "upstream: http://10.0.0.5:8080/mcp", with: "upstream: https://x/mcp\n    upstream_tls: { client_certificate: /a.pem }")
        #expect(self.problems(halfPair).contains { $0.message.contains("go together") })
    }

    @Test func limitsAreRangeChecked() throws {
        let yaml = Self.valid + "\nlimits:\n  max_body_bytes: 10\n  upstream_response_timeout_seconds: 30\n"
        #expect(self.problems(yaml).map(\.keyPath) == ["limits.max_body_bytes"])
        let ok = Self.valid + "\nlimits:\n  max_body_bytes: 4096\n"
        #expect(try PolicyLoader.load(yaml: ok, secrets: Self.secrets).limits.maxBodyBytes == 4096)
    }

    @Test func reservedAndDuplicatePaths() {
        let yaml = Self.valid.replacingOccurrences(of: "path: /jira/mcp", with: "path: /.well-known/x")
        #expect(self.problems(yaml).first?.message.contains("reserved") == true)
    }

    // MARK: audit and admin

    static let auditKey = AuditSigner(key: .init()).privateKeyPEM

    func auditPolicy(_ audit: String, admin: String = "") -> String {
        Self.valid.replacingOccurrences(of: "public_url: https://MCP.example.com/\n", with: "public_url: https://MCP.example.com/\naudit:\n\(audit)\n\(admin)")
    }

    @Test func theAuditSectionWithItsDefaults() throws {
        let secrets = SecretSource(environment: { ["JIRA_KEY": "k"][$0] }, readFile: { path in
            path == "/run/audit.pem" ? .success(Self.auditKey) : .failure(SecretReadError(reason: "No such file"))
        })
        let policy = try PolicyLoader.load(yaml: self.auditPolicy("  file: /var/log/mcp-bouncer/audit.jsonl\n  signing_key: /run/audit.pem"), secrets: secrets)
        let audit = try #require(policy.audit)
        #expect(audit.file == "/var/log/mcp-bouncer/audit.jsonl")
        #expect(audit.arguments == .hash && audit.fsync == .interval && audit.onOverflow == .drop && audit.checkpointEvery == 1000)
        #expect(audit.signingKey?.keyID == (try AuditSigner(pem: Self.auditKey)).keyID)
        #expect(policy.admin == nil)
        // Inline, as ${file:...} gives it.
        let inline = try PolicyLoader.load(yaml: self.auditPolicy("  file: \"-\"\n  signing_key: \"${file:/run/audit.pem}\"\n  checkpoint_every: 1\n  arguments: full\n  fsync: always\n  on_overflow: refuse"), secrets: secrets)
        #expect(inline.audit?.isStandardOutput == true && inline.audit?.checkpointEvery == 1 && inline.audit?.arguments == .full)
        #expect(inline.audit?.fsync == .always && inline.audit?.onOverflow == .refuse && inline.audit?.signingKey != nil)
    }

    @Test func auditProblemsAreReportedWithTheirKeys() {
        let problems = self.problems(self.auditPolicy("  file: a.jsonl\n  on_overflow: block\n  arguments: some\n  checkpoint_every: 0\n  fsync: sometimes\n  signing_key: /missing.pem\n  colour: red"))
        let text = problems.map(\.description).joined(separator: "\n")
        #expect(text.contains("audit.on_overflow") && text.contains("block is not allowed"))
        #expect(text.contains("audit.arguments") && text.contains("none, hash or full"))
        #expect(text.contains("audit.checkpoint_every"))
        #expect(text.contains("audit.fsync"))
        #expect(text.contains("audit.signing_key") && text.contains("cannot read /missing.pem"))
        #expect(text.contains("unknown key 'colour'"))
        #expect(problems.count == 6)
        // A key that is not Ed25519.
        // A P-256 key (made here), inline as ${file:} would give it.
        let p256 = P256.Signing.PrivateKey().pemRepresentation
        let secrets = SecretSource(environment: { ["JIRA_KEY": "k"][$0] }, readFile: { _ in .success(p256) })
        do {
            _ = try PolicyLoader.load(yaml: self.auditPolicy("  file: a.jsonl\n  signing_key: \"${file:/run/p256.pem}\""), secrets: secrets)
            Issue.record("a P-256 key was accepted")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems.first?.message.contains("not an Ed25519 private key") == true)
        }
        #expect(self.problems(self.auditPolicy("  arguments: hash")).map(\.description).joined().contains("required key 'file'"))
    }

    @Test func theAdminListenerNeverSharesThePublicPort() {
        let valid = Self.valid.replacingOccurrences(of: "public_url: https://MCP.example.com/\n", with: "public_url: https://MCP.example.com/\nadmin:\n  listen: 127.0.0.1:9464\n")
        #expect(self.problems(valid).isEmpty)
        let clash = Self.valid.replacingOccurrences(of: "public_url: https://MCP.example.com/\n", with: "public_url: https://MCP.example.com/\nadmin:\n  listen: 127.0.0.1:8443\n")
        #expect(self.problems(clash).map(\.description).joined().contains("must not share the public port 8443"))
    }

    /// `$${` is a literal `${` (documented in policies/README.md): a value can say `${` without
    /// naming a secret; a substitution next to it still works.
    @Test func aDoubledDollarWritesALiteralSubstitutionStart() throws {
        let secrets = SecretSource(environment: { $0 == "NAME" ? "jira" : Self.secrets.environment($0) }, readFile: Self.secrets.readFile)
        for (written, loaded) in [
            ("$${file:/etc/hostname}", "${file:/etc/hostname}"), ("cost $${price}", "cost ${price}"), ("$${", "${"),
            ("$$${env:NAME}", "$${env:NAME}"), ("$${env:NAME} ${env:NAME}", "${env:NAME} jira"), ("a $ b $$ c", "a $ b $$ c"),
        ] {
            let yaml = Self.valid.replacingOccurrences(of: "name: Jira", with: "name: \"\(written)\"")
            #expect(yaml != Self.valid)
            let policy = try PolicyLoader.load(yaml: yaml, secrets: secrets)
            #expect(policy.resources.first?.name == loaded, "\(written)")
        }
        let unterminated = Self.valid.replacingOccurrences(of: "name: Jira", with: "name: \"x ${file:/y\"")
        #expect(throws: PolicyValidationError.self) { try PolicyLoader.load(yaml: unterminated, secrets: secrets) }
    }
}
