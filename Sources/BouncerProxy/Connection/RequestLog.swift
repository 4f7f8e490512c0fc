import BouncerCore
import Logging

/// A request's decision log: the gateway's logger plus what is known about the request,
/// kept as plain fields and rendered into metadata only when a line is actually logged.
///
/// Setting metadata on a `Logger` makes some handlers (swift-log's `StreamLogHandler` among
/// them) re-render all of it on every change, and even a dictionary of interpolated strings
/// costs a handful of allocations per request. At the usual `notice` level an allowed request
/// logs nothing, so it should pay nothing: the fields are cheap copies (strings are shared,
/// the parsed body is referenced) until `log` renders them.
struct RequestLog {
    let logger: Logger
    let connectionID: String
    let sequence: Int
    let method: String
    let peer: String
    var clientCertificate: String?
    var resource: String?
    var subject: String?
    var clientID: String?
    /// The parsed JSON-RPC body: its operations (`tools/call create_issue`, ...) are named
    /// only when a line is written.
    var body: JSONRPCBody?

    init(logger: Logger, connectionID: String, sequence: Int, method: String, peer: String) {
        self.logger = logger
        self.connectionID = connectionID
        self.sequence = sequence
        self.method = method
        self.peer = peer
    }

    /// The request's id in log lines and audit records: the connection's id and the request's
    /// number on it.
    var requestID: String { "\(self.connectionID)-\(self.sequence)" }

    /// What every line of this request carries.
    var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "request_id": "\(self.requestID)",
            "http_method": "\(self.method)",
            "peer": "\(self.peer)",
        ]
        if let clientCertificate { metadata["client_cert"] = "\(clientCertificate)" }
        if let resource { metadata["resource"] = "\(resource)" }
        if let subject { metadata["subject"] = "\(subject)" }
        if let clientID { metadata["client_id"] = "\(clientID)" }
        if let body {
            let operations = body.messages.map { message in
                OperationLabel(method: message.method ?? "(response)", target: try? message.target()).description
            }
            metadata["operation"] = "\(operations.joined(separator: ", "))"
        }
        return metadata
    }

    func isEnabled(_ level: Logger.Level) -> Bool {
        self.logger.logLevel <= level
    }

    func log(level: Logger.Level, _ message: @autoclosure () -> Logger.Message, metadata extra: @autoclosure () -> Logger.Metadata = [:]) {
        guard self.isEnabled(level) else { return }
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
