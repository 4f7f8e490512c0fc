import ArgumentParser
import BouncerCore
import Crypto
import Foundation

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make audit signing keys and verify audit files.",
        subcommands: [Keygen.self, Verify.self]
    )

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new Ed25519 signing key (PEM PKCS#8, mode 0600) for audit.signing_key and print its public key."
        )

        @Option(name: .long, help: "Where to write the private key; an existing file is not overwritten.")
        var out: String

        func run() throws {
            let signer = AuditSigner(key: Curve25519.Signing.PrivateKey())
            let descriptor = open(self.out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                throw ValidationError("cannot create \(self.out): \(String(cString: strerror(errno)))")
            }
            defer { close(descriptor) }
            let pem = Array(signer.privateKeyPEM.utf8)
            guard pem.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) == pem.count, fsync(descriptor) == 0 else {
                throw ValidationError("cannot write \(self.out): \(String(cString: strerror(errno)))")
            }
            say("wrote \(self.out) (key id \(signer.keyID)); the public key, for mcp-bouncer audit verify --public-key:")
            FileHandle.standardOutput.write(AuditSigner.publicKeyPEM(signer.publicKey))
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the hash chain (and, with --public-key, every checkpoint's signature) across audit files, in the order given.",
            discussion: "Exits 0 when every record verifies; otherwise 1, naming the file and line of the first break."
        )

        @Argument(help: "Audit files, oldest first (rotated files before the current one).")
        var files: [String]

        @Option(name: .long, help: "The signing key's public key (PEM), as `audit keygen` printed it. Without it, the chain alone is checked.")
        var publicKey: String?

        func run() throws {
            var stderr = FileHandle.standardError
            var key: Curve25519.Signing.PublicKey?
            if let path = self.publicKey {
                guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw ValidationError("cannot read \(path)")
                }
                do {
                    key = try AuditSigner.publicKey(pem: pem)
                } catch {
                    throw ValidationError("\(path): \(error.reason)")
                }
            }
            var verifier = AuditVerifier(publicKey: key)
            for file in self.files {
                guard let data = FileManager.default.contents(atPath: file) else {
                    print("\(file): cannot read the file", to: &stderr)
                    throw ExitCode(1)
                }
                verifier.beginFile(file)
                let bytes = [UInt8](data)
                var lineNumber = 0
                var start = 0
                while start < bytes.count {
                    let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                    lineNumber += 1
                    if let failure = verifier.verify(line: bytes[start..<end], number: lineNumber) {
                        print("FAILED \(failure.file):\(failure.line): \(failure.kind.rawValue): \(failure.message)", to: &stderr)
                        throw ExitCode(1)
                    }
                    start = end + 1
                }
            }
            if let failure = verifier.finish() {
                print("FAILED \(failure.file):\(failure.line): \(failure.kind.rawValue): \(failure.message)", to: &stderr)
                throw ExitCode(1)
            }
            let signatures = key == nil ? "chain only (no --public-key: signatures not checked)" : "chain and signatures"
            say("OK: \(verifier.records) records (\(verifier.checkpoints) checkpoints) in \(self.files.count) file\(self.files.count == 1 ? "" : "s") verified, \(signatures)")
        }
    }
}
