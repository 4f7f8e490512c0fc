import NIOConcurrencyHelpers

/// How a bridged request's client leaving reaches the upstream: the bridge arms it with what
/// ends the upstream call it waits on (close the connection, `notifications/cancelled`, as
/// 2026-07-28 defines for a closed response stream); the connection's handler fires it when the
/// client goes while the answer is pending. A call parked for input is not cancelled by this:
/// the client left on purpose, to answer and retry.
final class BridgeCancellation: Sendable {
    private let state = NIOLockedValueBox<(fired: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    /// `action` runs if the client leaves while it is armed (at once if it left already).
    func arm(_ action: @escaping @Sendable () -> Void) {
        let fired = self.state.withLockedValue { state in
            if !state.fired { state.action = action }
            return state.fired
        }
        if fired { action() }
    }

    /// The upstream call is over (answered or parked): nothing to cancel.
    func disarm() {
        self.state.withLockedValue { $0.action = nil }
    }

    /// The client left.
    func fire() {
        let action = self.state.withLockedValue { state in
            state.fired = true
            defer { state.action = nil }
            return state.action
        }
        action?()
    }
}
