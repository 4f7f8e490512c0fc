import BouncerCore
import Testing

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

    /// The connection's previous token is the token again when the header carries the same
    /// bytes (no new String), whatever the scheme says; the header's own checks still apply.
    @Test func bearerExtractionReusesTheConnectionsPreviousToken() {
        func storage(_ outcome: BearerTokenExtractor.Outcome) -> UnsafeRawPointer? {
            guard case .token(var token) = outcome else { return nil }
            return token.withUTF8 { UnsafeRawPointer($0.baseAddress) }
        }
        let previous = String(repeating: "eyJhbGciOiJFUzI1NiJ9.", count: 20) + "sig"
        let again = BearerTokenExtractor.extract(first: "Bearer " + previous, count: 1, reusing: previous)
        #expect(again == .token(previous))
        #expect(storage(again) == storage(.token(previous)))
        let fresh = BearerTokenExtractor.extract(first: "Bearer " + previous, count: 1)
        #expect(fresh == .token(previous))
        #expect(storage(fresh) != storage(.token(previous)))
        // One byte different at the end, the start, the middle: a new token.
        for changed in [String(previous.dropLast()) + "X", "X" + previous.dropFirst(), String(previous.prefix(100)) + "Q" + previous.dropFirst(101)] {
            let outcome = BearerTokenExtractor.extract(first: "Bearer " + changed, count: 1, reusing: previous)
            #expect(outcome == .token(changed))
        }
        #expect(BearerTokenExtractor.extract(first: "DPoP " + previous, count: 1, reusing: previous) == .dpop(previous))
        guard case .invalid = BearerTokenExtractor.extract(first: "Bearer " + previous, count: 2, reusing: previous) else {
            Issue.record("two headers")
            return
        }
        #expect(BearerTokenExtractor.extract(first: "Basic " + previous, count: 1, reusing: previous) == .none)
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
        #expect(BearerTokenExtractor.extract(first: "Bearer a\"b", count: 1) == .invalid("the access token has characters outside the b64token syntax"))
        // RFC 9449 §7.1: the same token68 syntax after DPoP; the scheme is case-insensitive.
        #expect(BearerTokenExtractor.extract(first: "DPoP abc.def", count: 1) == .dpop("abc.def"))
        #expect(BearerTokenExtractor.extract(first: "dpop abc", count: 1) == .dpop("abc"))
        #expect(BearerTokenExtractor.extract(first: "DPoP a\"b", count: 1) == .invalid("the access token has characters outside the b64token syntax"))
        #expect(BearerTokenExtractor.extract(first: "DPoP ", count: 1) == .none)
        #expect(BearerTokenExtractor.extract(first: "DPoPabc", count: 1) == .none)
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
