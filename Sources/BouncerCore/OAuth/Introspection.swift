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
        if let issuer = document["iss"]?.stringValue, issuer != requirements.issuer {
            return .success(.rejected(TokenError(.wrongIssuer, "introspection: iss \(issuer) is not \(requirements.issuer)")))
        }
        // The gateway checks the audience itself (RFC 7662 leaves it to the resource server).
        let audiences = TokenRequirements.audiences(in: document) ?? []
        guard audiences.contains(where: { requirements.audience.isNamed(by: $0) }) else {
            return .success(.rejected(TokenError(.wrongAudience, "introspection: aud \(audiences) does not include \(requirements.audience)")))
        }
        let expiresAt = document["exp"]?.int64Value ?? now + maxLifetimeSeconds
        guard now < expiresAt + requirements.leewaySeconds else {
            return .success(.rejected(TokenError(.expired, "introspection: expired at \(expiresAt)")))
        }
        if let notBefore = document["nbf"]?.int64Value, now + requirements.leewaySeconds < notBefore {
            return .success(.rejected(TokenError(.notYetValid, "introspection: not before \(notBefore)")))
        }
        let scopes = requirements.scopes(in: document)
        return .success(.active(AccessTokenClaims(
            issuer: document["iss"]?.stringValue ?? requirements.issuer,
            subject: document["sub"]?.stringValue,
            clientID: document["client_id"]?.stringValue,
            audiences: audiences,
            expiresAt: expiresAt,
            notBefore: document["nbf"]?.int64Value,
            issuedAt: document["iat"]?.int64Value,
            tokenID: document["jti"]?.stringValue,
            scopes: scopes
        )))
    }
}
