import BouncerCore
import NIOCore

extension Gateway {
    /// Asks each `upstream_protocol: auto` upstream `server/discover` and remembers its era
    /// when the answer says (``UpstreamDiscovery``); an inconclusive answer (401, 5xx, no
    /// answer...) is reported and not remembered. Called when the gateway starts and after a
    /// reload. An upstream that takes an exchanged token is not asked: there is no user yet.
    package func discoverUpstreamEras() async {
        await withTaskGroup(of: Void.self) { group in
            for resource in self.resources where resource.policy.upstreamProtocol == .auto {
                group.addTask { await self.discoverEra(of: resource) }
            }
        }
    }

    /// An answer from `resource`'s upstream contradicted its era
    /// (``UpstreamDiscovery/contradicts(era:requestVersion:status:)``): asks again, in the
    /// background, at most once a minute.
    func rediscoverEra(of resource: ResolvedResource) {
        guard resource.policy.upstreamProtocol == .auto, resource.era.takeReaskTurn(now: .now()) else { return }
        Task { await self.discoverEra(of: resource) }
    }

    func discoverEra(of resource: ResolvedResource) async {
        let verdict: UpstreamDiscovery.Verdict
        if let client = self.upstreamClient(for: resource) {
            do {
                let response = try await client.discover()
                verdict = UpstreamDiscovery.judge(status: response.status, contentType: response.header("Content-Type"), body: response.body)
            } catch {
                verdict = .inconclusive(reason: error.reason)
            }
        } else {
            verdict = .inconclusive(reason: "the upstream takes an exchanged token: not asked without a user")
        }
        let changed = resource.era.learn(verdict)
        self.events.upstreamEra(resource: resource.policy.path, era: resource.era.era, detail: resource.era.detail, changed: changed != nil)
    }
}
