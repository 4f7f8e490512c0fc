import BouncerCore

/// The policy `mcp-bouncer init` writes for one legacy server: one resource, a method rule
/// for what the server offers, tool scopes proposed from the tools' annotations, and comments
/// that say what to review. Pure: the server's listings come in, YAML text goes out.
public struct PolicyDraft: Sendable {
    public var upstream: String
    /// The resource's public path, `/<name>/mcp`.
    public var path: String
    public var publicURL: CanonicalURI
    public var issuer: String?
    /// The tool pin file the policy names (written beside it), nil for none.
    public var pinsFile: String?
    public var serverName: String?
    public var tools: [JSONValue] = []
    public var prompts: [JSONValue] = []
    public var resources: [JSONValue] = []
    public var resourceTemplates: [JSONValue] = []
    /// When the listing was taken, as written in the header comment.
    public var date: String

    public init(upstream: String, path: String, publicURL: CanonicalURI, issuer: String?, pinsFile: String?, date: String) {
        self.upstream = upstream
        self.path = path
        self.publicURL = publicURL
        self.issuer = issuer
        self.pinsFile = pinsFile
        self.date = date
    }

    /// The scope prefix: the first segment of the path (`/jira/mcp` -> `jira`).
    public var scopePrefix: String {
        let first = self.path.split(separator: "/").first.map(String.init) ?? "mcp"
        let cleaned = String(first.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == ".") })
        return cleaned.isEmpty ? "mcp" : cleaned
    }

    /// The path for `--path`'s default: `/<server name>/mcp`, or `/mcp`.
    public static func defaultPath(serverName: String?) -> String {
        let name = (serverName ?? "").lowercased().unicodeScalars.map { scalar -> Character in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)) ? Character(scalar) : "-"
        }
        let slug = String(name).split(separator: "-").joined(separator: "-")
        return slug.isEmpty ? "/mcp" : "/\(slug)/mcp"
    }

    /// The access a tool's annotations suggest: `read` (readOnlyHint), `admin`
    /// (destructiveHint, unless read-only), otherwise `write` (the MCP default for a tool
    /// without annotations is destructive and not read-only: `write` is the least a reviewer
    /// must confirm).
    public enum Access: String, Sendable {
        case read, write, admin
    }

    public static func access(of tool: JSONValue) -> (access: Access, why: String) {
        let annotations = tool["annotations"]
        if annotations?["readOnlyHint"] == .bool(true) { return (.read, "readOnlyHint") }
        if annotations?["destructiveHint"] == .bool(true) { return (.admin, "destructiveHint") }
        if annotations?["destructiveHint"] == .bool(false) { return (.write, "destructiveHint: false") }
        return (.write, "no annotation: REVIEW")
    }

    func scope(_ access: Access) -> String { "\(self.scopePrefix):\(access.rawValue)" }

    /// The policy file's text.
    public var yaml: String {
        var out = """
            # mcp-bouncer policy written by `mcp-bouncer init` from \(Self.comment(self.upstream)) on \(Self.comment(self.date)).
            # REVIEW before use: the scopes below are proposals from the tools' annotations (hints the
            # server gives about itself, not guarantees), and every tool the server may add later is
            # denied until it is listed here. Check it with: mcp-bouncer check <this file>
            # Reference: policies/README.md; identity providers: docs/identity-providers.md

            """
        if ["127.0.0.1", "localhost", "[::1]"].contains(self.publicURL.host) {
            out += "listen: 127.0.0.1:\(self.publicURL.effectivePort)\n"
        } else {
            // Behind a load balancer (or add a tls: block and listen on the public port).
            out += "# A load balancer in front terminates TLS for public_url; or add a tls: block (policies/README.md).\n"
            out += "listen: 0.0.0.0:8080\n"
        }
        out += "public_url: \(Self.value(self.publicURL.description))\n\n"
        out += "authorization_servers:\n  idp:\n"
        if let issuer = self.issuer {
            out += "    issuer: \(Self.value(issuer))\n"
        } else {
            out += "    # REVIEW: your identity provider's issuer (no --issuer was given).\n    issuer: https://login.example.com\n"
        }
        out += "    # Identity providers without RFC 8707 need accepted_audiences on the resource, and maybe\n"
        out += "    # scope_claims / subject_claim / required_claims here: see docs/identity-providers.md.\n\n"
        out += "resources:\n"
        out += "  - path: \(Self.value(self.path))\n"
        if let name = self.serverName { out += "    name: \(Self.value(name))\n" }
        out += "    authorization_server: idp\n"
        out += "    scopes_supported: [\(self.scope(.read))]\n"
        out += "    upstream: \(Self.value(self.upstream))\n"
        out += "    # If the server needs a credential of its own: upstream_credentials (static header or token exchange).\n"
        if let pins = self.pinsFile {
            out += "    # The tool definitions as listed now (mcp-bouncer pin): a changed definition is blocked.\n"
            out += "    tool_pins: \(Self.value(pins))\n"
        }
        out += "    methods:\n"
        out += "      initialize: []\n      notifications/*: []\n      ping: []\n"
        out += "      tools/list: [\(self.scope(.read))]\n"
        let toolNames = self.tools.compactMap { $0["name"]?.stringValue }
        for name in toolNames where !Self.isLiteral(name) {
            out += "      # REVIEW: tool \(Self.quoted(name)) is not listed: a policy reads '*' as a wildcard, an empty name as none, drops a byte-order mark, and takes no key over 1024 characters\n"
        }
        let literalTools = self.tools.filter { ($0["name"]?.stringValue).map(Self.isLiteral) ?? false }
        if literalTools.isEmpty {
            out += "      # No tool to list: tools/call is denied.\n"
        } else {
            out += "      tools/call:\n"
            let width = literalTools.compactMap { $0["name"]?.stringValue }.map { Self.quoted($0).count }.max() ?? 0
            for tool in literalTools {
                guard let name = tool["name"]?.stringValue else { continue }
                let (access, why) = Self.access(of: tool)
                let key = Self.quoted(name) + ":"
                // Padded by characters (Foundation's padding counts UTF-16 units and would cut the colon).
                out += "        \(key)\(String(repeating: " ", count: max(0, width + 1 - key.count))) [\(self.scope(access))]   # \(why)\n"
            }
        }
        let promptNames = self.prompts.compactMap { $0["name"]?.stringValue }.filter(Self.isLiteral)
        if !promptNames.isEmpty {
            out += "      prompts/list: [\(self.scope(.read))]\n      prompts/get:\n"
            for name in promptNames { out += "        \(Self.quoted(name)): [\(self.scope(.read))]\n" }
        }
        let resourceURIs = self.resources.compactMap { $0["uri"]?.stringValue }.filter(Self.isLiteral)
        let templates = self.resourceTemplates.compactMap { $0["uriTemplate"]?.stringValue }
        // {variables} become a trailing glob: the rule covers what the template names.
        let templateRules: [(key: String, template: String)] = templates.compactMap { template in
            guard let brace = template.firstIndex(of: "{") else { return Self.isLiteral(template) ? (template, template) : nil }
            let prefix = String(template[..<brace])
            return prefix.contains("://") && !prefix.contains("*") && Self.fitsAKey(prefix + "*") ? (prefix + "*", template) : nil
        }
        if !self.resources.isEmpty || !templates.isEmpty {
            out += "      resources/list: [\(self.scope(.read))]\n"
            if !templates.isEmpty { out += "      resources/templates/list: [\(self.scope(.read))]\n" }
        }
        if !resourceURIs.isEmpty || !templateRules.isEmpty {
            out += "      resources/read:\n"
            for uri in resourceURIs { out += "        \(Self.quoted(uri)): [\(self.scope(.read))]\n" }
            for rule in templateRules { out += "        \(Self.quoted(rule.key)): [\(self.scope(.read))]   # template \(Self.comment(rule.template))\n" }
        }
        out += "      # anything not listed is denied\n"
        return out
    }

    /// Text for the end of a comment line: one line, printable.
    static func comment(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value != 0x7F ? Character($0) : "?" })
    }

    /// Whether a name can be a rule key that matches itself alone (policy keys read `*` as a
    /// wildcard).
    /// A byte-order mark is dropped when it leads a YAML value, so a name with one cannot be
    /// written either.
    /// YAML reads a key written on its line (an implicit key) only up to 1024 characters
    /// (YAML 1.2, 7.4.3 and libyaml): a longer one, as written quoted, cannot be a key.
    public static func isLiteral(_ name: String) -> Bool {
        !name.isEmpty && !name.contains("*") && !name.unicodeScalars.contains("\u{FEFF}") && Self.fitsAKey(name)
    }

    /// Whether `key`, written as ``quoted(_:)`` writes it, is short enough for a YAML key.
    static func fitsAKey(_ key: String) -> Bool {
        Self.quoted(key).unicodeScalars.count <= Self.maxKeyCharacters
    }

    /// The longest key written, in characters (YAML's bound is 1024).
    static let maxKeyCharacters = 1000

    /// A string value of the policy: `text` as a YAML scalar that loads as `text` itself. The
    /// loader substitutes `${env:...}` and `${file:...}` in values, so every `${` is written
    /// `$${` (a literal): a server that names itself `${file:/etc/hostname}` must not get that
    /// file into the policy, nor into the metadata that publishes the resource's name.
    public static func value(_ text: String) -> String {
        Self.quoted(Self.escapingSubstitutions(text))
    }

    /// `text` with each `${` written as `$${`.
    static func escapingSubstitutions(_ text: String) -> String {
        guard text.contains("${") else { return text }
        var out = ""
        var previous: Character?
        for character in text {
            if character == "{", previous == "$" { out.append("$") }
            out.append(character)
            previous = character
        }
        return out
    }

    /// A YAML double-quoted scalar when the text needs it, else the text. For keys (never
    /// substituted); values go through ``value(_:)``.
    public static func quoted(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_./:".unicodeScalars.contains($0)) }
            && !text.hasPrefix("-") && !text.hasSuffix(":") && !["true", "false", "null", "yes", "no", "on", "off"].contains(text.lowercased())
        if plain { return text }
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                // YAML allows only printable characters; U+0085, U+2028 and U+2029 break lines.
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || [0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF].contains(scalar.value) {
                    out += "\\u" + String(scalar.value, radix: 16).leftPadded(to: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - self.count)) + self
    }
}
