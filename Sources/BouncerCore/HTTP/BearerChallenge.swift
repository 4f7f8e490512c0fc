/// A `WWW-Authenticate: Bearer ...` challenge (RFC 6750 section 3, RFC 9728 section 5.1).
public struct BearerChallenge: Sendable, Hashable {
    /// RFC 6750 section 3.1 error codes.
    public enum ErrorCode: String, Sendable, Hashable {
        case invalidRequest = "invalid_request"
        case invalidToken = "invalid_token"
        case insufficientScope = "insufficient_scope"
    }

    public var resourceMetadata: String
    public var scopes: [String]
    /// `nil` when the request carried no token at all (RFC 6750 section 3.1).
    public var error: ErrorCode?
    public var errorDescription: String?

    public init(resourceMetadata: String, scopes: [String], error: ErrorCode? = nil, errorDescription: String? = nil) {
        self.resourceMetadata = resourceMetadata
        self.scopes = scopes
        self.error = error
        self.errorDescription = errorDescription
    }

    /// The header value. Every parameter appears at most once and is a quoted string
    /// whose content has no `"` or `\` (the descriptions are sanitised, the rest are
    /// validated when the policy loads).
    public var headerValue: String {
        var params: [String] = []
        params.append("resource_metadata=\"\(Self.sanitise(self.resourceMetadata))\"")
        if !self.scopes.isEmpty {
            params.append("scope=\"\(Self.sanitise(self.scopes.joined(separator: " ")))\"")
        }
        if let error {
            params.append("error=\"\(error.rawValue)\"")
        }
        if let errorDescription, !errorDescription.isEmpty {
            params.append("error_description=\"\(Self.sanitise(errorDescription))\"")
        }
        return "Bearer " + params.joined(separator: ", ")
    }

    /// Keeps %x20-21 / %x23-5B / %x5D-7E (RFC 6750 error_description), drops the rest.
    static func sanitise(_ text: String) -> String {
        String(decoding: text.utf8.filter { $0 == 0x20 || $0 == 0x21 || (0x23...0x5B).contains($0) || (0x5D...0x7E).contains($0) }, as: UTF8.self)
    }
}

/// A `WWW-Authenticate: DPoP ...` challenge (RFC 9449 §7.1): the algorithms the resource takes
/// in proofs, and the error when a request was refused.
public struct DPoPChallenge: Sendable, Hashable {
    public var algorithms: Set<JWSAlgorithm>
    public var error: String?
    public var errorDescription: String?
    /// For `insufficient_scope`: what the operation needs, and where the metadata is.
    public var scopes: [String]
    public var resourceMetadata: String?

    public init(algorithms: Set<JWSAlgorithm>, error: String? = nil, errorDescription: String? = nil, scopes: [String] = [], resourceMetadata: String? = nil) {
        self.algorithms = algorithms
        self.error = error
        self.errorDescription = errorDescription
        self.scopes = scopes
        self.resourceMetadata = resourceMetadata
    }

    public var headerValue: String {
        var params: [String] = []
        if let resourceMetadata { params.append("resource_metadata=\"\(BearerChallenge.sanitise(resourceMetadata))\"") }
        if !self.scopes.isEmpty { params.append("scope=\"\(BearerChallenge.sanitise(self.scopes.joined(separator: " ")))\"") }
        if let error { params.append("error=\"\(BearerChallenge.sanitise(error))\"") }
        if let errorDescription, !errorDescription.isEmpty { params.append("error_description=\"\(BearerChallenge.sanitise(errorDescription))\"") }
        params.append("algs=\"\(self.algorithms.map(\.rawValue).sorted().joined(separator: " "))\"")
        return "DPoP " + params.joined(separator: ", ")
    }
}
