/// The claim checks every verified caller goes through, whichever way its token was read: a
/// JWT's payload after its signature verified, or an RFC 7662 introspection answer. One
/// function, so the two paths cannot drift apart (introspection once skipped the `iat` and
/// malformed-`nbf` checks that JWTs got).
public enum ClaimChecks {
    /// Where the claims came from: what may be absent differs, nothing else does.
    public enum Source: Sendable, Hashable {
        /// A JWT access token (RFC 9068): `iss`, `aud` and `exp` are required.
        case jwt
        /// An introspection answer that said `active: true`. `iss` may be absent (the
        /// authorization server answered for itself); an absent `exp` becomes
        /// `now + maxLifetimeSeconds`, so a cache entry never lives forever.
        case introspection(maxLifetimeSeconds: Int64)
    }

    /// Checks `claims` against `requirements` at `now` (seconds since the epoch) and returns what
    /// the gateway keeps of them.
    public static func validate(_ claims: JSONValue, source: Source, requirements: TokenRequirements, now: Int64) throws(TokenError) -> AccessTokenClaims {
        let label = source == .jwt ? "" : "introspection: "
        let issuer: String
        switch claims["iss"] {
        case .string(let value): issuer = value
        case nil where source != .jwt: issuer = requirements.issuer
        default: throw TokenError(.missingClaim, "\(label)no iss")
        }
        guard issuer == requirements.issuer else { throw TokenError(.wrongIssuer, "\(label)iss \(issuer) is not \(requirements.issuer)") }

        // An introspection answer without `aud` names no resource: the gateway checks the
        // audience itself (RFC 7662 leaves it to the resource server).
        guard let audiences = TokenRequirements.audiences(in: claims) ?? (source == .jwt ? nil : []) else {
            throw TokenError(.missingClaim, "no aud")
        }
        guard audiences.contains(where: { requirements.accepts(audience: $0) }) else {
            throw TokenError(.wrongAudience, "\(label)aud \(audiences) does not include \(requirements.audience)")
        }

        let expiresAt: Int64
        switch (try self.numericDate(claims, "exp", rounding: .down), source) {
        case (let value?, _): expiresAt = value
        case (nil, .introspection(let maxLifetime)): expiresAt = now + maxLifetime
        case (nil, .jwt): throw TokenError(.missingClaim, "no numeric exp")
        }
        guard now < expiresAt + requirements.leewaySeconds else {
            throw TokenError(.expired, "\(label)expired at \(expiresAt), now \(now)")
        }
        let notBefore = try self.numericDate(claims, "nbf", rounding: .up)
        if let notBefore, now + requirements.leewaySeconds < notBefore {
            throw TokenError(.notYetValid, "\(label)not before \(notBefore), now \(now)")
        }
        let issuedAt = try self.numericDate(claims, "iat", rounding: .up)
        if let issuedAt, issuedAt > now + requirements.leewaySeconds {
            throw TokenError(.notYetValid, "\(label)issued in the future (\(issuedAt)), now \(now)")
        }
        for required in requirements.requiredClaims {
            guard let value = claims[required.name] else { throw TokenError(.missingClaim, "\(label)no \(required.name) (a required claim)") }
            guard required.isSatisfied(by: value) else {
                throw TokenError(.wrongClaim, "\(label)\(required.name) is not \(required.values.joined(separator: " or "))")
            }
        }
        let subject: String?
        switch claims[requirements.subjectClaim] {
        case nil, .null?: subject = nil
        case .string(let value)?: subject = value
        default: throw TokenError(.malformed, "\(label)\(requirements.subjectClaim) (the subject claim) is not a string")
        }
        let clientID = claims["client_id"]?.stringValue ?? (source == .jwt ? claims["azp"]?.stringValue : nil)
        let confirmation = try TokenConfirmation.read(claims["cnf"])
        return AccessTokenClaims(
            issuer: issuer,
            subject: subject,
            clientID: clientID,
            audiences: audiences,
            expiresAt: expiresAt,
            notBefore: notBefore,
            issuedAt: issuedAt,
            tokenID: claims["jti"]?.stringValue,
            scopes: requirements.scopes(in: claims),
            confirmation: confirmation
        )
    }

    /// A NumericDate claim (RFC 7519 2: seconds since the epoch, fractions allowed), rounded
    /// to whole seconds in the direction that makes the check stricter: `exp` down, `nbf`
    /// and `iat` up. Absent: `nil`. Present but not a finite number within ±2^53 seconds: the
    /// token is malformed.
    static func numericDate(_ claims: JSONValue, _ name: String, rounding: FloatingPointRoundingRule) throws(TokenError) -> Int64? {
        guard let value = claims[name] else { return nil }
        if let integer = value.int64Value { return integer }
        guard case .number(let text) = value, let double = Double(text), double.isFinite, abs(double) < 9.0e15 else {
            throw TokenError(.malformed, "\(name) is not a NumericDate")
        }
        return Int64(double.rounded(rounding))
    }
}
