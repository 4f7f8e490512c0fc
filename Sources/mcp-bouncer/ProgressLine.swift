import ArgumentParser
import BouncerCore
import BouncerProbe
import BouncerProxy
import BouncerTLS
import Foundation
import NIOPosix

/// `probing 3/10 done, 4 running: https://...` on standard error, rewritten in place; only on a
/// terminal (a pipe or a CI log gets the report alone).
final class ProgressLine: @unchecked Sendable {
    private let total: Int
    private let enabled = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var done = 0
    private var running: [String] = []

    init(total: Int) {
        self.total = total
    }

    func started(_ url: String) {
        self.update { $0.running.append(url) }
    }

    func finished(_ url: String) {
        self.update { progress in
            progress.done += 1
            progress.running.removeAll { $0 == url }
        }
    }

    func clear() {
        guard self.enabled else { return }
        FileHandle.standardError.write("\r\u{1B}[K")
    }

    private func update(_ change: (ProgressLine) -> Void) {
        self.lock.lock()
        defer { self.lock.unlock() }
        change(self)
        guard self.enabled else { return }
        let current = self.running.last.map { ": \($0)" } ?? ""
        FileHandle.standardError.write("\r\u{1B}[Kprobing \(self.done)/\(self.total) done, \(self.running.count) running\(current)")
    }
}
