import ArgumentParser
import BouncerCore
import BouncerProbe
import BouncerProxy
import BouncerTLS
import Foundation
import NIOPosix

struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Assess MCP servers against the MCP authorization specification and report findings.",
        discussion: """
            Each URL is a Streamable HTTP endpoint (the older HTTP+SSE transport is detected). \
            Findings have a severity, the requirement they rest on and a fix. \(ProbeOutput.readOnlyNote) \
            The exit code is 1 when a finding is at least as severe as --fail-on, so a CI job can gate deployments. Every finding: docs/probe.md.
            """
    )

    @Argument(help: "MCP endpoints, e.g. https://mcp.example.com/jira/mcp.")
    var urls: [String] = []

    @Option(name: .long, help: "A file of URLs, one per line (# starts a comment).")
    var from: String?

    @Option(name: .long, help: "table, json or sarif (SARIF 2.1.0, for code scanning).")
    var format: String = "table"

    @Option(name: .long, help: "critical, high, medium or never: the least severity that fails the command.")
    var failOn: String = "high"

    @Option(name: .long, help: "A token valid for the server(s): it must be accepted, and must not be accepted in the query string. @FILE reads it from a file (keeps it out of the process list), as do the other secrets.")
    var token: String?

    @Option(name: .long, help: "The PEM private key a DPoP-bound --token is bound to (cnf.jkt): the token goes as DPoP with proofs, and must be refused as Bearer, with a replayed proof, a proof for another URL and a stale one.")
    var dpopKey: String?

    @Option(name: .long, help: "A token of the same issuer for another resource: it must be refused (audience validation).")
    var foreignToken: String?

    @Option(name: .long, help: "A client of the authorization server (client credentials), to test that tokens asked for this URL name it in aud (RFC 8707).")
    var clientID: String?

    @Option(name: .long, help: "The client's secret (client_secret_basic).")
    var clientSecret: String?

    @Option(name: .long, help: "Seconds the whole probe of one server may take.")
    var timeout: Int = 30

    @Option(name: .long, help: "Servers probed at once.")
    var concurrency: Int = 4

    @Option(name: .long, help: "A PEM file of CA certificates to trust instead of the system's.")
    var caFile: String?

    func validate() throws {
        guard ProbeFailOn(rawValue: self.failOn) != nil else { throw ValidationError("--fail-on must be critical, high, medium or never") }
        guard ["table", "json", "sarif"].contains(self.format) else { throw ValidationError("--format must be table, json or sarif") }
        guard (1...3600).contains(self.timeout) else { throw ValidationError("--timeout must be 1 - 3600 seconds") }
        guard (1...256).contains(self.concurrency) else { throw ValidationError("--concurrency must be 1 - 256") }
        guard (self.clientID == nil) == (self.clientSecret == nil) else { throw ValidationError("--client-id and --client-secret go together") }
        guard self.dpopKey == nil || self.token != nil else { throw ValidationError("--dpop-key is the key of a DPoP-bound --token: give the token too") }
    }

    func run() async throws {
        var urls = self.urls
        if let from = self.from {
            guard let text = try? String(contentsOfFile: from, encoding: .utf8) else { throw ValidationError("cannot read --from \(from)") }
            urls += text.split(whereSeparator: \.isNewline).map { $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        guard !urls.isEmpty else { throw ValidationError("give at least one URL (or --from FILE)") }
        var options = ProbeOptions()
        options.token = try self.token.map { try secret($0, "--token") }
        options.foreignToken = try self.foreignToken.map { try secret($0, "--foreign-token") }
        if let pem = try self.dpopKey.map({ try secret($0, "--dpop-key") }) {
            do {
                options.dpopSigner = DPoPSigner(key: try AssertionSigningKey(pem: pem))
            } catch {
                throw ValidationError("--dpop-key: \(error.reason)")
            }
        }
        options.clientID = self.clientID
        options.clientSecret = try self.clientSecret.map { try secret($0, "--client-secret") }
        options.timeout = .seconds(self.timeout)
        options.requestTimeout = .seconds(min(10, self.timeout))
        let tls: TLSContext
        do {
            tls = try TLSContext(configuration: .client(trustRoots: self.caFile.map { .file($0) } ?? .system, applicationProtocols: ["http/1.1"]))
        } catch {
            throw ValidationError("cannot set up TLS: \(error)")
        }
        let probe = ServerProbe(fetcher: HTTPFetcher(group: MultiThreadedEventLoopGroup.singleton, maxResponseBytes: 4 * 1024 * 1024), tls: tls, options: options)
        let progress = ProgressLine(total: urls.count)
        let targets = urls
        let concurrency = self.concurrency
        let reports = await withTaskGroup(of: (Int, ProbeReport).self) { group in
            var reports = [ProbeReport?](repeating: nil, count: targets.count)
            var next = 0
            while next < targets.count || !group.isEmpty {
                // At most `concurrency` probes at once.
                while next < targets.count, next - reports.count(where: { $0 != nil }) < concurrency {
                    let index = next
                    progress.started(targets[index])
                    group.addTask { (index, await probe.run(targets[index])) }
                    next += 1
                }
                guard let (index, report) = await group.next() else { break }
                reports[index] = report
                progress.finished(targets[index])
            }
            progress.clear()
            return reports.compactMap { $0 }
        }
        switch self.format {
        case "json": say(prettyJSON(ProbeOutput.json(reports)))
        case "sarif": say(prettyJSON(ProbeOutput.sarif(reports, version: MCPBouncerVersion.current)))
        default: FileHandle.standardOutput.write(ProbeOutput.table(reports))
        }
        if ProbeFailOn(rawValue: self.failOn)!.fails(reports) { throw ExitCode(1) }
    }
}

/// A secret given on the command line, or `@FILE`: the file's content without its trailing
/// newline (a token in argv is visible to every user of the machine).
func secret(_ value: String, _ option: String) throws -> String {
    guard value.hasPrefix("@") else { return value }
    let path = String(value.dropFirst())
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("\(option): cannot read \(path)") }
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else { throw ValidationError("\(option): \(path) is empty") }
    return trimmed
}

/// JSON with sorted keys and indentation, for people and diff tools alike.
func prettyJSON(_ value: JSONValue) -> String {
    let compact = CanonicalJSON.serialize(value)
    guard let object = try? JSONSerialization.jsonObject(with: Data(compact.utf8)),
          let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    else { return compact }
    return String(decoding: data, as: UTF8.self)
}
