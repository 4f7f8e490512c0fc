import Yams

/// `limits:`: every key is a whole number in a range (``GatewayLimits/settings``).
extension PolicyReader {
    func limits(_ node: Node, _ path: String) -> GatewayLimits {
        var limits = GatewayLimits()
        guard let section = self.section(node, path, allowed: Set(GatewayLimits.settings.map(\.key))) else { return limits }
        section.read(GatewayLimits.settings, into: &limits)
        return limits
    }
}
