import BouncerCore
import Testing

@Suite("Certificate thumbprints")
struct CertificateThumbprintTests {
    @Test func sha256ThumbprintIsBase64URLWithoutPadding() {
        // SHA-256("abc") = ba7816bf...15ad
        #expect(CertificateThumbprint.sha256(der: Array("abc".utf8)) == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
    }
}
