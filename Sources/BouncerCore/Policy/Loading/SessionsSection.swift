import Yams

/// `sessions:` (sealed session ids) and `trusted_proxies:` (the load balancers in front).
extension PolicyReader {
    func sessions(_ node: Node, _ path: String) -> SessionSettings? {
        let problems = self.problems.count
        guard let section = self.section(node, path, allowed: ["keys", "max_age", "bind_client"]) else { return nil }
        var settings = SessionSettings()
        section.read(SessionSettings.integerSettings, into: &settings)
        settings.bindClient = section.bool("bind_client") ?? false
        if let keys = section["keys"] {
            let keysPath = section.childPath("keys")
            guard case .sequence(let list) = keys, !list.isEmpty else {
                self.report(keys, keysPath, "expected a list of {id, secret}, the sealing key first")
                return nil
            }
            var ids: Set<String> = []
            for (index, element) in list.enumerated() {
                let elementPath = "\(keysPath)[\(index)]"
                guard let key = self.section(element, elementPath, allowed: ["id", "secret"], required: ["id", "secret"]),
                      let id = key.nonEmptyString("id"), let secret = key.nonEmptyString("secret")
                else { continue }
                guard ids.insert(id).inserted else {
                    key.report("id", "key id '\(id)' appears twice")
                    continue
                }
                do {
                    settings.keys.append(try SessionKey(id: id, secret: secret))
                } catch {
                    key.report(error == .invalidID(id) ? "id" : "secret", error.description)
                }
            }
        }
        return self.problems.count == problems ? settings : nil
    }

    /// `trusted_proxies: [CIDR, ...]`.
    func trustedProxies(_ node: Node, _ path: String) -> TrustedProxies? {
        guard let list = self.stringList(node, path) else { return nil }
        var blocks: [CIDRBlock] = []
        for (index, text) in list.enumerated() {
            guard let block = CIDRBlock(text) else {
                self.report(node, "\(path)[\(index)]", "'\(text)' is not an IP address or a CIDR block (10.0.0.0/8, 2001:db8::/32)")
                return nil
            }
            blocks.append(block)
        }
        return TrustedProxies(blocks)
    }
}
