import BouncerCore
import NIOCore

extension FuzzTarget {
    /// The facts of a head the codec read, made reusing the previous head's Strings (as a
    /// keep-alive connection makes them), are the facts made fresh: for the same head again and
    /// for the lines in another order after it.
    static func factsReuse(_ lines: [Substring]) {
        func head(_ lines: [Substring]) -> HTTP1RequestReader.Head? {
            var reader = HTTP1RequestReader(maxHeadBytes: 70_000, maxFields: 256)
            reader.append(ByteBuffer(string: "POST /mcp HTTP/1.1\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n"))
            guard case .head(let head)? = try? reader.next() else { return nil }
            return head
        }
        guard let first = head(lines) else { return }
        let previous = RequestHeadFacts(first)
        for next in [first, head(lines.reversed())].compactMap({ $0 }) {
            let fresh = String(describing: RequestHeadFacts(next))
            let reusing = String(describing: RequestHeadFacts(next, reusing: previous))
            require(fresh == reusing, "facts reusing the previous head's differ: \(fresh) against \(reusing)")
        }
    }
}
