import BouncerCore
import Testing

@Suite("Elicitation guard: credential fields in a requested schema")
struct CredentialFieldTests {
    static func schema(_ json: String) throws -> JSONValue {
        try JSONParser().parse(Array(json.utf8))
    }

    @Test(arguments: [
        // Names, however they are spelled.
        (#"{"type":"object","properties":{"password":{"type":"string"}}}"#, "requestedSchema.properties.password: name mentions 'password'"),
        (#"{"type":"object","properties":{"API Key":{"type":"string"}}}"#, "requestedSchema.properties.API Key: name mentions 'apikey'"),
        (#"{"type":"object","properties":{"GITHUB_TOKEN":{"type":"string"}}}"#, "requestedSchema.properties.GITHUB_TOKEN: name mentions 'token'"),
        (#"{"type":"object","properties":{"cardPin":{"type":"string"}}}"#, "requestedSchema.properties.cardPin: name mentions 'pin'"),
        (#"{"type":"object","properties":{"c-v-v":{"type":"string"}}}"#, "requestedSchema.properties.c-v-v: name mentions 'cvv'"),
        (#"{"type":"object","properties":{"ssn":{"type":"string"}}}"#, "requestedSchema.properties.ssn: name mentions 'ssn'"),
        // A harmless name with a telling title or description.
        (#"{"type":"object","properties":{"value":{"type":"string","title":"Your Pass Word"}}}"#, "requestedSchema.properties.value: title mentions 'password'"),
        (#"{"type":"object","properties":{"code":{"type":"string","description":"The 6-digit code from your authenticator (2FA)"}}}"#, "requestedSchema.properties.code: description mentions '2fa'"),
        (#"{"type":"object","properties":{"n":{"type":"string","description":"Credit card number"}}}"#, "requestedSchema.properties.n: description mentions 'cardnumber'"),
        // Marked as secret by the schema itself.
        (#"{"type":"object","properties":{"x":{"type":"string","writeOnly":true}}}"#, "requestedSchema.properties.x: writeOnly"),
        (#"{"type":"object","properties":{"x":{"type":"string","format":"Password"}}}"#, "requestedSchema.properties.x: format password"),
        // Nested out of sight.
        (#"{"type":"object","properties":{"account":{"type":"object","properties":{"secret":{"type":"string"}}}}}"#, "requestedSchema.properties.account.properties.secret: name mentions 'secret'"),
        (#"{"type":"object","properties":{"keys":{"type":"array","items":{"type":"string","title":"private key"}}}}"#, "requestedSchema.properties.keys.items: title mentions 'privatekey'"),
        (#"{"type":"object","properties":{"x":{"anyOf":[{"type":"string"},{"type":"string","writeOnly":true}]}}}"#, "requestedSchema.properties.x.anyOf[1]: writeOnly"),
    ])
    func credentialFieldsAreFound(_ json: String, _ finding: String) throws {
        #expect(CredentialFields.findings(in: try Self.schema(json)).map(\.description) == [finding])
    }

    @Test(arguments: [
        #"{"type":"object","properties":{"name":{"type":"string","title":"Your name"}}}"#,
        #"{"type":"object","properties":{"shipping":{"type":"string","description":"Shipping address"},"opinion":{"type":"string"}}}"#,
        #"{"type":"object","properties":{"count":{"type":"integer","minimum":1},"confirm":{"type":"boolean","title":"Proceed?"}}}"#,
        #"{"type":"object","properties":{"spinner":{"type":"string","enum":["a","b"]}}}"#,
    ])
    func harmlessFormsPass(_ json: String) throws {
        #expect(CredentialFields.findings(in: try Self.schema(json)).isEmpty)
    }

    @Test func wordsSplitAtCaseChangesAndPunctuation() {
        #expect(CredentialFields.wordsOf("cardPIN for the_OTP-code") == ["card", "pin", "for", "the", "otp", "code"])
    }
}
