import Crypto

/// RFC 9440 `Client-Cert`: the client certificate a TLS-terminating proxy verified, as a
/// structured-field byte sequence (`:` base64 of the DER `:`). Read only from trusted proxies
/// (`client_certificate_header`), never forwarded upstream; what certificate-bound tokens
/// (RFC 8705, `cnf.x5t#S256`) are compared with when TLS does not end at the gateway.
public enum ClientCertField {
    /// The field name (RFC 9440 §2.2); `Client-Cert-Chain` is dropped too.
    public static let name = "Client-Cert"

    /// The `x5t#S256` of the certificate in `value`; nil unless there is exactly one field
    /// holding one byte sequence whose content is a DER SEQUENCE.
    public static func thumbprint(_ value: String?, count: Int) -> String? {
        guard count == 1, let value, value.utf8.count >= 3, value.utf8.first == UInt8(ascii: ":"), value.utf8.last == UInt8(ascii: ":") else { return nil }
        // sf-binary is standard base64 with padding (RFC 8941 §3.3.5).
        guard let der = Base64URL.decodeStandard(value.utf8.dropFirst().dropLast()), der.count > 2, der[0] == 0x30 else { return nil }
        return CertificateThumbprint.sha256(der: der)
    }
}
