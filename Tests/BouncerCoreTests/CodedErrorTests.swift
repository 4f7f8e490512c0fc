import BouncerCore
import Testing

/// Every domain error is compared, hashed and described by its stable code.
@Suite("Coded errors")
struct CodedErrorTests {
    @Test func errorsAreTheSameWhenTheirCodesAre() {
        #expect(TokenError(.expired, "exp 10") == TokenError(.expired, "exp 20"))
        #expect(TokenError(.expired, "x") != TokenError(.notYetValid, "x"))
        #expect(Set([URIError(.host, "a"), URIError(.host, "b"), URIError(.port, "c")]).count == 2)
        #expect(AuthorizationServerError(.issuerMismatch, "a").hashValue == AuthorizationServerError(.issuerMismatch, "b").hashValue)
    }

    @Test func theDescriptionLeadsWithTheCode() {
        #expect(AuthorizationServerError(.noUsableKey, "https://as/jwks holds no usable signing key").description == "no_usable_key: https://as/jwks holds no usable signing key")
        #expect(OAuthClientError(.unavailable, "circuit open").description == "unavailable: circuit open")
        #expect(URIError(.dotSegments, "climbs").description == "dot_segments: climbs")
    }
}
