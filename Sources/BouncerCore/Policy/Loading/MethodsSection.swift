import Yams

/// A resource's `methods:`: the scopes each JSON-RPC method, tool, prompt and resource URI needs.
extension PolicyReader {
    func methodTable(_ node: Node, _ path: String) -> MethodTable? {
        guard case .mapping(let mapping) = node else {
            self.report(node, path, "expected a mapping of JSON-RPC methods to scopes")
            return nil
        }
        var table = MethodTable()
        var seen: Set<String> = []
        var valid = true
        for (keyNode, value) in mapping {
            guard let method = keyNode.scalar?.string, !method.isEmpty else {
                self.report(keyNode, path, "method names must be non-empty strings")
                valid = false
                continue
            }
            let childPath = "\(path).\(method)"
            guard seen.insert(method).inserted else {
                self.report(keyNode, childPath, "duplicate method '\(method)'")
                valid = false
                continue
            }
            switch value {
            case .sequence:
                guard let scopes = self.scopeList(value, childPath) else { valid = false; continue }
                table.rules.insert(NamePattern(method), .scopes(scopes))
            case .mapping(let targets):
                guard MethodTable.targetParameter[method] != nil else {
                    self.report(value, childPath, "only tools/call, prompts/get and resources/read take per-target rules; give '\(method)' a list of scopes")
                    valid = false
                    continue
                }
                var rules = PatternTable<[String]>()
                var seenTargets: Set<String> = []
                for (targetKey, scopesNode) in targets {
                    guard let target = targetKey.scalar?.string, !target.isEmpty else {
                        self.report(targetKey, childPath, "names must be non-empty strings")
                        valid = false
                        continue
                    }
                    guard seenTargets.insert(target).inserted else {
                        self.report(targetKey, "\(childPath).\(target)", "duplicate entry '\(target)'")
                        valid = false
                        continue
                    }
                    guard let scopes = self.scopeList(scopesNode, "\(childPath).\(target)") else { valid = false; continue }
                    var pattern = target
                    // Matched against normalised request URIs (see ResourceURI). A glob that
                    // starts before any scheme (`*`, `*.md`) has nothing to normalise.
                    let leadingGlob = target.prefix { $0 != ":" }.contains("*")
                    if method == "resources/read", !leadingGlob {
                        do {
                            pattern = try ResourceURI.normalise(target)
                        } catch {
                            self.report(targetKey, "\(childPath).\(target)", "not a URI that can be matched safely: \(error.reason)")
                            valid = false
                            continue
                        }
                    }
                    rules.insert(NamePattern(pattern), scopes)
                }
                table.rules.insert(NamePattern(method), .byTarget(rules))
            default:
                self.report(value, childPath, "expected a list of scopes ([] for a valid token and no scope) or, for \(MethodTable.targetParameter.keys.sorted().joined(separator: ", ")), a mapping of names to scope lists")
                valid = false
            }
        }
        return valid ? table : nil
    }
}
