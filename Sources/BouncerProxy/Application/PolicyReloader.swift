import BouncerCore
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// A policy file as `check`, `run` and a reload read it: the YAML, with `${env:...}` from the
/// process environment and `${file:...}` (and `tool_pins`, `signing_key`) from disk. Loading
/// also says which files the policy named, for `run --watch`.
package struct PolicyFile: Sendable {
    package let path: String
    let environment: @Sendable (String) -> String?

    package init(path: String, environment: @escaping @Sendable (String) -> String? = { ProcessInfo.processInfo.environment[$0] }) {
        self.path = path
        self.environment = environment
    }

    /// The secrets the process reads: its environment and files.
    package static func secrets(environment: @escaping @Sendable (String) -> String?, reading read: (@Sendable (String) -> Void)? = nil) -> SecretSource {
        SecretSource(environment: environment, readFile: { path in
            read?(path)
            do {
                return .success(try String(contentsOfFile: path, encoding: .utf8))
            } catch {
                return .failure(SecretReadError(reason: (error as NSError).localizedDescription))
            }
        })
    }

    /// The validated policy and every file it named (the policy file first, then secrets, pin
    /// files, keys and TLS files). Throws ``PolicyFileError``.
    package func load() throws(PolicyFileError) -> (policy: GatewayPolicy, files: [String]) {
        let text: String
        do {
            text = try String(contentsOfFile: self.path, encoding: .utf8)
        } catch {
            throw .unreadable("cannot read \(self.path): \((error as NSError).localizedDescription)")
        }
        let read = NIOLockedValueBox([String]())
        let policy: GatewayPolicy
        do {
            policy = try PolicyLoader.load(yaml: text, secrets: Self.secrets(environment: self.environment) { path in read.withLockedValue { $0.append(path) } })
        } catch {
            throw .invalid(error)
        }
        var files = [self.path] + read.withLockedValue { $0 }
        files += policy.tls?.files ?? []
        for server in policy.authorizationServers.values { files += server.tls.files }
        for resource in policy.resources { files += resource.upstreamTLS.files }
        var seen: Set<String> = []
        return (policy, files.filter { seen.insert($0).inserted })
    }
}

package enum PolicyFileError: Error, Sendable {
    case unreadable(String)
    case invalid(PolicyValidationError)

    /// Each problem on a line of its own, as `check` prints them.
    package var problems: [String] {
        switch self {
        case .unreadable(let reason): [reason]
        case .invalid(let error): error.problems.map(\.description)
        }
    }
}

extension ClientTLSSettings {
    /// The files these settings read.
    var files: [String] {
        [self.caFile, self.clientCertificate?.certificate, self.clientCertificate?.privateKey].compactMap { $0 }
    }
}

/// Reloads the policy on SIGHUP and, with `run --watch`, when the policy file or any file it
/// names changes (polled every ``pollInterval``, by content: an edit in place, a new file moved
/// over the old one, or a Kubernetes ConfigMap's symlink swap). The new policy is loaded and
/// validated as `check` does; if it fails the old one stays in force, and the log, the metric
/// `mcp_bouncer_reloads_total{what="policy",result="failed"}` and the audit trail (`reload_failed`)
/// say why. If it passes it is swapped in (``GatewayApplication/apply(_:reason:)``). Reloads
/// run one at a time, off the event loops.
package final class PolicyReloader: Service, Sendable {
    let file: PolicyFile
    let application: GatewayApplication
    let watch: Bool
    let logger: Logger
    /// The files of the policy in force, with their content digests.
    private let watched: NIOLockedValueBox<[String: String]>

    package static let pollInterval = Duration.seconds(2)

    package init(file: PolicyFile, files: [String], application: GatewayApplication, watch: Bool, logger: Logger) {
        self.file = file
        self.application = application
        self.watch = watch
        self.logger = logger
        self.watched = NIOLockedValueBox(Self.fingerprints(files))
    }

    package func run() async throws {
        let (triggers, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) { continuation.yield("signal") }
                }
                if self.watch {
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: Self.pollInterval)
                            if self.changed() { continuation.yield("file_changed") }
                        }
                    }
                }
                group.addTask {
                    for await reason in triggers { self.reload(reason: reason) }
                }
                try await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            continuation.finish()
        }
    }

    /// Loads the file and applies it; returns whether the new policy is in force.
    @discardableResult
    package func reload(reason: String) -> Bool {
        switch Result(catching: { () throws(PolicyFileError) in try self.file.load() }) {
        case .failure(let error):
            // What failed is not watched again until it changes once more.
            self.watched.withLockedValue { $0 = Self.fingerprints(Array($0.keys)) }
            return self.failed(error.problems, reason: reason)
        case .success(let (policy, files)):
            self.watched.withLockedValue { $0 = Self.fingerprints(files) }
            do {
                try self.application.apply(policy, reason: reason, file: self.file.path)
                return true
            } catch {
                return self.failed(error.errors.map(\.description), reason: reason)
            }
        }
    }

    /// Reports a reload that failed (the previous policy stays in force): log, metric, audit.
    private func failed(_ problems: [String], reason: String) -> Bool {
        self.application.gateway.events.policyReloadFailed(file: self.file.path, reason: reason, problems: problems)
        return false
    }

    /// Whether any watched file's content changed since the last look.
    private func changed() -> Bool {
        self.watched.withLockedValue { watched in
            let now = Self.fingerprints(Array(watched.keys))
            return now != watched
        }
    }

    /// SHA-256 of each file's content (`missing` for one that cannot be read). Paths are
    /// opened afresh each time, so a file replaced by rename (or a symlink swapped) counts.
    static func fingerprints(_ files: [String]) -> [String: String] {
        var result: [String: String] = [:]
        for path in files {
            if let data = FileManager.default.contents(atPath: path) {
                result[path] = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
            } else {
                result[path] = "missing"
            }
        }
        return result
    }
}
