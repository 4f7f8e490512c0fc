extension String {
    /// ASCII case-insensitive prefix test, for media types and similar tokens.
    public func hasPrefixIgnoringASCIICase(_ prefix: String) -> Bool {
        self.utf8.count >= prefix.utf8.count && equalIgnoringASCIICase(self.utf8.prefix(prefix.utf8.count), prefix.utf8[...])
    }

    /// ASCII case-insensitive equality, as HTTP field names compare (RFC 9110 5.1). Bytes
    /// outside ASCII compare exactly.
    public func equalsIgnoringASCIICase(_ other: String) -> Bool {
        equalIgnoringASCIICase(self.utf8, other.utf8)
    }
}

extension Substring {
    /// ASCII case-insensitive prefix test, for media types and similar tokens.
    public func hasPrefixIgnoringASCIICase(_ prefix: Substring) -> Bool {
        self.utf8.count >= prefix.utf8.count && equalIgnoringASCIICase(self.utf8.prefix(prefix.utf8.count), prefix.utf8)
    }

    /// ASCII case-insensitive equality, as HTTP field names compare (RFC 9110 5.1). Bytes
    /// outside ASCII compare exactly.
    public func equalsIgnoringASCIICase(_ other: Substring) -> Bool {
        equalIgnoringASCIICase(self.utf8, other.utf8)
    }
}

/// Specialised for each view type at its call sites in this file.
private func equalIgnoringASCIICase<View: Collection<UInt8>>(_ mine: View, _ theirs: View) -> Bool {
    guard mine.count == theirs.count else { return false }
    let contiguous = mine.withContiguousStorageIfAvailable { mine in
        theirs.withContiguousStorageIfAvailable { theirs in
            for index in mine.indices where mine[index] != theirs[index] {
                guard asciiLowercase(mine[index]) == asciiLowercase(theirs[index]) else { return false }
            }
            return true
        }
    }
    if let contiguous, let result = contiguous { return result }
    return mine.elementsEqual(theirs) { asciiLowercase($0) == asciiLowercase($1) }
}

@inline(__always)
func asciiLowercase(_ byte: UInt8) -> UInt8 {
    (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
}

/// Whether two runs of bytes of the same length are equal, eight at a time (a token is
/// hundreds of bytes, compared on every request of a connection).
func sameBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    var offset = 0
    while offset + 8 <= a.count {
        guard a.loadUnaligned(fromByteOffset: offset, as: UInt64.self) == b.loadUnaligned(fromByteOffset: offset, as: UInt64.self) else { return false }
        offset += 8
    }
    while offset < a.count {
        guard a[offset] == b[offset] else { return false }
        offset += 1
    }
    return true
}
