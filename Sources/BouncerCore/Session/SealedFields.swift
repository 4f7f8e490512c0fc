import Crypto

/// The plaintext layout of what the gateway seals for clients (session ids, a bridged call's
/// `requestState`): big-endian integers and length-prefixed UTF-8 fields, read back
/// defensively even though the AEAD already authenticated them.
enum SealedFields {
    static func append(_ value: Int64, to out: inout [UInt8]) {
        withUnsafeBytes(of: UInt64(bitPattern: value).bigEndian) { out.append(contentsOf: $0) }
    }

    /// A field of at most 65,535 bytes (longer is cut: callers bound what they seal).
    static func append(_ field: String, to out: inout [UInt8]) {
        let count = min(field.utf8.count, Int(UInt16.max))
        out.append(UInt8(count >> 8))
        out.append(UInt8(count & 0xFF))
        out.append(contentsOf: field.utf8.prefix(count))
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var atEnd: Bool { self.offset == self.bytes.count }

        mutating func byte() -> UInt8? {
            guard self.offset < self.bytes.count else { return nil }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        mutating func int64() -> Int64? {
            guard self.bytes.count - self.offset >= 8 else { return nil }
            var value: UInt64 = 0
            for byte in self.bytes[self.offset..<self.offset + 8] { value = value << 8 | UInt64(byte) }
            self.offset += 8
            return Int64(bitPattern: value)
        }

        mutating func field() -> String? {
            guard let high = self.byte(), let low = self.byte() else { return nil }
            let count = Int(high) << 8 | Int(low)
            guard self.bytes.count - self.offset >= count else { return nil }
            defer { self.offset += count }
            return String(validating: self.bytes[self.offset..<self.offset + count], as: UTF8.self)
        }
    }
}

/// The envelope around what the gateway seals for clients: `<version>.<key id>.<base64url(nonce
/// | ciphertext | tag)>`, AES-256-GCM under the first session key (every key opens), with the
/// version, the key id and what the text is for (`purpose`) authenticated as additional data,
/// so a sealed text of one purpose never opens as another's.
struct SealedEnvelope {
    let purpose: String
    let version: String
    let maxLength: Int

    enum Failure: Error, Equatable {
        case malformed
        case unknownKey(String)
        case forged
    }

    func seal(_ plain: [UInt8], keys: [SessionKey], nonce: AES.GCM.Nonce) -> String? {
        let key = keys[0]
        guard let box = try? AES.GCM.seal(plain, using: key.key, nonce: nonce, authenticating: self.additionalData(keyID: key.id)),
              let combined = box.combined
        else { return nil }
        let sealed = "\(self.version).\(key.id).\(Base64URL.encode(Array(combined)))"
        return sealed.utf8.count <= self.maxLength ? sealed : nil
    }

    /// The plaintext of `text`. `otherVersion` is what another version is: `.malformed` (not
    /// this kind of text at all, said before any key is looked up) or `.forged` (read as one,
    /// and refused as not authentic).
    func open(_ text: String, keys: [SessionKey], otherVersion: Failure) -> Result<[UInt8], Failure> {
        guard text.utf8.count <= self.maxLength else { return .failure(.malformed) }
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let keyID = String(parts[1]), SessionKey.isValidID(keyID),
              parts[2].allSatisfy(Base64URL.isAlphabet), let bytes = Base64URL.decode(parts[2]), bytes.count >= 12 + 16
        else { return .failure(.malformed) }
        let sameVersion = parts[0].elementsEqual(self.version.utf8)
        if !sameVersion, otherVersion == .malformed { return .failure(.malformed) }
        guard let key = keys.first(where: { $0.id == keyID }) else { return .failure(.unknownKey(keyID)) }
        guard sameVersion, let box = try? AES.GCM.SealedBox(combined: bytes),
              let plain = try? AES.GCM.open(box, using: key.key, authenticating: self.additionalData(keyID: keyID))
        else { return .failure(.forged) }
        return .success(Array(plain))
    }

    private func additionalData(keyID: String) -> [UInt8] {
        Array("mcp-bouncer \(self.purpose) \(self.version) \(keyID)".utf8)
    }
}
