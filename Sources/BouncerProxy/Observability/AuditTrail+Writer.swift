import BouncerCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why the audit sink cannot be opened (failures while running are reported, not thrown).
public struct AuditSinkError: CodedError {
    public enum Code: String, Sendable {
        case open
        case notAnAuditFile = "not_an_audit_file"
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }
}

extension AuditTrail {
    /// The writer thread's state: the file, the chain, the bytes not yet written.
    struct Writer {
        let settings: AuditSettings
        let clock: WallClock
        private var descriptor: Int32
        /// The file's identity when opened, to notice it was removed or replaced.
        private var identity: (device: UInt64, inode: UInt64)?
        private(set) var chain: AuditChain
        private var pending: [UInt8] = []
        private var lastSync: Int64 = 0
        private var unsynced = false
        private var lastIdentityCheck: Int64 = 0
        private var retryAt: Int64?
        /// Why writing, syncing or reopening last failed; cleared when it next succeeds.
        private var writeFailure: String?
        private var reopenFailure: String?
        /// Set when the path no longer names the open file; cleared by a reopen.
        private var replaced: String?
        /// Failed operations, for `mcp_bouncer_audit_sink_errors_total`.
        private(set) var errors = 0
        /// Bytes of a torn record cut from the file's end when it was opened.
        private(set) var tornTailBytes = 0

        /// Why the sink is failing now, if it is.
        var failure: String? { self.writeFailure ?? self.reopenFailure ?? self.replaced }

        var pendingBytes: Int { self.pending.count }

        init(settings: AuditSettings, clock: WallClock) throws(AuditSinkError) {
            self.settings = settings
            self.clock = clock
            self.descriptor = -1
            self.chain = AuditChain(formatter: AuditRecordFormatter(arguments: settings.arguments), signer: settings.signingKey, checkpointEvery: settings.checkpointEvery)
            if settings.isStandardOutput {
                self.descriptor = STDOUT_FILENO
                return
            }
            let opened = try Self.open(settings.file)
            self.descriptor = opened.descriptor
            self.identity = Self.identity(of: opened.descriptor)
            self.tornTailBytes = opened.tornTailBytes
            self.chain = AuditChain(
                formatter: AuditRecordFormatter(arguments: settings.arguments), signer: settings.signingKey, checkpointEvery: settings.checkpointEvery,
                resumingAfter: opened.position
            )
            if !opened.endsWithNewline { self.pending.append(UInt8(ascii: "\n")) }
        }

        /// An audit file opened for appending, and where its chain ended.
        struct Opened {
            var descriptor: Int32
            /// The last whole record's; nil for an empty file.
            var position: AuditChainPosition?
            /// False when the last record lacks only its newline (written before the next one).
            var endsWithNewline: Bool
            /// Bytes of a cut record removed from the end.
            var tornTailBytes: Int
        }

        /// Opens `path` for appending and finds where its chain ended: the last line that is a
        /// record. A file with content but no record is refused, never appended to.
        ///
        /// A crash can cut the last write short: the file then ends in part of a record, a line
        /// without its newline that is not a record. That torn tail is cut off (``Opened/tornTailBytes``),
        /// so the chain continues right after the last whole record and the file verifies again;
        /// left in place it would break `audit verify` at that line forever. A file holding
        /// nothing but such a fragment is cut only when it starts as every record does (`{"`).
        static func open(_ path: String) throws(AuditSinkError) -> Opened {
            let descriptor = Glibc.open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard descriptor >= 0 else {
                throw AuditSinkError(.open, "cannot open \(path): \(String(cString: strerror(errno)))")
            }
            var size = lseek(descriptor, 0, SEEK_END)
            guard size > 0 else { return Opened(descriptor: descriptor, position: nil, endsWithNewline: true, tornTailBytes: 0) }
            let torn: Int
            do {
                torn = try Self.tornTail(descriptor, size: size, path: path)
            } catch {
                Glibc.close(descriptor)
                throw error
            }
            if torn > 0 {
                guard ftruncate(descriptor, size - off_t(torn)) == 0 else {
                    let reason = String(cString: strerror(errno))
                    Glibc.close(descriptor)
                    throw AuditSinkError(.open, "cannot cut the torn record at the end of \(path): \(reason)")
                }
                size -= off_t(torn)
                guard size > 0 else { return Opened(descriptor: descriptor, position: nil, endsWithNewline: true, tornTailBytes: torn) }
            }
            // Read backwards until the last complete line that parses as a record.
            var tail: [UInt8] = []
            var offset = size
            while offset > 0 && tail.count < 64 * 1024 * 1024 {
                let start = max(0, offset - Self.readChunk)
                let buffer: [UInt8]
                do {
                    buffer = try Self.read(descriptor, from: start, to: offset, path: path)
                } catch {
                    Glibc.close(descriptor)
                    throw error
                }
                tail = buffer + tail
                offset = start
                let lines = tail.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
                // The first piece may be cut unless the read reached the file's start.
                for line in lines.reversed() where offset == 0 || line.startIndex != lines.first?.startIndex {
                    if let position = AuditChainPosition(lastLine: line) {
                        return Opened(descriptor: descriptor, position: position, endsWithNewline: tail.last == UInt8(ascii: "\n"), tornTailBytes: torn)
                    }
                }
            }
            Glibc.close(descriptor)
            throw AuditSinkError(.notAnAuditFile, "\(path) is not empty and holds no audit record; it is not appended to (move it away or name another file)")
        }

        private static let readChunk: off_t = 64 * 1024

