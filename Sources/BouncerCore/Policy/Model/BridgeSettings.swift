/// `bridge:`: the protocol bridge, which serves 2026-07-28 clients from legacy upstreams
/// (`server/discover` answered by the gateway, requests forwarded on upstream sessions it
/// holds, server-to-client requests turned into multi round-trip results).
public struct BridgeSettings: Sendable, Equatable {
    /// Off: a 2026-07-28 request to a legacy upstream gets a 400 with `-32601`, which makes a
    /// dual-era client fall back to `initialize`.
    public var enabled = true
    /// A held upstream session unused this long is ended (DELETE).
    public var sessionIdleSeconds = 600
    /// Held upstream sessions per replica; when full, the one unused longest is ended.
    public var maxSessions = 1000
    /// How long a parked upstream call waits for the client's retry with its input.
    public var inputTimeoutSeconds = 300
    /// Parked calls per replica waiting for input.
    public var maxParkedCalls = 1000
    /// A `subscriptions/listen` stream with nothing to say gets a comment this often.
    public var keepaliveSeconds = 15
    /// This replica's name in the `requestState`s it seals (a retry that reaches another
    /// replica is told where its call is); nil: the host name and process id.
    public var replica: String?

    public init() {}

    public static let integerSettings: [IntegerSetting<BridgeSettings>] = [
        IntegerSetting(key: "session_idle_seconds", range: 1...86_400, field: .int(\.sessionIdleSeconds)),
        IntegerSetting(key: "max_sessions", range: 1...1_000_000, field: .int(\.maxSessions)),
        IntegerSetting(key: "input_timeout_seconds", range: 1...3600, field: .int(\.inputTimeoutSeconds)),
        IntegerSetting(key: "max_parked_calls", range: 1...1_000_000, field: .int(\.maxParkedCalls)),
        IntegerSetting(key: "keepalive_seconds", range: 1...300, field: .int(\.keepaliveSeconds)),
    ]
}
