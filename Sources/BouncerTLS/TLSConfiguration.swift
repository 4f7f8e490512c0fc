/// What a TLS context should do. Plain data, validated when a ``TLSContext`` is built from it.
public struct TLSConfiguration: Sendable, Hashable {
    public enum Version: String, Sendable, Hashable, CaseIterable {
        case tls12 = "1.2"
        case tls13 = "1.3"
    }

    /// Whether a server asks clients for certificates.
    public enum ClientVerification: String, Sendable, Hashable {
        case none
        /// Ask; verify one if sent; allow clients without one.
        case optional
        /// Refuse clients without a certificate that verifies against `clientCA`.
        case required
    }

    /// Where a client finds the certificates it trusts.
    public enum TrustRoots: Sendable, Hashable {
        /// The system trust store (OpenSSL's default paths, e.g. /etc/ssl/certs).
        case system
        /// A PEM file of CA certificates.
        case file(String)
    }

    /// A certificate chain and its private key, as PEM file paths.
    public struct CertifiedKey: Sendable, Hashable {
        public var certificateChain: String
        public var privateKey: String

        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    public enum Role: Sendable, Hashable {
        case server
        case client
    }

    public var role: Role
    /// Server: the default certificate. Client: an optional certificate for mTLS.
    public var certificate: CertifiedKey?
    /// Server: more certificates, chosen by the SNI server name (lowercase host names;
    /// `*.example.com` matches one label).
    public var sniCertificates: [String: CertifiedKey]
    public var minimumVersion: Version
    /// Normally TLS 1.3; lower only to interoperate with (or test) TLS 1.2-only peers.
    public var maximumVersion: Version = .tls13
    /// ALPN protocols in preference order. Server default `["http/1.1"]`.
    public var applicationProtocols: [String]
    /// Server: CA file used to verify client certificates.
    public var clientCA: String?
    public var clientVerification: ClientVerification
    /// Client: what server certificates are verified against.
    public var trustRoots: TrustRoots
    /// Client: skip certificate and host name verification. Never the default; logged loudly.
    public var insecureSkipVerify: Bool

    /// TLS 1.2 cipher suites: forward secrecy and AEAD only (Mozilla "intermediate").
    /// TLS 1.3 suites are OpenSSL's defaults, all of which are modern.
    public static let tls12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    public static func server(
        certificate: CertifiedKey,
        sniCertificates: [String: CertifiedKey] = [:],
        minimumVersion: Version = .tls12,
        applicationProtocols: [String] = ["http/1.1"],
        clientCA: String? = nil,
        clientVerification: ClientVerification = .none
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .server, certificate: certificate, sniCertificates: sniCertificates, minimumVersion: minimumVersion,
            applicationProtocols: applicationProtocols, clientCA: clientCA, clientVerification: clientVerification,
            trustRoots: .system, insecureSkipVerify: false
        )
    }

    public static func client(
        trustRoots: TrustRoots = .system,
        certificate: CertifiedKey? = nil,
        minimumVersion: Version = .tls12,
        applicationProtocols: [String] = [],
        insecureSkipVerify: Bool = false
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .client, certificate: certificate, sniCertificates: [:], minimumVersion: minimumVersion,
            applicationProtocols: applicationProtocols, clientCA: nil, clientVerification: .none,
            trustRoots: trustRoots, insecureSkipVerify: insecureSkipVerify
        )
    }
}
