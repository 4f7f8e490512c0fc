import Yams

/// `audit:` (the audit trail) and `admin:` (the metrics and health listener).
extension PolicyReader {
    func audit(_ node: Node, _ path: String) -> AuditSettings? {
        let problems = self.problems.count
        guard let section = self.section(
            node, path,
            allowed: ["file", "arguments", "signing_key", "checkpoint_every", "fsync", "on_overflow", "queue_capacity"],
            required: ["file"]
        ), let file = section.nonEmptyString("file") else { return nil }
        var settings = AuditSettings(file: file)
        settings.arguments = section.choice("arguments", AuditArgumentsMode.self, message: "must be none, hash or full") ?? settings.arguments
        settings.fsync = section.choice("fsync", AuditFsync.self, message: "must be never, interval (every second) or always") ?? settings.fsync
        if section.string("on_overflow") == "block" {
            section.report("on_overflow", "block is not allowed: the event loop never waits for the audit writer (use drop or refuse)")
        } else {
            settings.onOverflow = section.choice("on_overflow", AuditOverflow.self, message: "must be drop or refuse") ?? settings.onOverflow
        }
        section.read(AuditSettings.integerSettings, into: &settings)
        if let key = section.nonEmptyString("signing_key") {
            settings.signingKey = self.signingKey(key, section)
        }
        return self.problems.count == problems ? settings : nil
    }

    /// `signing_key`: the PEM itself (usually `${file:...}`), or the path of a PEM file.
    private func signingKey(_ value: String, _ section: PolicySection) -> AuditSigner? {
        var pem = value
        if !value.hasPrefix("-----BEGIN") {
            switch self.secrets.readFile(value) {
            case .success(let contents): pem = contents
            case .failure(let error):
                section.report("signing_key", "cannot read \(value): \(error.reason)")
                return nil
            }
        }
        do {
            return try AuditSigner(pem: pem)
        } catch {
            section.report("signing_key", "\(error.reason) (mcp-bouncer audit keygen --out FILE writes one)")
            return nil
        }
    }

    func admin(_ node: Node, _ path: String, listen: ListenAddress?) -> AdminSettings? {
        guard let section = self.section(node, path, allowed: ["listen"], required: ["listen"]),
              let address = section["listen"].flatMap({ self.listenAddress($0, section.childPath("listen")) })
        else { return nil }
        if let listen, listen.port != 0, listen.port == address.port,
           listen.host == address.host || listen.host == "0.0.0.0" || address.host == "0.0.0.0" || listen.host == "::" || address.host == "::" {
            section.report("listen", "the admin listener must not share the public port \(listen.port) (metrics are never served to clients)")
            return nil
        }
        return AdminSettings(listen: address)
    }
}
