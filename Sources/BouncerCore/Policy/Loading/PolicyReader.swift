import Yams

/// Reads the policy YAML into values, collecting every problem with its line and key path
/// instead of stopping at the first. The shapes every section uses live here (mappings with
/// their allowed keys, strings with `${env:...}`/`${file:...}` substitution, numbers in a
/// range, lists, scope tokens, fetchable URLs); each section of the document is read by its
/// own extension (`*Section.swift` beside this file), in the order of `policies/README.md`.
final class PolicyReader {
    var problems: [PolicyProblem] = []
    /// What loads but deserves a second look; `check` prints them, `run` logs them.
    var warnings: [PolicyProblem] = []
    let secrets: SecretSource

    init(secrets: SecretSource) {
        self.secrets = secrets
    }

    // MARK: Reporting

    func report(_ node: Node?, _ path: String, _ message: String) {
        self.problems.append(PolicyProblem(line: node?.mark?.line, column: node?.mark?.column, keyPath: path, message: message))
    }

    func warn(_ node: Node?, _ path: String, _ message: String) {
        self.warnings.append(PolicyProblem(line: node?.mark?.line, column: node?.mark?.column, keyPath: path, message: message))
    }

    func yamlProblem(_ error: YamlError) -> PolicyProblem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return PolicyProblem(line: mark.line, column: mark.column, keyPath: "", message: "not valid YAML: \(problem)")
        case .composer(_, let problem, let mark, _):
            return PolicyProblem(line: mark.line, column: mark.column, keyPath: "", message: "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return PolicyProblem(line: context.mark.line, column: context.mark.column, keyPath: "", message: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) (every key may appear once)")
        default:
            return PolicyProblem(line: nil, column: nil, keyPath: "", message: "not valid YAML: \(error)")
        }
    }

    // MARK: Shapes

    /// A mapping whose keys must be among `allowed`; `later` names keys refused with a reason.
    func section(_ node: Node, _ path: String, allowed: Set<String>, required: [String] = [], later: [String: String] = [:]) -> PolicySection? {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of keys to values")
            return nil
        }
        var entries: [(String, Node, Node)] = []
        var seen: Set<String> = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                self.report(keyNode, path, "keys must be plain strings")
                continue
            }
            let key = scalar.string
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            if !seen.insert(key).inserted {
                self.report(keyNode, keyPath, "duplicate key '\(key)'")
                continue
            }
            if let reason = later[key] {
                self.report(keyNode, keyPath, reason)
                continue
            }
            if !allowed.contains(key) {
                self.report(keyNode, keyPath, "unknown key '\(key)' (allowed here: \(allowed.sorted().joined(separator: ", ")))")
                continue
            }
            entries.append((key, keyNode, value))
        }
        let result = PolicySection(reader: self, node: node, path: path, entries: entries)
        for key in required where result[key] == nil && !seen.contains(key) {
            self.report(node, result.childPath(key), "required key '\(key)' is missing")
        }
        return result
    }

    func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node else {
            self.report(node, path, "expected a string")
            return nil
        }
        return self.substitute(scalar.string, node, path)
    }

    func nonEmptyString(_ node: Node?, _ path: String) -> String? {
        guard let value = self.string(node, path) else { return nil }
        if value.isEmpty {
            self.report(node, path, "must not be empty")
            return nil
        }
        return value
    }

    func integer(_ node: Node?, _ path: String, range: ClosedRange<Int64>) -> Int64? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node, let value = Int64(scalar.string) else {
            self.report(node, path, "expected a whole number")
            return nil
        }
        guard range.contains(value) else {
            self.report(node, path, "must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return value
    }

    func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let node else { return nil }
        guard case .scalar(let scalar) = node, ["true", "false"].contains(scalar.string) else {
            self.report(node, path, "expected true or false")
            return nil
        }
        return scalar.string == "true"
    }

    func stringList(_ node: Node?, _ path: String) -> [String]? {
        guard let node else { return nil }
        guard case .sequence(let sequence) = node else {
            self.report(node, path, "expected a list, e.g. [a, b]")
            return nil
        }
        var values: [String] = []
        for (index, element) in sequence.enumerated() {
            if let value = self.nonEmptyString(element, "\(path)[\(index)]") { values.append(value) }
        }
        return values
    }

    /// RFC 6750 section 3: scope tokens are %x21 / %x23-5B / %x5D-7E.
    /// RFC 6749 3.3 scope-token: printable ASCII but space, `"` and `\\`.
    static func isScopeToken(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy { $0 == 0x21 || (0x23...0x5B).contains($0) || (0x5D...0x7E).contains($0) }
    }

    func scopeList(_ node: Node?, _ path: String) -> [String]? {
        guard let node, let values = self.stringList(node, path) else { return nil }
        var valid: [String] = []
        for value in values {
            if Self.isScopeToken(value) {
                if !valid.contains(value) { valid.append(value) }
            } else {
                self.report(node, path, "'\(value)' is not a valid scope token (no spaces, quotes or backslashes)")
            }
        }
        return valid
    }

    // MARK: Substitution

    /// Replaces `${env:NAME}` and `${file:PATH}`, and `$${` by a literal `${` (so a value can
    /// say `${` without naming a secret: what `init` writes for names a server chose);
    /// anything else starting with `${` is a problem.
    func substitute(_ text: String, _ node: Node, _ path: String) -> String? {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        while let start = rest.firstRange(of: "${") {
            if start.lowerBound > rest.startIndex, rest[rest.index(before: start.lowerBound)] == "$" {
                // `$${`: the first `$` escapes the rest.
                out += rest[..<rest.index(before: start.lowerBound)]
                out += "${"
                rest = rest[start.upperBound...]
                continue
            }
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                self.report(node, path, "unterminated '${' (use ${env:NAME} or ${file:PATH})")
                return nil
            }
            let reference = rest[start.upperBound..<end]
            rest = rest[rest.index(after: end)...]
            if reference.hasPrefix("env:") {
                let name = String(reference.dropFirst(4))
                guard let value = self.secrets.environment(name) else {
                    self.report(node, path, "environment variable \(name) is not set")
                    return nil
                }
                out += value
            } else if reference.hasPrefix("file:") {
                let file = String(reference.dropFirst(5))
                switch self.secrets.readFile(file) {
                case .success(var contents):
                    while contents.hasSuffix("\n") || contents.hasSuffix("\r") { contents.removeLast() }
                    out += contents
                case .failure(let error):
                    self.report(node, path, "cannot read \(file): \(error.reason)")
                    return nil
                }
            } else {
                self.report(node, path, "unknown substitution '${\(reference)}' (use ${env:NAME} or ${file:PATH})")
                return nil
            }
        }
        return out + rest
    }

    /// An http(s) URL the gateway will fetch: https, or http on loopback only.
    func checkedURL(_ text: String, _ node: Node?, _ path: String, allowQuery: Bool) -> CanonicalURI? {
        let base = allowQuery ? String(text.split(separator: "?", maxSplits: 1).first ?? "") : text
        do {
            let uri = try CanonicalURI(base)
            if uri.scheme == "http", !uri.hasLoopbackHost {
                self.report(node, path, "must be https unless its host is loopback")
                return nil
            }
            return uri
        } catch {
            self.report(node, path, error.reason)
            return nil
        }
    }

}

extension Node {
    var scalar: Node.Scalar? {
        if case .scalar(let scalar) = self { return scalar }
        return nil
    }
}
