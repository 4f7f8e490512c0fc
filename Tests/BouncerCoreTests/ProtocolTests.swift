import BouncerCore
import Testing

@Suite("JSON parsing")
struct JSONParserTests {
    @Test func numbersKeepTheirSpelling() throws {
        let value = try JSONParser().parse(#"{"a":1.0,"b":-0,"c":12345678901234567890,"d":1e3}"#)
        #expect(value["a"] == .number("1.0"))
        #expect(value["c"] == .number("12345678901234567890"))
        #expect(value["d"]?.int64Value == 1000)
    }

    @Test func escapesAndUnicode() throws {
        let value = try JSONParser().parse(#"["a\"b\\c\/\n", "\u00e9\ud83d\ude00", "ü"]"#)
        #expect(value == .array([.string("a\"b\\c/\n"), .string("é😀"), .string("ü")]))
    }

    @Test("refused input", arguments: [
        #"{"a":1,"a":2}"#, "[1,]", "{\"a\":1}x", "01", "1.", "-", #""\ud800""#, #""\x""#, "\"a\nb\"", "nul", "", "{'a':1}",
    ])
    func refused(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser().parse(text) }
    }

    @Test("the client is told the class of a parse error and where, never text from its body")
    func parseErrorsEchoNothing() {
        for (body, expected) in [
            (#"{"<script>":1,"<script>":2}"#, "Parse error: a duplicate object key at byte 14"),
            ("{\"a\":1}x", "Parse error: not valid JSON at byte 7"),
        ] {
            do {
                _ = try JSONRPCBody.parse(Array(body.utf8), maxDepth: 64)
                Issue.record("\(body) parsed")
            } catch {
                #expect(error.message == expected)
                #expect(!error.message.contains("script"))
            }
        }
    }

    @Test func invalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONParser().parse([0x22, 0xC3, 0x28, 0x22]) }
    }

    @Test func depthLimit() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSONParser(maxDepth: 64).parse(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSONParser(maxDepth: 64).parse(ok)
    }

    @Test func serialisationRoundTrips() throws {
        let text = #"{"a":[1,true,null,"x\"y"],"b":{"c":-2.5e1}}"#
        #expect(try JSONParser().parse(text).serialized == text)
    }
}

@Suite("JSON-RPC classification")
struct JSONRPCTests {
    func parse(_ text: String) throws(JSONRPCFailure) -> JSONRPCBody {
        try JSONRPCBody.parse(Array(text.utf8), maxDepth: 64)
    }

    @Test func requestNotificationResponse() throws {
        #expect(try self.parse(#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).messages == [.request(id: .string("a"), method: "tools/list", params: nil)])
        #expect(try self.parse(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).messages == [.notification(method: "notifications/initialized", params: nil)])
        #expect(try self.parse(#"{"jsonrpc":"2.0","id":3,"result":{}}"#).messages == [.response(id: .number("3"))])
    }

