import ArgumentParser
import BouncerCore
import BouncerProxy
import BouncerTLS
import Foundation
import NIOPosix

struct Pin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to an MCP server, list its tools and print a pin file for a resource's tool_pins.",
        discussion: """
            Each tool is pinned by the SHA-256 of the RFC 8785 form of its name, title, description, \
            inputSchema, outputSchema and annotations. Review the definitions (the server's own listing) \
            before approving the file: pinning records what the server says now, not that it is safe.
            """
    )

    @Option(name: .long, help: "The MCP server's Streamable HTTP endpoint (http or https).")
    var upstream: String

    @Option(name: .customLong("header"), help: "A request header for the server, 'Name: value' (repeatable), e.g. its credential.")
    var headers: [String] = []

    @Option(name: .long, help: "Write the pin file here instead of standard output.")
    var out: String?

    func run() async throws {
        let lister = try upstreamLister(self.upstream, headers: self.headers)
        let tools: [JSONValue]
        do {
            tools = try await lister.listTools()
        } catch {
            throw ValidationError("cannot list the tools of \(self.upstream): \(error.reason)")
        }
        var pins = ToolPins(upstream: self.upstream, tools: [:])
        for tool in tools {
            guard let (name, digest) = ToolPins.digest(of: tool) else {
                note("skipped an entry without a string name: it cannot be called by name")
                continue
            }
            guard pins.tools.updateValue(digest, forKey: name) == nil else {
                throw ValidationError("the server lists '\(name)' twice: pin it once it lists each tool once")
            }
        }
        if let out = self.out {
            do {
                try pins.yaml.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw ValidationError("cannot write \(out): \(error.localizedDescription)")
            }
            note("pinned \(pins.tools.count) tools of \(self.upstream) in \(out)")
        } else {
            FileHandle.standardOutput.write(pins.yaml)
            note("pinned \(pins.tools.count) tools of \(self.upstream)")
        }
    }
}

/// A client of the legacy server at `url` (`pin`, `init`), with the `--header 'Name: value'`
/// options checked.
func upstreamLister(_ url: String, headers options: [String]) throws -> MCPClient {
    var headers: [(String, String)] = []
    for header in options {
        guard let colon = header.firstIndex(of: ":"), !header[..<colon].isEmpty else {
            throw ValidationError("--header '\(header)': expected 'Name: value'")
        }
        headers.append((String(header[..<colon]), header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
    }
    let tls = url.lowercased().hasPrefix("https:") ? try TLSContext(configuration: .client(applicationProtocols: ["http/1.1"])) : nil
    return MCPClient(fetcher: HTTPFetcher(group: MultiThreadedEventLoopGroup.singleton, maxResponseBytes: 16 * 1024 * 1024), url: url, headers: headers, tls: tls)
}

/// A status line on standard error: standard output may be the pin file.
private func note(_ text: String) {
    FileHandle.standardError.write(text + "\n")
}
