/// A certificate chain and its key, as PEM file paths.
public struct CertificateFiles: Sendable, Hashable {
    public var certificate: String
    public var privateKey: String

    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// `tls.min_version`.
public enum MinimumTLSVersion: String, Sendable, Hashable, CaseIterable {
    case tls12 = "1.2"
    case tls13 = "1.3"
}

/// `tls.client_verify`: whether clients are asked for a certificate (RFC 8705 mutual TLS).
public enum ClientCertificateVerification: String, Sendable, Hashable, CaseIterable {
    /// No certificate is asked for.
    case none
    /// Asked for; a client without one is served, one with an unverifiable one is not.
    case optional
    /// A client without a verifiable certificate cannot connect.
    case required
}

/// TLS termination for clients (the `tls:` block). Files are named here and loaded by the
/// TLS layer, off the event loop, at start and on reload.
public struct ServerTLSSettings: Sendable, Hashable {
    public var certificate: CertificateFiles
    /// More certificates, chosen by SNI server name (lowercase; `*.example.com` allowed).
    public var sniCertificates: [String: CertificateFiles] = [:]
    /// Never lower than 1.2.
    public var minimumVersion = MinimumTLSVersion.tls12
    public var clientCA: String?
    public var clientVerification = ClientCertificateVerification.none
    public var handshakeTimeoutSeconds: Int64 = 10
    /// How often certificate and key files are checked for changes (0: only on SIGHUP).
    public var reloadIntervalSeconds: Int64 = 30

    public init(certificate: CertificateFiles) {
        self.certificate = certificate
    }

    /// The whole-number keys of `tls:`, in the order `policies/README.md` lists them.
    public static let integerSettings: [IntegerSetting<ServerTLSSettings>] = [
        IntegerSetting(key: "handshake_timeout_seconds", range: 1...300, field: .int64(\.handshakeTimeoutSeconds)),
        IntegerSetting(key: "reload_interval_seconds", range: 0...86_400, field: .int64(\.reloadIntervalSeconds)),
    ]

    /// Every file the settings name, for change detection.
    public var files: [String] {
        var files = [self.certificate.certificate, self.certificate.privateKey]
        for (_, pair) in self.sniCertificates.sorted(by: { $0.key < $1.key }) { files += [pair.certificate, pair.privateKey] }
        if let clientCA { files.append(clientCA) }
        return files
    }
}

/// How the gateway speaks TLS to an https upstream or authorization server.
public struct ClientTLSSettings: Sendable, Hashable {
    /// A PEM file of trusted CAs; `nil` means the system trust store.
    public var caFile: String?
    /// Verify the certificate against this name instead of the URL's host.
    public var serverName: String?
    /// A client certificate for mTLS.
    public var clientCertificate: CertificateFiles?
    /// Skip verification entirely. Refused by default; logged loudly when set.
    public var insecureSkipVerify = false

    public init(caFile: String? = nil, serverName: String? = nil, clientCertificate: CertificateFiles? = nil, insecureSkipVerify: Bool = false) {
        self.caFile = caFile
        self.serverName = serverName
        self.clientCertificate = clientCertificate
        self.insecureSkipVerify = insecureSkipVerify
    }
}
