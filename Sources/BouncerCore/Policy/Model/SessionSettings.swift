/// `sessions:`. Without keys the gateway makes a random one at start (sessions then do not
/// survive a restart or move between replicas).
public struct SessionSettings: Sendable {
    /// The first seals, all open.
    public var keys: [SessionKey] = []
    public var maxAgeSeconds: Int64 = 86_400
    public var bindClient = false

    public init() {}

    static let integerSettings: [IntegerSetting<SessionSettings>] = [
        IntegerSetting(key: "max_age", range: 60...31_536_000, field: .int64(\.maxAgeSeconds)),
    ]

    /// The sealer for these settings; `fallback` when there are no keys.
    public func sealer(fallback: @autoclosure () -> SessionKey) -> SessionSealer {
        SessionSealer(keys: self.keys.isEmpty ? [fallback()] : self.keys, maxAgeSeconds: self.maxAgeSeconds, bindClient: self.bindClient)
    }
}