        /// The length of the torn record the file ends in: the bytes after its last newline
        /// when they are not a whole record; 0 when the file ends in a newline or a record.
        private static func tornTail(_ descriptor: Int32, size: off_t, path: String) throws(AuditSinkError) -> Int {
            var tail: [UInt8] = []
            var offset = size
            while offset > 0 {
                let start = max(0, offset - Self.readChunk)
                tail = try Self.read(descriptor, from: start, to: offset, path: path) + tail
                offset = start
                if tail.last == UInt8(ascii: "\n") { return 0 }
                if let newline = tail.lastIndex(of: UInt8(ascii: "\n")) {
                    let fragment = tail[(newline + 1)...]
                    return AuditChainPosition(lastLine: fragment) == nil ? fragment.count : 0
                }
                // A record is at most the body limit plus its members; past that it is no record.
                guard tail.count <= 64 * 1024 * 1024 else { return 0 }
            }
            // No newline at all: the file's first record was cut, or it is some other file.
            guard AuditChainPosition(lastLine: tail) == nil else { return 0 }
            return tail.starts(with: Array(#"{""#.utf8)) ? tail.count : 0
        }

        private static func read(_ descriptor: Int32, from start: off_t, to end: off_t, path: String) throws(AuditSinkError) -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: Int(end - start))
            let read = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, start) }
            guard read == buffer.count else {
                throw AuditSinkError(.open, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            return buffer
        }

        static func identity(of descriptor: Int32) -> (device: UInt64, inode: UInt64)? {
            var info = stat()
            guard fstat(descriptor, &info) == 0 else { return nil }
            return (UInt64(info.st_dev), UInt64(info.st_ino))
        }

        /// The earliest moment the writer must act without being woken: a sync, a checkpoint
        /// by time, a retry.
        func nextDeadline() -> Int64? {
            var deadlines: [Int64] = []
            if self.unsynced, self.settings.fsync == .interval { deadlines.append(self.lastSync + AuditTrail.fsyncInterval) }
            if let oldest = self.chain.oldestUnsignedAt, self.chain.signer != nil { deadlines.append(oldest + self.chain.checkpointIntervalMilliseconds) }
            if let retry = self.retryAt { deadlines.append(retry) }
            return deadlines.min()
        }

        /// Chains the batch (and a `dropped` record, and a checkpoint when due) into the
        /// pending bytes. Returns the number of records.
        mutating func chain(_ batch: [(entry: AuditEntry, at: Int64)], dropped: Int, now: Int64, checkpoint: Bool) -> Int {
            var records = 0
            // By index: the entries are read in place, not copied (and retained) one by one.
            for index in batch.indices {
                records += self.chain.append(batch[index].entry, now: batch[index].at, into: &self.pending)
            }
            if dropped > 0 {
                records += self.chain.append(.dropped(count: dropped), now: now, into: &self.pending)
            }
            if checkpoint || self.chain.checkpointDue(now: now), self.chain.checkpoint(now: now, into: &self.pending) {
                records += 1
            }
            return records
        }

        /// While a failed write waits for its retry time, nothing is tried.
        mutating func flush(now: Int64, sync: Bool) {
            if let retryAt, now < retryAt, !sync { return }
            while !self.pending.isEmpty {
                let written = self.pending.withUnsafeBytes { Glibc.write(self.descriptor, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    self.retryAt = now + 1000
                    self.errors += 1
                    self.writeFailure = "cannot write \(self.settings.file): \(String(cString: strerror(errno))); records are kept in memory and retried"
                    return
                }
                self.pending.removeFirst(written)
                self.unsynced = true
            }
            self.retryAt = nil
            self.writeFailure = nil
            let due = sync || self.settings.fsync == .always || (self.settings.fsync == .interval && now - self.lastSync >= AuditTrail.fsyncInterval)
            if self.unsynced, due, self.settings.fsync != .never || sync, !self.settings.isStandardOutput {
                if fsync(self.descriptor) != 0 {
                    self.errors += 1
                    self.writeFailure = "cannot sync \(self.settings.file): \(String(cString: strerror(errno)))"
                    return
                }
                self.unsynced = false
                self.lastSync = now
            }
        }

        /// Notices, at most once a second, that the file was removed or replaced behind the
        /// gateway's back (records would go to a file nobody reads). It is reported; SIGUSR1
        /// reopens.
        mutating func checkReplaced(now: Int64) {
            guard let identity = self.identity, self.replaced == nil, now - self.lastIdentityCheck >= 1000 else { return }
            self.lastIdentityCheck = now
            var info = stat()
            guard stat(self.settings.file, &info) == 0, UInt64(info.st_dev) == identity.device, UInt64(info.st_ino) == identity.inode else {
                self.errors += 1
                self.replaced = "\(self.settings.file) was removed or replaced; records go to the old file until SIGUSR1 reopens it"
                return
            }
        }

        /// Closes the file and opens the path again; the chain continues from memory.
        mutating func reopen() {
            guard !self.settings.isStandardOutput else { return }
            self.flush(now: self.clock.milliseconds(), sync: true)
            let descriptor = Glibc.open(self.settings.file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard descriptor >= 0 else {
                self.errors += 1
                self.reopenFailure = "cannot reopen \(self.settings.file): \(String(cString: strerror(errno))); still writing to the old file"
                return
            }
            Glibc.close(self.descriptor)
            self.descriptor = descriptor
            self.identity = Self.identity(of: descriptor)
            self.lastIdentityCheck = self.clock.milliseconds()
            self.reopenFailure = nil
            self.replaced = nil
            self.flush(now: self.clock.milliseconds(), sync: false)
        }

        mutating func close() {
            guard !self.settings.isStandardOutput, self.descriptor >= 0 else { return }
            Glibc.close(self.descriptor)
            self.descriptor = -1
        }
    }
}
