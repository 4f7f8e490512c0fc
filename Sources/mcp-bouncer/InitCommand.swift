import ArgumentParser
import BouncerCore
import BouncerProbe
import BouncerProxy
import BouncerTLS
import Foundation
import NIOPosix

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to a legacy MCP server and write a policy that protects it (review it, then `check` and `run`).",
        discussion: """
            Lists the server's tools, prompts and resources and writes one resource: a method rule for what it \
            offers, tool scopes proposed from annotations (readOnlyHint: <name>:read, destructiveHint: <name>:admin, \
            otherwise <name>:write) and, with --out, the tools' pins beside the policy.
            """
    )

    @Option(name: .long, help: "The legacy server's Streamable HTTP endpoint.")
    var upstream: String

    @Option(name: .long, help: "Your identity provider's issuer URL.")
    var issuer: String?

    @Option(name: .long, help: "The public path, /<name>/mcp (default: from the server's name).")
    var path: String?

    @Option(name: .long, help: "What clients will use, e.g. https://mcp.example.com (default http://127.0.0.1:8443).")
    var publicURL: String = "http://127.0.0.1:8443"

    @Option(name: .customLong("header"), help: "A request header for the server, 'Name: value' (repeatable), e.g. its credential.")
    var headers: [String] = []

    @Option(name: .long, help: "Write the policy here (and the tool pins beside it, <file>.pins.yaml) instead of standard output.")
    var out: String?

    func run() async throws {
        let publicURL: CanonicalURI
        do {
            publicURL = try CanonicalURI(self.publicURL)
        } catch {
            throw ValidationError("--public-url: \(error.reason)")
        }
        guard publicURL.path.isEmpty else { throw ValidationError("--public-url is an origin (scheme://host[:port]); the path goes in --path") }
        guard (try? CanonicalURI(self.upstream.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "")) != nil, !self.upstream.contains(where: \.isWhitespace) else {
            throw ValidationError("--upstream '\(self.upstream)' is not an http(s) URL")
        }
        if let issuer = self.issuer, (try? CanonicalURI(issuer)) == nil { throw ValidationError("--issuer '\(issuer)' is not an http(s) URL") }
        if let path = self.path, !path.hasPrefix("/") || path.contains("?") || path.contains("#") {
            throw ValidationError("--path must start with / and have no query or fragment, e.g. /jira/mcp")
        }
        let lister = try upstreamLister(self.upstream, headers: self.headers)
        let catalogue: MCPClient.Catalogue
        do {
            catalogue = try await lister.catalogue()
        } catch {
            throw ValidationError("cannot list what \(self.upstream) offers: \(error.reason)")
        }
        let serverName = catalogue.initializeResult?["serverInfo"]?["name"]?.stringValue
        let pinsFile = self.out.map { $0.hasSuffix(".yaml") ? String($0.dropLast(5)) + ".pins.yaml" : $0 + ".pins.yaml" }
        var draft = PolicyDraft(
            upstream: self.upstream, path: self.path ?? PolicyDraft.defaultPath(serverName: serverName), publicURL: publicURL, issuer: self.issuer,
            pinsFile: pinsFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, date: ISO8601DateFormatter().string(from: Date())
        )
        draft.serverName = serverName
        draft.tools = catalogue.tools
        draft.prompts = catalogue.prompts
        draft.resources = catalogue.resources
        draft.resourceTemplates = catalogue.resourceTemplates
        let summary = "\(catalogue.tools.count) tools, \(catalogue.prompts.count) prompts, \(catalogue.resources.count + catalogue.resourceTemplates.count) resources"
        guard let out = self.out, let pinsFile else {
            FileHandle.standardOutput.write(draft.yaml)
            FileHandle.standardError.write("listed \(summary) of \(self.upstream); review the policy, then pin the tools with `mcp-bouncer pin` (--out writes both)\n")
            return
        }
        var pins = ToolPins(upstream: self.upstream, tools: [:])
        for tool in catalogue.tools {
            if let (name, digest) = ToolPins.digest(of: tool) { pins.tools[name] = digest }
        }
        do {
            try pins.yaml.write(toFile: pinsFile, atomically: true, encoding: .utf8)
            try draft.yaml.write(toFile: out, atomically: true, encoding: .utf8)
        } catch {
            throw ValidationError("cannot write \(out): \(error.localizedDescription)")
        }
        FileHandle.standardError.write("""
            wrote \(out) (\(summary) of \(self.upstream)) and the tool pins in \(pinsFile).
            Review the scopes marked REVIEW, then: mcp-bouncer check \(out) && mcp-bouncer run --config \(out)

            """)
    }
}
