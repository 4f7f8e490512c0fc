import ArgumentParser
import BouncerCore
import BouncerDemo
import BouncerProxy
import BouncerTLS
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

@main
struct MCPBouncer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp-bouncer",
        abstract: "An OAuth 2.1 resource-server gateway for MCP servers.",
        version: MCPBouncerVersion.current,
        subcommands: [Demo.self, Run.self, Check.self, Audit.self, Pin.self, Sessions.self, Probe.self, Init.self]
    )
}

/// Reads `${env:...}` from the process environment and `${file:...}` from disk.
let processSecrets = PolicyFile.secrets(environment: { ProcessInfo.processInfo.environment[$0] })

/// The policy and the files it names, read as `check`, `run` and a reload read it. Problems are
/// printed `file:line:column: key.path: message` on standard error, then the command fails.
func loadPolicy(_ path: String) throws -> (policy: GatewayPolicy, files: [String]) {
    do {
        return try PolicyFile(path: path).load()
    } catch {
        var stderr = FileHandle.standardError
        if case .invalid(let invalid) = error {
            print("\(path): \(invalid.problems.count) problem\(invalid.problems.count == 1 ? "" : "s")", to: &stderr)
            for problem in invalid.problems { print("\(path):\(problem)", to: &stderr) }
        } else {
            for problem in error.problems { print("\(path): \(problem)", to: &stderr) }
        }
        throw ExitCode(1)
    }
}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) {
        self.write(Data(string.utf8))
    }
}

/// Writes a line to standard output unbuffered, so a script or a test reading the pipe sees it
/// at once.
func say(_ text: String) {
    FileHandle.standardOutput.write(text + "\n")
}
