import Foundation
import Testing

/// The README's Layout table and its "Where each step lives" table name real places, and every
/// folder of the sources is in the Layout: moving code without the README fails here.
@Suite("README layout")
struct ReadmeLayoutTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func readme() throws -> String {
        try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
    }

    static func section(_ heading: String, of text: String) -> String {
        guard let start = text.range(of: "\n## \(heading)\n") else { return "" }
        let rest = text[start.upperBound...]
        return String(rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)])
    }

    static func directories(_ path: String) throws -> [String] {
        let url = Self.repository.appendingPathComponent(path)
        return try FileManager.default.contentsOfDirectory(atPath: url.path).filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path, isDirectory: &isDirectory) && isDirectory.boolValue
        }.sorted()
    }

    @Test func everyPathInTheLayoutExists() throws {
        let layout = Self.section("Layout", of: try Self.readme())
        let rows = layout.split(separator: "\n").filter { $0.hasPrefix("| `") }
        #expect(rows.count > 10)
        for row in rows {
            let first = row.split(separator: "|")[0]
            for path in first.split(separator: "`").enumerated().filter({ $0.offset % 2 == 1 }).map(\.element) {
                #expect(FileManager.default.fileExists(atPath: Self.repository.appendingPathComponent(String(path)).path), "\(path)")
            }
        }
    }

    @Test func everySourceFolderIsInTheLayout() throws {
        let layout = Self.section("Layout", of: try Self.readme())
        for module in try Self.directories("Sources") {
            #expect(layout.contains("`Sources/\(module)`"), "\(module)")
        }
        for module in ["BouncerCore", "BouncerProxy", "BouncerProbe"] {
            for folder in try Self.directories("Sources/\(module)") {
                #expect(layout.contains("`\(folder)/`"), "\(module)/\(folder)")
            }
        }
    }

    @Test func everyFileTheStepsNameExists() throws {
        let steps = Self.section("What it does to a request", of: try Self.readme())
        let names = steps.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }.filter { $0.hasSuffix(".swift") }
        #expect(names.count > 10)
        for name in names {
            let candidates = [name, "Sources/" + name, "Sources/BouncerProxy/" + name]
            #expect(candidates.contains { FileManager.default.fileExists(atPath: Self.repository.appendingPathComponent($0).path) }, "\(name)")
        }
    }
}
