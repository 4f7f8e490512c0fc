/// RFC 7662 token introspection: the request fields and the answer, read into the same
/// claims a verified JWT gives, with the gateway's own audience and issuer checks.
public enum Introspection {
    public static func formFields(token: String) -> [(String, String)] {
        [("token", token), ("token_type_hint", "access_token")]
    }

    public enum Outcome: Sendable, Hashable {
        case active(AccessTokenClaims)
        /// `active: false` (revoked, expired, unknown), or active but not for this resource.
        case rejected(TokenError)
    }

    /// Reads a 200 introspection response.
    ///
    /// - Parameters:
    ///   - now: seconds since the epoch.
    ///   - maxLifetimeSeconds: used as `exp` when the response has none, so a cache entry
    ///     never lives forever.
    public static func parse(body: [UInt8], requirements: TokenRequirements, now: Int64, maxLifetimeSeconds: Int64) -> Result<Outcome, TokenEndpointError> {
        guard let document = try? JSONParser(maxDepth: 16).parse(body), document.objectValue != nil else {
            return .failure(TokenEndpointError(code: "invalid_response", description_: "the introspection response is not a JSON object", status: 200))
        }
        guard case .bool(let active) = document["active"] else {
            return .failure(TokenEndpointError(code: "invalid_response", description_: "no boolean \"active\"", status: 200))
        }
        guard active else { return .success(.rejected(TokenError(.inactive, "introspection: active=false"))) }
        do {
            return .success(.active(try ClaimChecks.validate(document, source: .introspection(maxLifetimeSeconds: maxLifetimeSeconds), requirements: requirements, now: now)))
        } catch {
            return .success(.rejected(error))
        }
    }
}
