import BouncerCore
import BouncerTLS
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// Reloads the client-facing certificate and key without dropping connections: on SIGHUP,
/// and when any of the files changes (polled). New connections get the new context; open ones
/// keep theirs. A file that does not load leaves the old context in place, and the log says why.
///
/// Runs as a task, so the file reads and key parsing never happen on an event loop.
package struct TLSReloader: Service {
    let settings: ServerTLSSettings
    let box: ServerTLSContextBox
    let logger: Logger
    let events: GatewayEvents

    package init(settings: ServerTLSSettings, box: ServerTLSContextBox, events: GatewayEvents = GatewayEvents(), logger: Logger) {
        self.events = events
        self.settings = settings
        self.box = box
        self.logger = logger
    }

    package func run() async throws {
        let interval = self.settings.reloadIntervalSeconds
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) {
                    self.reload(reason: "SIGHUP")
                }
            }
            if interval > 0 {
                group.addTask {
                    var lastSeen = self.fingerprint()
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(interval))
                        let current = self.fingerprint()
                        if current != lastSeen {
                            lastSeen = current
                            self.reload(reason: "certificate or key file changed")
                        }
                    }
                }
            }
            try await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Builds a context from the files as they are now and swaps it in if it loads.
    @discardableResult
    package func reload(reason: String) -> Bool {
        do {
            let context = try TLSContext(configuration: GatewayTLSContexts.serverConfiguration(self.settings))
            self.box.replace(with: context)
            self.events.certificateReloaded(self.settings.certificate.certificate, reason: reason, error: nil)
            return true
        } catch {
            self.events.certificateReloaded(self.settings.certificate.certificate, reason: reason, error: "\(error)")
            return false
        }
    }

    /// Modification times and sizes of every file, to notice replacements (including the
    /// atomic renames certificate managers do).
    func fingerprint() -> [String] {
        self.settings.files.map { path in
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            let size = attributes?[.size] as? Int ?? -1
            let inode = attributes?[.systemFileNumber] as? Int ?? -1
            return "\(path):\(modified):\(size):\(inode)"
        }
    }
}
