import BouncerCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `--log-format json`: the operational log as one JSON object per line on standard error,
/// for log shippers: `ts` (RFC 3339, UTC, milliseconds), `level`, `logger`, `message`, the
/// metadata as members (nested metadata as JSON), and `source` for errors. Each line is one
/// `write(2)`, so lines from different threads never interleave.
package struct JSONLogHandler: LogHandler {
    package var logLevel: Logger.Level
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let descriptor: Int32

    package init(label: String, level: Logger.Level, descriptor: Int32 = STDERR_FILENO) {
        self.label = label
        self.logLevel = level
        self.descriptor = descriptor
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var merged = self.metadata
        if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Self.line(
            at: WallClock.system.milliseconds(), level: event.level, label: self.label, message: "\(event.message)", metadata: merged,
            source: event.level >= .error ? "\(event.file):\(event.line)" : nil
        )
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(self.descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }

    /// One line, without its newline. The fixed members come first; metadata keys that would
    /// replace them are prefixed with `meta_`.
    static func line(at milliseconds: Int64, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, source: String?) -> String {
        var out = "{\"ts\":\"\(RFC3339.format(millisecondsSinceEpoch: milliseconds))\",\"level\":\"\(level.rawValue)\",\"logger\":"
        CanonicalJSON.appendString(label, to: &out)
        out += ",\"message\":"
        CanonicalJSON.appendString(message, to: &out)
        if let source {
            out += ",\"source\":"
            CanonicalJSON.appendString(source, to: &out)
        }
        for key in metadata.keys.sorted() {
            out += ","
            CanonicalJSON.appendString(["ts", "level", "logger", "message", "source"].contains(key) ? "meta_\(key)" : key, to: &out)
            out += ":"
            Self.append(metadata[key]!, to: &out)
        }
        return out + "}"
    }

    private static func append(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let text):
            CanonicalJSON.appendString(text, to: &out)
        case .stringConvertible(let convertible):
            CanonicalJSON.appendString(convertible.description, to: &out)
        case .array(let values):
            out += "["
            for (index, element) in values.enumerated() {
                if index > 0 { out += "," }
                self.append(element, to: &out)
            }
            out += "]"
        case .dictionary(let members):
            out += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                CanonicalJSON.appendString(key, to: &out)
                out += ":"
                self.append(members[key]!, to: &out)
            }
            out += "}"
        }
    }
}

/// `--log-format`.
package enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json

    /// Bootstraps swift-log once for the process.
    package func bootstrap(level: Logger.Level) {
        switch self {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        }
    }
}
