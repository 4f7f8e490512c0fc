import Crypto
import W3CTraceContext

/// `audit.arguments: full`: what is kept of tool arguments.
public enum AuditRedaction {
    public static let placeholder = "[redacted]"

    /// Key fragments that mark a value as a secret, matched in the key lower-cased with `-`,
    /// `_`, `.` and spaces removed (`API-Key`, `api_key` and `apiKey` all read `apikey`).
    public static let secretKeyFragments = [
        "password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey", "privatekey",
        "authorization", "credential", "cookie", "session", "signature", "bearer",
    ]

    public static func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            var redacted: [String: JSONValue] = [:]
            for (key, member) in members {
                redacted[key] = self.isSecretKey(key) ? .string(self.placeholder) : self.redact(member)
            }
            return .object(redacted)
        case .array(let elements):
            return .array(elements.map(self.redact))
        case .string(let text):
            return self.looksLikeCredential(text) ? .string(self.placeholder) : value
        case .null, .bool, .number:
            return value
        }
    }

    public static func isSecretKey(_ key: String) -> Bool {
        let folded = String(key.lowercased().filter { $0 != "-" && $0 != "_" && $0 != "." && $0 != " " })
        return self.secretKeyFragments.contains { folded.contains($0) }
    }

    /// A value that carries a credential whatever its key: `Bearer ...`, `Basic ...`, or a JWS
    /// compact serialisation (`eyJ...` . ... . ...).
    public static func looksLikeCredential(_ text: String) -> Bool {
        let lowered = text.prefix(7).lowercased()
        if lowered.hasPrefix("bearer ") || lowered.hasPrefix("basic ") { return true }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 3 && text.hasPrefix("eyJ") && parts.allSatisfy { part in
            !part.isEmpty && part.utf8.allSatisfy { Base64URL.isAlphabet($0) }
        }
    }
}
