/// The elicitation guard's detector: does a form ask the user for a credential? MCP forbids
/// servers to request sensitive information (passwords, API keys, payment data) through
/// elicitation; the gateway enforces it on their behalf. A property counts as a credential
/// field when its name, title or description names one (``phrases``, ``words``), when it is
/// `writeOnly`, or when its `format` is `password`. Nested schemas (`properties`, `items`,
/// `anyOf`/`oneOf`/`allOf`, `additionalProperties`) are searched too: a form does not get past
/// by wrapping the field in an object.
public enum CredentialFields {
    /// Matched inside the text folded to lower-case letters and digits (`API-Key`, `api_key`,
    /// `apiKey` and `Api Key` all read `apikey`).
    public static let phrases = [
        "password", "passwd", "passphrase", "passcode", "secret", "token", "apikey", "accesskey", "privatekey", "secretkey",
        "credential", "clientsecret", "bearer", "sessioncookie", "cardnumber", "creditcard", "debitcard", "cardverification",
        "securitycode", "socialsecurity", "onetimepassword", "onetimecode", "verificationcode", "authenticationcode",
        "authcode", "mfacode", "2facode", "seedphrase", "recoveryphrase", "mnemonic",
    ]
    /// Matched as whole words only (`pin` but not `shipping`, `otp` but not `hotpot`).
    public static let words: Set<String> = ["pin", "otp", "totp", "hotp", "cvv", "cvc", "cvv2", "ssn", "2fa", "mfa", "iban", "pwd"]

    /// One field that asks for a credential: where it is in the schema and why it counts.
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(self.path): \(self.reason)" }
    }

    /// Every credential field of an elicitation's `requestedSchema`.
    public static func findings(in schema: JSONValue) -> [Finding] {
        var found: [Finding] = []
        self.search(schema, path: "requestedSchema", name: nil, into: &found)
        return found
    }

    private static func search(_ schema: JSONValue, path: String, name: String?, into found: inout [Finding]) {
        guard case .object(let members) = schema else { return }
        if let reason = self.reason(name: name, members: members) { found.append(Finding(path: path, reason: reason)) }
        if case .object(let properties)? = members["properties"] {
            for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
                self.search(value, path: "\(path).properties.\(key)", name: key, into: &found)
            }
        }
        for key in ["items", "additionalProperties", "not"] {
            if let nested = members[key] { self.search(nested, path: "\(path).\(key)", name: name, into: &found) }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if case .array(let options)? = members[key] {
                for (index, option) in options.enumerated() { self.search(option, path: "\(path).\(key)[\(index)]", name: name, into: &found) }
            }
        }
    }

    /// Why one schema (named `name` in its parent) is a credential field, or nil.
    private static func reason(name: String?, members: [String: JSONValue]) -> String? {
        if members["writeOnly"] == .bool(true) { return "writeOnly" }
        if members["format"]?.stringValue?.lowercased() == "password" { return "format password" }
        for (label, text) in [("name", name), ("title", members["title"]?.stringValue), ("description", members["description"]?.stringValue)] {
            guard let text, let match = self.match(text) else { continue }
            return "\(label) mentions '\(match)'"
        }
        return nil
    }

    /// The phrase or word of the lists that `text` contains, if any.
    public static func match(_ text: String) -> String? {
        let folded = String(text.lowercased().unicodeScalars.filter { $0.properties.isAlphabetic || ("0"..."9").contains($0) }.map(Character.init))
        if let phrase = self.phrases.first(where: { folded.contains($0) }) { return phrase }
        // A word spelled out letter by letter (`c-v-v`) is the word.
        if self.words.contains(folded) { return folded }
        return self.wordsOf(text).first { self.words.contains($0) }
    }

    /// Words of a name or a sentence: split at anything but letters and digits, and at
    /// lower-to-upper case changes (`cardPin` -> `card`, `pin`).
    public static func wordsOf(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        var previousLower = false
        for character in text {
            let isWordCharacter = character.isLetter || character.isNumber
            if !isWordCharacter || (character.isUppercase && previousLower) {
                if !current.isEmpty { words.append(current.lowercased()) }
                current = ""
            }
            if isWordCharacter { current.append(character) }
            previousLower = character.isLowercase
        }
        if !current.isEmpty { words.append(current.lowercased()) }
        return words
    }
}
