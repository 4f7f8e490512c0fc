/// The time of day, injected: the one wall clock that sessions (their age), audit records
/// (`ts`), tokens (`exp`, `nbf`) and tracing read, so that a test can set it. BouncerCore
/// reads no clock itself; the proxy passes the system's (`WallClock.system`).
public struct WallClock: Sendable {
    private let read: @Sendable () -> Int64

    /// - Parameter milliseconds: milliseconds since the Unix epoch, now.
    public init(milliseconds: @escaping @Sendable () -> Int64) {
        self.read = milliseconds
    }

    /// A clock stopped at `milliseconds` since the epoch.
    public static func fixed(milliseconds: Int64) -> WallClock {
        WallClock { milliseconds }
    }

    /// Milliseconds since the Unix epoch.
    public func milliseconds() -> Int64 { self.read() }

    /// Seconds since the Unix epoch.
    public func seconds() -> Int64 { self.read() / 1000 }
}
