import Logging

/// A request's decision log: the gateway's logger plus the request's metadata, kept in a plain
/// dictionary and attached per log call.
///
/// Setting metadata on a `Logger` makes some handlers (swift-log's `StreamLogHandler` among
/// them) re-render all of it on every change; a request adds half a dozen keys, and the
/// profile showed that as 8% of the request path. Here the keys are collected and only
/// rendered when a line is actually logged.
struct RequestLog {
    let logger: Logger
    private(set) var metadata: Logger.Metadata = [:]

    init(logger: Logger) {
        self.logger = logger
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(level: Logger.Level, _ message: @autoclosure () -> Logger.Message, metadata extra: @autoclosure () -> Logger.Metadata = [:]) {
        guard self.logger.logLevel <= level else { return }
        self.logger.log(level: level, message(), metadata: self.metadata.merging(extra(), uniquingKeysWith: { _, new in new }))
    }

    func debug(_ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        self.log(level: .debug, message(), metadata: metadata())
    }

    func info(_ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        self.log(level: .info, message(), metadata: metadata())
    }

    func notice(_ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        self.log(level: .notice, message(), metadata: metadata())
    }

    func error(_ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata = [:]) {
        self.log(level: .error, message(), metadata: metadata())
    }
}
