import Foundation
/// Reads samples from the Prometheus text exposition format, independently of the library
/// that wrote it: `name{label="value",...} number`.
enum PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    static func samples(_ text: String) -> [Sample] {
        text.split(separator: "\n").compactMap { line -> Sample? in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else { return Sample(name: String(series), labels: [:], value: value) }
            var labels: [String: String] = [:]
            var rest = series[series.index(after: brace)...].dropLast()
            while let equals = rest.firstIndex(of: "=") {
                let key = String(rest[..<equals]).trimmingCharacters(in: [","])
                var cursor = rest.index(equals, offsetBy: 2)
                var value = ""
                while cursor < rest.endIndex, rest[cursor] != "\"" {
                    if rest[cursor] == "\\" { cursor = rest.index(after: cursor) }
                    value.append(rest[cursor])
                    cursor = rest.index(after: cursor)
                }
                labels[key] = value
                rest = rest[rest.index(after: cursor)...]
            }
            return Sample(name: String(series[..<brace]), labels: labels, value: value)
        }
    }

    /// The value of the one sample with `name` whose labels include `labels`; nil when none.
    static func value(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = self.samples(text).filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        return matching.count == 1 ? matching[0].value : nil
    }
}
