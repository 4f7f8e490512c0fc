internal import CBouncerOpenSSL

/// A TLS failure. `code` is stable (logs, metrics, tests); `details` carries OpenSSL's error
/// queue for the log, never for the peer.
public struct TLSError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case configuration
            case handshakeFailed = "handshake_failed"
            case handshakeTimeout = "handshake_timeout"
            case uncleanShutdown = "unclean_shutdown"
            case closeNotifyTimeout = "close_notify_timeout"
            case readFailed = "read_failed"
            case writeFailed = "write_failed"
        }

        private let base: Base

        /// The certificate, key, CA file or options could not be loaded or do not fit together.
        public static let configuration = Code(base: .configuration)
        public static let handshakeFailed = Code(base: .handshakeFailed)
        public static let handshakeTimeout = Code(base: .handshakeTimeout)
        /// The peer closed the TCP connection without a close_notify alert: data may have been
        /// truncated by an attacker.
        public static let uncleanShutdown = Code(base: .uncleanShutdown)
        public static let closeNotifyTimeout = Code(base: .closeNotifyTimeout)
        public static let readFailed = Code(base: .readFailed)
        public static let writeFailed = Code(base: .writeFailed)

        public var description: String { self.base.rawValue }
    }

    public var code: Code
    public var reason: String
    /// OpenSSL's error queue at the time of failure, most recent last.
    public var details: [String]

    public init(_ code: Code, _ reason: String, details: [String] = []) {
        self.code = code
        self.reason = reason
        self.details = details
    }

    /// Drains OpenSSL's thread-local error queue into a `TLSError`.
    static func fromQueue(_ code: Code, _ reason: String) -> TLSError {
        TLSError(code, reason, details: drainErrorQueue())
    }

    public var description: String {
        self.details.isEmpty ? "\(self.code): \(self.reason)" : "\(self.code): \(self.reason) [\(self.details.joined(separator: "; "))]"
    }

    public static func == (lhs: TLSError, rhs: TLSError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

/// Empties OpenSSL's per-thread error queue, returning its messages. Called before every
/// OpenSSL call whose errors we read, so stale errors from another connection on the same
/// thread are never attributed to this one.
func drainErrorQueue() -> [String] {
    var messages: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return messages
}
