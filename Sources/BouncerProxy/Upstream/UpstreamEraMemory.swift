import BouncerCore
import NIOConcurrencyHelpers
import NIOCore

/// What the gateway knows of one upstream's MCP era: fixed by `upstream_protocol`, or learnt
/// from `server/discover` (``Gateway/discoverUpstreamEras()``). Only a conclusive answer is
/// remembered; `detail` says what the era rests on (the versions, or why it is unknown).
package final class UpstreamEraMemory: Sendable {
    private let state: NIOLockedValueBox<(era: UpstreamEra, detail: String)>
    /// When the upstream was last asked again after a contradiction.
    private let lastAsked = NIOLockedValueBox<NIODeadline?>(nil)

    /// The least time between two asks after contradictions: an upstream whose answers keep
    /// contradicting (or that stays unreachable) is not asked on every request.
    static let reaskInterval = TimeAmount.seconds(60)

    init(_ setting: UpstreamProtocol) {
        let era = UpstreamEra(setting)
        self.state = NIOLockedValueBox((era, setting == .auto ? "not asked yet" : "upstream_protocol: \(setting.rawValue)"))
    }

    package var era: UpstreamEra { self.state.withLockedValue { $0.era } }
    package var detail: String { self.state.withLockedValue { $0.detail } }

    /// Whether to ask again now, after a contradiction; takes the turn when it says yes.
    func takeReaskTurn(now: NIODeadline) -> Bool {
        self.lastAsked.withLockedValue { last in
            if let last, now - last < Self.reaskInterval { return false }
            last = now
            return true
        }
    }

    /// Takes in a discovery's verdict; returns the era when it changed what the gateway knew.
    func learn(_ verdict: UpstreamDiscovery.Verdict) -> UpstreamEra? {
        self.state.withLockedValue { state in
            let before = state.era
            switch verdict {
            case .modern(let versions):
                state = (.modern, "server/discover: \(versions.joined(separator: ", "))")
            case .legacy(let reason):
                state = (.legacy, reason)
            case .inconclusive(let reason):
                // Never remembered: the era stays what it was, the reason is shown.
                state.detail = state.era == .unknown ? "server/discover inconclusive: \(reason)" : state.detail
                return nil
            }
            return state.era == before ? nil : state.era
        }
    }
}
