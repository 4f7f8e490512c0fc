import BouncerCore
import BouncerTestSupport
@testable import BouncerProxy
import Testing

/// What a client is told when the gateway cannot get the upstream's credential: each
/// ``OAuthClientError`` code has one rejection, with a stable code.
@Suite("OAuth client errors")
struct OAuthClientErrorTests {
    func code(_ error: any Error) -> String {
        TokenExchanger.rejection(for: error, issuer: "https://as.example").code
    }

    @Test func eachCodeMapsToOneRejection() {
        #expect(self.code(OAuthClientError(.unavailable, "timeout")) == "upstream_credential_unavailable")
        #expect(self.code(OAuthClientError.refused(TokenEndpointError(code: "invalid_grant", description_: nil, status: 400))) == "invalid_token.expired",
                "a refused subject token is the client's token problem")
        #expect(self.code(OAuthClientError.refused(TokenEndpointError(code: "invalid_target", description_: nil, status: 400))) == "upstream_credential_refused.invalid_target")
        #expect(self.code(OAuthClientError(.misconfigured, "no token_endpoint")) == "upstream_credential_refused.misconfigured")
        #expect(self.code(OAuthClientError(.authenticationFailed, "no secret")) == "upstream_credential_refused.misconfigured")
        #expect(self.code(UpstreamError.closedEarly) == "upstream_credential_unavailable", "anything else: try again later")
    }

    @Test func errorsAreEqualByCode() {
        #expect(OAuthClientError(.unavailable, "a") == OAuthClientError(.unavailable, "b"))
        #expect(OAuthClientError.refused(TokenEndpointError(code: "invalid_grant", description_: nil, status: 400))
            != OAuthClientError.refused(TokenEndpointError(code: "invalid_scope", description_: nil, status: 400)))
    }
}