    @Test("invalid requests", arguments: [
        (#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, -32600),
        (#"{"id":1,"method":"x"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":null,"method":"x"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":""}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#, -32600),
        (#"{"jsonrpc":"2.0"}"#, -32600),
        (#"[]"#, -32600),
        (#""hello""#, -32600),
        (#"{"jsonrpc":"2.0","id":1,"method":"x","method":"y"}"#, -32700),
        (#"{"#, -32700),
    ])
    func invalid(text: String, code: Int) {
        #expect(throws: JSONRPCFailure.self) { try self.parse(text) }
        do {
            _ = try self.parse(text)
        } catch {
            #expect(error.code == code)
            #expect(error.status == 400)
        }
    }

    @Test func invalidRequestKeepsTheIdWhenKnown() {
        do {
            _ = try self.parse(#"{"jsonrpc":"1.0","id":7,"method":"x"}"#)
            Issue.record("expected a failure")
        } catch {
            #expect(error.id == .number("7"))
            #expect(error.body == #"{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"Invalid Request: jsonrpc must be \"2.0\""}}"#)
        }
    }

    @Test func targetOfToolsCall() throws {
        let body = try self.parse(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_issues"}}"#)
        #expect(try body.messages[0].target() == "list_issues")
        let missing = try self.parse(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#)
        #expect(throws: JSONRPCFailure.self) { try missing.messages[0].target() }
    }
}

@Suite("Scope decisions")
struct AccessDecisionTests {
    let resource: ResourcePolicy = {
        let yaml = PolicyLoaderTests.valid + "\n    client_responses: [jira:read]\n"
        return try! PolicyLoader.load(yaml: yaml, secrets: PolicyLoaderTests.secrets).resources[0]
    }()

    func decide(_ text: String, _ granted: Set<String>) throws -> AccessDecision {
        try self.resource.decide(try JSONRPCBody.parse(Array(text.utf8), maxDepth: 64), granted: granted)
    }

    func call(_ name: String) -> String {
        #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\#(name)"}}"#
    }

    @Test func exactToolRule() throws {
        #expect(try self.decide(self.call("list_issues"), ["jira:read"]) == .allow)
        #expect(try self.decide(self.call("list_issues"), []) == .insufficientScope(needed: ["jira:read"]))
    }

    @Test func globToolRule() throws {
        #expect(try self.decide(self.call("admin_purge"), ["jira:read"]) == .insufficientScope(needed: ["jira:admin"]))
        #expect(try self.decide(self.call("admin_purge"), ["jira:admin"]) == .allow)
    }

    @Test func unlistedToolAndMethodAreDenied() throws {
        guard case .denied = try self.decide(self.call("drop_database"), ["jira:read", "jira:admin"]) else { Issue.record("not denied"); return }
        guard case .denied = try self.decide(#"{"jsonrpc":"2.0","id":1,"method":"prompts/list"}"#, ["jira:read"]) else { Issue.record("not denied"); return }
    }

    @Test func emptyScopeListNeedsOnlyAValidToken() throws {
        #expect(try self.decide(#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, []) == .allow)
        #expect(try self.decide(#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#, []) == .allow)
    }

    @Test func resourceURIGlob() throws {
        let read = #"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///docs/a.md"}}"#
        #expect(try self.decide(read, ["docs:read"]) == .allow)
        let other = #"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#
        guard case .denied = try self.decide(other, ["docs:read"]) else { Issue.record("not denied"); return }
    }

    @Test func clientResponsesHaveTheirOwnRule() throws {
        #expect(try self.decide(#"{"jsonrpc":"2.0","id":5,"result":{}}"#, ["jira:read"]) == .allow)
        #expect(try self.decide(#"{"jsonrpc":"2.0","id":5,"result":{}}"#, []) == .insufficientScope(needed: ["jira:read"]))
    }

    @Test func batchNeedsEveryElementsScopes() throws {
        let batch = "[\(self.call("list_issues")),\(self.call("admin_x"))]"
        #expect(try self.decide(batch, ["jira:read"]) == .insufficientScope(needed: ["jira:read", "jira:admin"]))
        let withDenied = "[\(self.call("list_issues")),\(self.call("nope"))]"
        guard case .denied = try self.decide(withDenied, ["jira:read", "jira:admin"]) else { Issue.record("not denied"); return }
    }

    @Test func namePatterns() {
        #expect(NamePattern("notifications/*").matches("notifications/initialized"))
        #expect(!NamePattern("notifications/*").matches("tools/list"))
        #expect(NamePattern("a*b*c").matches("aXXbYYc"))
        #expect(!NamePattern("a*b*c").matches("acb"))
        #expect(NamePattern("*").matches(""))
        #expect(NamePattern("exact").matches("exact"))
        #expect(!NamePattern("exact").matches("exactly"))
    }
}

@Suite("Challenges, metadata and URIs")
struct ChallengeTests {
    let resource = try! PolicyLoader.load(yaml: PolicyLoaderTests.valid, secrets: PolicyLoaderTests.secrets).resources[0]

    @Test func noTokenChallengeHasNoErrorCode() {
        let response = GatewayRejection.missingToken.response(resource: self.resource)
        #expect(response.status == 401)
        #expect(response.header("WWW-Authenticate") == #"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp", scope="jira:read""#)
    }

    @Test func invalidTokenChallenge() {
        let response = GatewayRejection.invalidToken(TokenError(.wrongAudience, "aud x")).response(resource: self.resource)
        #expect(response.status == 401)
        #expect(response.header("WWW-Authenticate")?.contains(#"error="invalid_token", error_description="The access token was not issued for this resource""#) == true)
    }

    @Test func insufficientScopeChallengeAndBody() throws {
        let response = GatewayRejection.insufficientScope(needed: ["jira:read", "jira:write"], id: .string("req-9")).response(resource: self.resource)
        #expect(response.status == 403)
        let header = try #require(response.header("WWW-Authenticate"))
        #expect(header.hasPrefix(#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/jira/mcp", scope="jira:read jira:write", error="insufficient_scope""#))
        let body = try JSONParser().parse(response.body)
        #expect(body["id"] == .string("req-9"))
        #expect(body["error"]?["data"]?["scope"] == .string("jira:read jira:write"))
    }

    @Test func descriptionsCannotBreakTheHeader() {
        let challenge = BearerChallenge(resourceMetadata: "https://x/y", scopes: [], error: .invalidRequest, errorDescription: "bad \"quote\" and \\ backslash\r\n")
        #expect(challenge.headerValue == #"Bearer resource_metadata="https://x/y", error="invalid_request", error_description="bad quote and  backslash""#)
    }

    @Test func metadataDocument() throws {
        let document = try JSONParser().parse(self.resource.metadataDocument(issuer: "http://127.0.0.1:9000/realms/corp"))
        #expect(document["resource"] == .string("https://mcp.example.com/jira/mcp"))
        #expect(document["authorization_servers"] == .array([.string("http://127.0.0.1:9000/realms/corp")]))
        #expect(document["bearer_methods_supported"] == .array([.string("header")]))
        #expect(document["resource_name"] == .string("Jira"))
        #expect(document["resource_documentation"] == nil)
    }

    @Test func router() throws {
        let policy = try PolicyLoader.load(yaml: PolicyLoaderTests.valid, secrets: PolicyLoaderTests.secrets)
        let router = GatewayRouter(policy: policy)
        guard case .resource = router.route("/jira/mcp") else { Issue.record("resource"); return }
        guard case .metadata = router.route("/.well-known/oauth-protected-resource/jira/mcp") else { Issue.record("metadata"); return }
        guard case .metadata = router.route("/.well-known/oauth-protected-resource") else { Issue.record("root metadata"); return }
        guard case .notFound = router.route("/jira/mcp/") else { Issue.record("trailing slash"); return }
        guard case .notFound = router.route("/other") else { Issue.record("other"); return }
    }

    @Test func canonicalURIs() throws {
        #expect(try CanonicalURI("HTTPS://Example.COM:443/a/b/").description == "https://example.com/a/b")
        #expect(try CanonicalURI("http://example.com:80").description == "http://example.com")
        #expect(try CanonicalURI("http://[::1]:8080/mcp").description == "http://[::1]:8080/mcp")
        #expect(try CanonicalURI("https://example.com:8443/x").protectedResourceMetadataURL == "https://example.com:8443/.well-known/oauth-protected-resource/x")
        // Hosts and ports found by fuzzing: each once canonicalised into a URI that read back
        // with another host and port.
        for bad in ["example.com/x", "ftp://x", "https://x/#f", "https://x/?q", "https://u@x/", "https://x:99999/", "https:///x",
                    "https://a]b>:om:443/x", "https://a:b:443/", "https://exämple.com/", "https://a b/", "https://x:+443/", "https://x:-1/"] {
            #expect(throws: URIError.self) { try CanonicalURI(bad) }
        }
    }

    @Test func discoveryURLsFollowPathInsertion() {
        #expect(AuthorizationServerMetadata.discoveryURLs(forIssuer: "https://as.example.com/tenant1") == [
            "https://as.example.com/.well-known/oauth-authorization-server/tenant1",
            "https://as.example.com/.well-known/openid-configuration/tenant1",
            "https://as.example.com/tenant1/.well-known/openid-configuration",
        ])
        #expect(AuthorizationServerMetadata.discoveryURLs(forIssuer: "https://as.example.com") == [
            "https://as.example.com/.well-known/oauth-authorization-server",
            "https://as.example.com/.well-known/openid-configuration",
        ])
    }

    @Test func metadataIssuerMustMatch() throws {
        let json = Array(#"{"issuer":"https://evil.example.com","jwks_uri":"https://evil.example.com/jwks"}"#.utf8)
        #expect(throws: AuthorizationServerError(.issuerMismatch, "")) { try AuthorizationServerMetadata(json: json, expectedIssuer: "https://as.example.com") }
        #expect(AuthorizationServerError(.issuerMismatch, "").endsDiscovery, "another location could only give another issuer's document")
        #expect(throws: AuthorizationServerError(.metadataInvalid, "")) { try AuthorizationServerMetadata(json: Array("[]".utf8), expectedIssuer: "https://as.example.com") }
        let good = Array(#"{"issuer":"https://as.example.com","jwks_uri":"https://as.example.com/jwks","token_endpoint_auth_methods_supported":["client_secret_basic"]}"#.utf8)
        let metadata = try AuthorizationServerMetadata(json: good, expectedIssuer: "https://as.example.com")
        #expect(metadata.jwksURI == "https://as.example.com/jwks")
        #expect(metadata.tokenEndpointAuthMethods == ["client_secret_basic"])
    }

    @Test func bearerExtraction() {
        #expect(BearerTokenExtractor.extract(authorization: []) == .none)
        #expect(BearerTokenExtractor.extract(authorization: ["Bearer abc.def-_~+/=="]) == .token("abc.def-_~+/=="))
        #expect(BearerTokenExtractor.extract(authorization: ["bearer abc"]) == .token("abc"))
        #expect(BearerTokenExtractor.extract(authorization: ["Basic dXNlcjpwYXNz"]) == .none)
        guard case .invalid = BearerTokenExtractor.extract(authorization: ["Bearer a", "Bearer b"]) else { Issue.record("two headers"); return }
        guard case .invalid = BearerTokenExtractor.extract(authorization: ["Bearer a b"]) else { Issue.record("space"); return }
        guard case .invalid = BearerTokenExtractor.extract(authorization: ["Bearer a=b"]) else { Issue.record("padding in middle"); return }
        #expect(BearerTokenExtractor.carriesAccessToken(formEncoded: "x=1&access_token=abc"))
        #expect(!BearerTokenExtractor.carriesAccessToken(formEncoded: "x=access_token"))
    }

    @Test func mirroredHeaders() throws {
        let body = try JSONRPCBody.parse(Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo"}}"#.utf8), maxDepth: 8)
        #expect(MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: "tools/call", mcpName: nil, body: body) == nil)
        #expect(MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: "tools/list", mcpName: nil, body: body) != nil)
        // "héllo" in standard base64 of UTF-8.
        #expect(MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: nil, mcpName: "=?base64?aMOpbGxv?=", body: body) == nil)
        #expect(MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: nil, mcpName: "other", body: body) != nil)
        #expect(MCPHeaderRules.mirroredHeaderMismatch(mcpMethod: nil, mcpName: nil, body: body) == nil)
    }

    @Test func base64URLRoundTripAndStrictness() {
        for length in 0..<20 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
        #expect(Base64URL.decode("QQ==") == nil)
        #expect(Base64URL.decode("QR") == nil)  // non-zero trailing bits
        #expect(Base64URL.decode("Q") == nil)
    }
}

@Suite("Certificate thumbprints")
struct CertificateThumbprintTests {
    @Test func sha256ThumbprintIsBase64URLWithoutPadding() {
        // SHA-256("abc") = ba7816bf...15ad
        #expect(CertificateThumbprint.sha256(der: Array("abc".utf8)) == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
    }
}

@Suite("Hop-by-hop headers")
struct HopByHopTests {
    @Test func fieldNamesCompareIgnoringASCIICaseOnly() {
        #expect("Content-Type".equalsIgnoringASCIICase("content-type"))
        #expect("X-FORWARDED-FOR".equalsIgnoringASCIICase("x-forwarded-for"))
        #expect(!"Content-Type".equalsIgnoringASCIICase("Content-Typ"))
        #expect(!"Content-Type".equalsIgnoringASCIICase("Content_Type"))
        // Only A-Z fold: '@' (0x40) and '`' (0x60) differ by the same bit but are not letters.
        #expect(!"@".equalsIgnoringASCIICase("`"))
        #expect(!"É".equalsIgnoringASCIICase("é"))
    }

    @Test func requestAndResponseSets() {
        for name in ["Authorization", "authorization", "Connection", "TRANSFER-ENCODING", "Host", "Content-Length", "Expect", "Forwarded", "Proxy-Authorization"] {
            #expect(HopByHop.isRequestHeader(name), "\(name) is not forwarded upstream")
        }
        for name in ["Content-Type", "Accept", "Mcp-Session-Id", "MCP-Protocol-Version", "X-Forwarded-For", "Authorization-Extra"] {
            #expect(!HopByHop.isRequestHeader(name), "\(name) is forwarded")
        }
        #expect(HopByHop.isResponseHeader("Keep-Alive"))
        #expect(HopByHop.isResponseHeader("transfer-encoding"))
        #expect(!HopByHop.isResponseHeader("Content-Type"))
        #expect(!HopByHop.isResponseHeader("WWW-Authenticate"))
    }

    @Test func foldedNamesMatchOnlyTheWholeName() {
        // Names are folded into words by position: every word boundary and the length count.
        #expect(HopByHop.isRequestHeader("PROXY-AUTHORIZATION"))  // 19 bytes, three words
        #expect(!HopByHop.isRequestHeader("proxy-authorizatioN-"))
        #expect(!HopByHop.isRequestHeader("proxy-authorizatio"))
        #expect(!HopByHop.isRequestHeader("x-forwarded-protx"))
        #expect(!HopByHop.isRequestHeader("connection\u{0}"))
        #expect(!HopByHop.isRequestHeader(""))
        #expect(!HopByHop.isRequestHeader(String(repeating: "a", count: 25)))
        #expect(!HopByHop.isRequestHeader("Authorization" + String(repeating: " ", count: 20)))
        // Only A-Z fold, as in field-name comparison.
        #expect(!HopByHop.isRequestHeader("HO\u{300}ST"))
        #expect(!HopByHop.isResponseHeader("Te\u{7F}"))
        #expect(!HopByHop.isRequestHeader("Hos\u{54}\u{0}"))
    }

    @Test func substringsCompareIgnoringASCIICase() {
        let value = "x, Keep-Alive ,y"
        let middle = value.dropFirst(3).dropLast(2)
        #expect(middle.equalsIgnoringASCIICase("keep-alive "))
        #expect(!middle.equalsIgnoringASCIICase("keep-alive"))
        #expect(middle.hasPrefixIgnoringASCIICase("KEEP"))
        #expect(!middle.hasPrefixIgnoringASCIICase("x, "))
    }

    @Test func connectionHeaderListsAreReadInPlace() {
        func options(_ values: String...) -> ConnectionOptions {
            var options = ConnectionOptions()
            for value in values { options.add(value) }
            return options
        }
        #expect(options("keep-alive, X-Hop").names("x-hop"))
        #expect(options(" X-Hop ,close").names("X-HOP"))
        #expect(options("close").names("close"))
        #expect(options("\tX-A\t,\t X-B").names("x-b"))
        #expect(options("keep-alive", "X-Second").names("x-second"))
        #expect(options("a, b, c, d").names("d"))
        #expect(!options("keep-alive, X-Hop2").names("X-Hop"))
        #expect(!options("X-Hop").names("X-Ho"))
        #expect(!options("").names("X-Hop"))
        #expect(!options(",,").names("X-Hop"))
        #expect(!options(" , ").names(""))
        let long = "X-" + String(repeating: "Long", count: 10)
        #expect(options("close, \(long)").names(long.uppercased()))
        #expect(!options("close, \(long)x").names(long))
        // Named in Connection, so hop-by-hop in both directions.
        #expect(HopByHop.isRequestHeader("X-Hop", connection: options("X-Hop")))
        #expect(HopByHop.isResponseHeader(long, connection: options(long)))
        #expect(!HopByHop.isResponseHeader("X-Other", connection: options("X-Hop")))
        #expect("Text/Event-Stream; charset=utf-8".hasPrefixIgnoringASCIICase("text/event-stream"))
        #expect(!"text/event".hasPrefixIgnoringASCIICase("text/event-stream"))
        #expect(!"application/json".hasPrefixIgnoringASCIICase("text/event-stream"))
    }

    @Test func authorizationHeaderCountsMatter() {
        #expect(BearerTokenExtractor.extract(first: nil, count: 0) == .none)
        #expect(BearerTokenExtractor.extract(first: "Bearer abc", count: 1) == .token("abc"))
        #expect(BearerTokenExtractor.extract(first: "Bearer abc", count: 2) == .invalid("more than one Authorization header"))
        #expect(BearerTokenExtractor.extract(first: "Basic abc", count: 1) == .none)
    }

    @Test func bearerTokensAreB64Tokens() {
        // RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/".utf8)
        for byte in UInt8.min...UInt8.max where byte != UInt8(ascii: "=") {
            let token = String(decoding: [UInt8(ascii: "a"), byte, UInt8(ascii: "b")], as: UTF8.self)
            #expect(BearerTokenExtractor.isB64Token(token) == allowed.contains(byte), "byte \(byte)")
        }
        #expect(BearerTokenExtractor.isB64Token("eyJ.a-b_c~d+e/f=="))
        #expect(!BearerTokenExtractor.isB64Token("abc=d"))
        #expect(!BearerTokenExtractor.isB64Token("abc= "))
        #expect(BearerTokenExtractor.extract(first: "Bearer a\"b", count: 1) == .invalid("the bearer token has characters outside the b64token syntax"))
    }

    @Test func jwsShapeIsTwoDots() {
        #expect(CompactJWS.looksLikeJWS("a.b.c"))
        #expect(!CompactJWS.looksLikeJWS("a.b"))
        #expect(!CompactJWS.looksLikeJWS("a.b.c.d.e"))
        #expect(!CompactJWS.looksLikeJWS("opaque-token"))
    }
}

@Suite("Request head rules (RFC 9112 3.2, 3.2.2, 6.1)")
struct RequestHeadFactsTests {
    func violation(_ fields: [(String, String)], method: String = "POST", http11: Bool = true) -> RequestHeadFacts.Violation? {
        var rules = RequestHeadFacts()
        for (name, value) in fields { rules.observe(name: name, value: value) }
        return rules.violation(method: method, isHTTP11OrLater: http11)
    }

    @Test("GET, HEAD and DELETE carry no body: one would reach the upstream uninspected")
    func bodiesWhereNoneBelongs() {
        let host = ("Host", "a")
        for method in ["GET", "HEAD", "DELETE"] {
            #expect(self.violation([host, ("Content-Length", "5")], method: method) == .unexpectedBody)
            #expect(self.violation([host, ("Transfer-Encoding", "chunked")], method: method) == .unexpectedBody)
            #expect(self.violation([host, ("Content-Length", "0")], method: method) == nil)
            #expect(self.violation([host], method: method) == nil)
        }
        #expect(self.violation([host, ("Content-Length", "5")], method: "POST") == nil)
        #expect(RequestHeadFacts.Violation.unexpectedBody.status == 400)
    }

    @Test("a body in a content coding the gateway cannot read is 415")
    func contentCodings() {
        let host = ("Host", "a")
        #expect(self.violation([host, ("Content-Encoding", "identity")]) == nil)
        #expect(self.violation([host, ("content-encoding", " Identity , ")]) == nil)
        #expect(self.violation([host, ("Content-Encoding", "gzip")]) == .unsupportedContentCoding)
        #expect(self.violation([host, ("Content-Encoding", "identity, br")]) == .unsupportedContentCoding)
        #expect(self.violation([host, ("Content-Encoding", "identity"), ("Content-Encoding", "deflate")]) == .unsupportedContentCoding)
        #expect(RequestHeadFacts.Violation.unsupportedContentCoding.status == 415)
    }

    @Test func lengthAndExpectationAreGatheredInThePass() {
        var rules = RequestHeadFacts()
        for (name, value) in [("Host", "a"), ("content-length", "2048"), ("EXPECT", "100-Continue")] { rules.observe(name: name, value: value) }
        #expect(rules.contentLength == 2048 && rules.expectsContinue && rules.hasBody)
        var none = RequestHeadFacts()
        none.observe(name: "Expect", value: "something-else")
        #expect(none.contentLength == nil && !none.expectsContinue && !none.hasBody)
    }

    @Test func hostIsRequiredOnceAndWellFormed() {
        #expect(self.violation([("Host", "mcp.example.com")]) == nil)
        #expect(self.violation([]) == .missingHost)
        #expect(self.violation([], http11: false) == nil, "HTTP/1.0 has no Host requirement")
        #expect(self.violation([("host", "a"), ("HOST", "a")]) == .multipleHosts)
        #expect(self.violation([("Host", "a b")]) == .invalidHost)
        #expect(self.violation([("Host", "a b")], http11: false) == .invalidHost)
    }

    @Test func hostValues() {
        for valid in ["", "mcp.example.com", "mcp.example.com:8443", "127.0.0.1:80", "[::1]", "[::1]:8080", "[v1.fe]", "xn--bcher-kva.example", "a%20b", "a:", "localhost"] {
            #expect(RequestHeadFacts.isValidHost(valid), "\(valid)")
        }
        for invalid in ["a b", "a/b", "a@b", "a:b", "a:80:80", "[::1", "[]", "[::1]x", "a%2", "a%zz", "a\tb", "a\"b", "é.example"] {
            #expect(!RequestHeadFacts.isValidHost(invalid), "\(invalid)")
        }
    }

    @Test func transferCodings() {
        let host = ("Host", "a")
        #expect(self.violation([host, ("Transfer-Encoding", "chunked")]) == nil)
        #expect(self.violation([host, ("transfer-encoding", " Chunked ")]) == nil)
        #expect(self.violation([host, ("Transfer-Encoding", "gzip, chunked")]) == .unsupportedTransferCoding)
        #expect(self.violation([host, ("Transfer-Encoding", "identity")]) == .unsupportedTransferCoding)
        #expect(self.violation([host, ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]) == .unsupportedTransferCoding)
        #expect(self.violation([("Transfer-Encoding", "chunked")], http11: false) == .transferEncodingInHTTP10)
        #expect(RequestHeadFacts.Violation.unsupportedTransferCoding.status == 501)
        #expect(RequestHeadFacts.Violation.missingHost.status == 400)
    }

    @Test func absoluteFormTargetsAreAcceptedAsTheirPath() {
        #expect(RequestHeadFacts.originForm(of: "/mcp?x=1") == "/mcp?x=1")
        #expect(RequestHeadFacts.originForm(of: "https://mcp.example.com/jira/mcp?x=1") == "/jira/mcp?x=1")
        #expect(RequestHeadFacts.originForm(of: "HTTP://mcp.example.com:8080/mcp") == "/mcp")
        #expect(RequestHeadFacts.originForm(of: "http://mcp.example.com") == "/")
        #expect(RequestHeadFacts.originForm(of: "http://mcp.example.com?x") == "/?x")
        #expect(RequestHeadFacts.originForm(of: "*") == nil)
        #expect(RequestHeadFacts.originForm(of: "mcp.example.com:443") == nil)
        #expect(RequestHeadFacts.originForm(of: "ftp://mcp.example.com/mcp") == nil)
    }
}
