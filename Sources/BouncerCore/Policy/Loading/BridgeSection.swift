import Yams

/// `bridge:` (the protocol bridge for 2026-07-28 clients of legacy upstreams).
extension PolicyReader {
    func bridge(_ node: Node, _ path: String) -> BridgeSettings? {
        let problems = self.problems.count
        guard let section = self.section(node, path, allowed: ["enabled", "session_idle_seconds", "max_sessions", "input_timeout_seconds", "max_parked_calls", "keepalive_seconds", "replica"]) else {
            return nil
        }
        var settings = BridgeSettings()
        section.read(BridgeSettings.integerSettings, into: &settings)
        settings.enabled = section.bool("enabled") ?? true
        if section["replica"] != nil, let replica = section.nonEmptyString("replica") {
            if replica.utf8.count > 64 || !replica.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
                section.report("replica", "expected 1 to 64 letters, digits, '-', '_' or '.' (it travels in every requestState)")
            } else {
                settings.replica = replica
            }
        }
        return self.problems.count == problems ? settings : nil
    }
}
