import BouncerCore
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import BouncerProxy

/// The records of an audit file, parsed.
package func auditRecords(at path: String) throws -> [[String: JSONValue]] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
        guard let record = try JSONParser().parse(Array(line.utf8)).objectValue else { throw AuditFileError(line: String(line)) }
        return record
    }
}

/// A line of an audit file that is not a JSON object.
package struct AuditFileError: Error, CustomStringConvertible {
    package var line: String
    package var description: String { "not an audit record: \(self.line)" }
}

/// Polls `condition` until it holds or `timeout` passes; for effects on other threads.
package func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}
