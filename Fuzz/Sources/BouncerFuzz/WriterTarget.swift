import BouncerCore
import NIOCore

extension FuzzTarget {
    /// The writer of the gateway's own requests (``HTTP1RequestWriter``: discovery, key sets,
    /// token endpoints, `probe`, `pin`), whose targets and fields come from documents other
    /// parties wrote. The input is pieces, each a length byte and that many bytes: the method
    /// (its first byte picks one of the codec's methods, or the rest of the piece is the
    /// method), the target, then names and values. What the writer refuses leaves the buffer
    /// untouched; what it writes has exactly one line per field (no piece ended a line early)
    /// and reads back, by the gateway's codec and by llhttp alike, as one request with that
    /// method, target and those fields, values exactly as given. Framing fields
    /// (Content-Length, Transfer-Encoding) are renamed first: the writer's callers set those
    /// themselves, and a body is not what is fuzzed here.
    static func writer(_ data: [UInt8]) {
        var pieces: [[UInt8]] = []
        var index = 0
        while index < data.count {
            let length = Int(data[index])
            let end = min(data.count, index + 1 + length)
            pieces.append(Array(data[(index + 1)..<end]))
            index = end
        }
        guard pieces.count >= 2 else { return }
        let choice = pieces[0].first.map { Int($0) } ?? 0
        let method = choice < 2 * HTTP1Method.allCases.count
            ? HTTP1Method.allCases[choice % HTTP1Method.allCases.count].name : String(decoding: pieces[0].dropFirst(), as: UTF8.self)
        let target = String(decoding: pieces[1], as: UTF8.self)
        var fields: [(name: String, value: String)] = []
        var piece = 2
        while piece + 1 < pieces.count {
            var name = String(decoding: pieces[piece], as: UTF8.self)
            if name.lowercased() == "content-length" || name.lowercased() == "transfer-encoding" { name = "X-" + name }
            fields.append((name, String(decoding: pieces[piece + 1], as: UTF8.self)))
            piece += 2
        }
        var buffer = ByteBuffer()
        do {
            try HTTP1RequestWriter.write(method: method, target: target, fields: fields, into: &buffer)
        } catch {
            require(buffer.readableBytes == 0, "a refused request left \(buffer.readableBytes) bytes written")
            return
        }
        let bytes = Array(buffer.readableBytesView)
        // Line structure: every CR starts a CRLF, every LF ends one, one line per field.
        var lines = 0
        for (offset, byte) in bytes.enumerated() {
            if byte == UInt8(ascii: "\r") { require(offset + 1 < bytes.count && bytes[offset + 1] == UInt8(ascii: "\n"), "a bare CR written") }
            if byte == UInt8(ascii: "\n") {
                require(offset > 0 && bytes[offset - 1] == UInt8(ascii: "\r"), "a bare LF written")
                lines += 1
            }
        }
        require(lines == fields.count + 2, "\(lines) lines written for \(fields.count) fields: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
        guard HTTP1Method.allCases.contains(where: { $0.name == method }) else { return }
        let ours = Self.ourRequests(bytes, readSize: 0)
        let theirs = Self.llhttpRequests(bytes)
        let written = String(decoding: bytes, as: UTF8.self).debugDescription
        require(!ours.failed && ours.messages.count == 1, "the codec does not read back \(written): \(ours)")
        let message = ours.messages[0]
        require(message.head == [method, target, "1.1"], "read back as \(message.head): \(written)")
        require(message.fields == fields.map { "\($0.name.lowercased()): \($0.value)" }, "fields read back as \(message.fields): \(written)")
        var other = theirs.messages.first
        if !message.persistent { other?.persistent = false }
        require(!theirs.failed && other == message, "llhttp reads \(written) as \(String(describing: other)), the codec as \(message)")
    }
}
