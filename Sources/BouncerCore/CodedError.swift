/// The gateway's error model: one error type per domain (tokens, authorization-server
/// documents, URIs, the gateway's OAuth client, outbound fetches, upstream exchanges), each
/// with a stable `code` for logs, metrics, audit records and tests, and a `reason` in words
/// for the log. Two errors are the same when their codes are: the reason is for people.
/// What a client is told is never the reason: a refusal becomes a ``GatewayRejection``, and
/// its response is written in ``GatewayRejection/response(resource:)`` alone.
public protocol CodedError: Error, Hashable, Sendable, CustomStringConvertible {
    associatedtype Code: RawRepresentable, Hashable, Sendable where Code.RawValue == String
    var code: Code { get }
    var reason: String { get }
}

extension CodedError {
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
    public var description: String { "\(self.code.rawValue): \(self.reason)" }
}
