/// Why a URI was refused: as a resource or endpoint URL (``CanonicalURI``), or as a
/// `resources/read` URI that cannot be normalised safely (``ResourceURI``). The `code` is
/// stable (logs, tests); the `reason` describes the problem in words. A ``CanonicalURI``
/// reason quotes the text (it comes from the policy); a ``ResourceURI`` reason never does
/// (it comes from a client and may be shown to it).
public struct URIError: CodedError {
    public enum Code: String, Sendable, Hashable {
        /// Not `scheme://authority...` (or, for a resource URI, no scheme at all).
        case notAbsolute = "not_absolute"
        /// A scheme other than http or https where a URL is fetched or is an audience.
        case scheme
        /// A fragment or query where the URI is an identifier.
        case fragment
        case query
        /// User information, an unclosed IPv6 literal, or bytes after it.
        case authority
        case host
        case port
        /// Whitespace, a control character or a backslash, raw or percent-encoded.
        case characters
        /// A `%` not followed by two hex digits.
        case malformedEncoding = "malformed_encoding"
        /// `%2F`: a separator an upstream that decodes would see.
        case encodedSeparator = "encoded_separator"
        /// `%25` before two hex digits: decoded twice, it is another URI.
        case doubleEncoding = "double_encoding"
        /// Dot segments that climb above the root, or that change the path's form.
        case dotSegments = "dot_segments"
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}
