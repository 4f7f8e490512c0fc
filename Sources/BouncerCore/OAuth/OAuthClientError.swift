/// Why the gateway, as an OAuth client of an authorization server, could not get what it
/// asked for (an exchanged token, its own token, an introspection answer), or could not
/// authenticate at all. The `code` is stable (logs, metrics, tests); the `reason` is for the
/// log; a refusal carries the server's OAuth error (RFC 6749 5.2).
public struct OAuthClientError: CodedError {
    public enum Code: String, Sendable, Hashable {
        /// The client-assertion key in the policy is not a usable PEM private key.
        case keyInvalid = "key_invalid"
        /// The request could not be authenticated (no secret, the assertion not signed).
        case authenticationFailed = "authentication_failed"
        /// The server does not offer what is needed (no such endpoint, not the configured
        /// authentication method).
        case misconfigured
        /// Network failure, timeout, 5xx or 429, or the circuit breaker is open: try again later.
        case unavailable
        /// The server answered with an OAuth error: ``refusal``.
        case refused
    }

    public var code: Code
    public var reason: String
    /// The server's answer, for ``Code/refused``.
    public var refusal: TokenEndpointError?

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static func refused(_ refusal: TokenEndpointError) -> OAuthClientError {
        var error = OAuthClientError(.refused, refusal.description)
        error.refusal = refusal
        return error
    }

    /// Errors are the same when their codes (and refusals' OAuth error codes) are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code && lhs.refusal?.code == rhs.refusal?.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
