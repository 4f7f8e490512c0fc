import Yams

/// `tls:` (termination for clients) and the client-side TLS blocks (`upstream_tls`, an
/// authorization server's `tls`).
extension PolicyReader {
    func serverTLS(_ node: Node, _ path: String) -> ServerTLSSettings? {
        let problems = self.problems.count
        guard let section = self.section(
            node, path,
            allowed: ["certificate", "private_key", "sni", "min_version", "client_ca", "client_verify", "handshake_timeout_seconds", "reload_interval_seconds"],
            required: ["certificate", "private_key"]
        ), let certificate = self.certificateFiles(section) else { return nil }
        var settings = ServerTLSSettings(certificate: certificate)
        if let version = section.choice("min_version", MinimumTLSVersion.self, message: "must be \"1.2\" or \"1.3\" (older versions are never offered)") {
            settings.minimumVersion = version
        }
        settings.clientCA = section.string("client_ca")
        if let verify = section.choice("client_verify", ClientCertificateVerification.self, message: "must be none, optional or required") {
            settings.clientVerification = verify
            if verify != .none, settings.clientCA == nil {
                section.report("client_verify", "client_verify \(verify.rawValue) needs client_ca")
            }
        }
        section.read(ServerTLSSettings.integerSettings, into: &settings)
        if let sniNode = section["sni"] {
            guard case .sequence(let entries) = sniNode else {
                section.report("sni", "expected a list of {server_names, certificate, private_key}")
                return nil
            }
            for (index, entry) in entries.enumerated() {
                guard let fields = self.section(entry, "\(section.childPath("sni"))[\(index)]", allowed: ["server_names", "certificate", "private_key"], required: ["server_names", "certificate", "private_key"]),
                      let names = fields.stringList("server_names"),
                      let files = self.certificateFiles(fields)
                else { continue }
                for name in names {
                    let lowered = name.lowercased()
                    if settings.sniCertificates[lowered] != nil {
                        fields.report("server_names", "server name \(name) appears twice")
                    }
                    settings.sniCertificates[lowered] = files
                }
            }
        }
        return self.problems.count == problems ? settings : nil
    }

    func certificateFiles(_ section: PolicySection, certificateKey: String = "certificate", keyKey: String = "private_key") -> CertificateFiles? {
        guard let certificate = section.nonEmptyString(certificateKey), let key = section.nonEmptyString(keyKey) else { return nil }
        return CertificateFiles(certificate: certificate, privateKey: key)
    }

    /// How the gateway verifies a server it connects to; absent: the system trust store.
    func clientTLS(_ node: Node?, _ path: String) -> ClientTLSSettings? {
        guard let node else { return ClientTLSSettings() }
        guard let section = self.section(node, path, allowed: ["ca_file", "server_name", "client_certificate", "client_key", "insecure_skip_verify"]) else { return nil }
        var settings = ClientTLSSettings()
        settings.caFile = section.string("ca_file")
        settings.serverName = section.string("server_name")
        if section["client_certificate"] != nil || section["client_key"] != nil {
            guard let files = self.certificateFiles(section, certificateKey: "client_certificate", keyKey: "client_key") else {
                self.report(node, path, "client_certificate and client_key go together")
                return nil
            }
            settings.clientCertificate = files
        }
        settings.insecureSkipVerify = section.bool("insecure_skip_verify") ?? settings.insecureSkipVerify
        return settings
    }
}
