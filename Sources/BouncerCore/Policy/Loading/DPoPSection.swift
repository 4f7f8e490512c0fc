import Yams

/// `dpop:` (RFC 9449 proofs) and each resource's `sender_constraint`.
extension PolicyReader {
    func dpop(_ node: Node, _ path: String) -> DPoPSettings? {
        let problems = self.problems.count
        guard let section = self.section(node, path, allowed: ["algorithms", "iat_window_seconds", "replay_cache_entries", "nonce", "nonce_lifetime_seconds"]) else {
            return nil
        }
        var settings = DPoPSettings()
        section.read(DPoPSettings.integerSettings, into: &settings)
        settings.nonce = section.bool("nonce") ?? false
        if let node = section["algorithms"] {
            let listPath = section.childPath("algorithms")
            if let names = self.stringList(node, listPath) {
                var algorithms: [JWSAlgorithm] = []
                for name in names {
                    guard let algorithm = JWSAlgorithm(rawValue: name) else {
                        self.report(node, listPath, "'\(name)' is not an asymmetric JWS algorithm (ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA); none and HMAC are never accepted")
                        continue
                    }
                    if !algorithms.contains(algorithm) { algorithms.append(algorithm) }
                }
                if algorithms.isEmpty, !names.isEmpty || self.problems.count == problems { self.report(node, listPath, "needs at least one algorithm") }
                settings.algorithms = algorithms
            }
        }
        return self.problems.count == problems ? settings : nil
    }
}
