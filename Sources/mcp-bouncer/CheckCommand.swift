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

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a policy file and report every problem with its line and key path.")

    @Argument(help: "The policy file.")
    var file: String

    func run() throws {
        let policy = try loadPolicy(self.file).policy
        do {
            // Certificates, keys and CA files are loaded exactly as `run` would, so a key that
            // does not match its certificate fails here, not at 3 a.m.
            _ = try GatewayTLSContexts.load(policy, logger: Logger(label: "mcp-bouncer"))
            var stderr = FileHandle.standardError
            for warning in policy.warnings { print("\(self.file):\(warning) (warning)", to: &stderr) }
            print("\(self.file): OK\(policy.warnings.isEmpty ? "" : " with \(policy.warnings.count) warning\(policy.warnings.count == 1 ? "" : "s")")")
            print("  listen \(policy.listen), public URL \(policy.publicURL)")
            for resource in policy.resources {
                print("  \(resource.uri) -> \(resource.upstream) (authorization server \(resource.authorizationServer))")
            }
        } catch {
            var stderr = FileHandle.standardError
            print("\(self.file): \(error.errors.count) TLS problem\(error.errors.count == 1 ? "" : "s")", to: &stderr)
            for problem in error.errors { print("\(self.file):\(problem)", to: &stderr) }
            throw ExitCode(1)
        }
    }
}
