import BouncerCore
import BouncerTestSupport
import Logging
import NIOConcurrencyHelpers
import Testing

@testable import BouncerProxy

/// Decision-log lines: what a request's lines carry, and that nothing is rendered for a line
/// below the log level.
@Suite("Request log")
struct RequestLogTests {
    final class Capture: LogHandler, @unchecked Sendable {
        let lines = NIOLockedValueBox<[(Logger.Level, String, Logger.Metadata)]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .notice
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            self.lines.withLockedValue { $0.append((event.level, "\(event.message)", event.metadata ?? [:])) }
        }
    }

    @Test func linesCarryTheRequestAndItsDecisionContext() throws {
        let capture = Capture()
        var log = RequestLog(logger: Logger(label: "test", factory: { _ in capture }), connectionID: "c1", sequence: 7, method: "POST", peer: "192.0.2.1")
        log.resource = "/jira/mcp"
        log.subject = "alice"
        log.clientID = "agent"
        log.body = try JSONRPCBody.parse(Array(#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#.utf8), maxDepth: 16)
        log.notice("request refused", metadata: ["outcome": "rejected", "subject": "overridden"])
        let line = try #require(capture.lines.withLockedValue { $0.first })
        #expect(line.0 == .notice)
        #expect(line.1 == "request refused")
        #expect(line.2["request_id"] == "c1-7")
        #expect(line.2["http_method"] == "POST")
        #expect(line.2["peer"] == "192.0.2.1")
        #expect(line.2["resource"] == "/jira/mcp")
        #expect(line.2["client_id"] == "agent")
        #expect(line.2["operation"] == "tools/call create_issue, notifications/initialized")
        #expect(line.2["outcome"] == "rejected")
        #expect(line.2["subject"] == "overridden", "a line's own metadata wins")
        #expect(line.2["client_cert"] == nil)
    }

    @Test func linesBelowTheLevelAreNeitherWrittenNorRendered() {
        let capture = Capture()
        let log = RequestLog(logger: Logger(label: "test", factory: { _ in capture }), connectionID: "c1", sequence: 1, method: "GET", peer: "p")
        var rendered = false
        log.info("request allowed", metadata: {
            rendered = true
            return ["outcome": "allowed"]
        }())
        #expect(capture.lines.withLockedValue { $0.isEmpty })
        #expect(!rendered)
        #expect(!log.isEnabled(.info))
        #expect(log.isEnabled(.error))
    }
}
