import Foundation

/// Certificates made at test time with the openssl CLI (never committed): a CA, server
/// certificates (RSA and ECDSA) for several names, a client certificate, and a second CA
/// nobody trusts.
public struct TestCertificates: Sendable {
    public let directory: URL

    public struct Pair: Sendable {
        public let certificate: String
        public let key: String
    }

    public var caCertificate: String { self.path("ca.pem") }
    public var otherCACertificate: String { self.path("other-ca.pem") }
    /// RSA, for `localhost`, `127.0.0.1` and `mcp.example.test`.
    public var rsaServer: Pair { Pair(certificate: self.path("server-rsa.pem"), key: self.path("server-rsa.key")) }
    /// ECDSA P-256, same names.
    public var ecdsaServer: Pair { Pair(certificate: self.path("server-ec.pem"), key: self.path("server-ec.key")) }
    /// ECDSA, only for `other.example.test` (for SNI selection).
    public var otherServer: Pair { Pair(certificate: self.path("other.pem"), key: self.path("other.key")) }
    /// Signed by the untrusted CA.
    public var untrustedServer: Pair { Pair(certificate: self.path("untrusted.pem"), key: self.path("untrusted.key")) }
    public var client: Pair { Pair(certificate: self.path("client.pem"), key: self.path("client.key")) }

    func path(_ name: String) -> String { self.directory.appendingPathComponent(name).path }

    /// Made once per test process, and removed when it exits (the keys in it are throwaway,
    /// but /tmp is no place to pile them up run after run).
    public static let shared: TestCertificates = {
        do {
            let made = try TestCertificates()
            atexit { try? FileManager.default.removeItem(at: TestCertificates.shared.directory) }
            return made
        } catch {
            fatalError("cannot generate test certificates with the openssl CLI: \(error)")
        }
    }()

    public init() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("bouncer-certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        let names = "subjectAltName=DNS:localhost,DNS:mcp.example.test,IP:127.0.0.1"
        try self.makeCA("ca", subject: "/CN=mcp-bouncer test CA")
        try self.makeCA("other-ca", subject: "/CN=untrusted test CA")
        try self.makeLeaf("server-rsa", ca: "ca", key: ["-newkey", "rsa:2048"], subject: "/CN=localhost", extensions: names)
        try self.makeLeaf("server-ec", ca: "ca", key: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], subject: "/CN=localhost", extensions: names)
        try self.makeLeaf("other", ca: "ca", key: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], subject: "/CN=other.example.test", extensions: "subjectAltName=DNS:other.example.test")
        try self.makeLeaf("untrusted", ca: "other-ca", key: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], subject: "/CN=localhost", extensions: names)
        try self.makeLeaf("client", ca: "ca", key: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], subject: "/CN=agent-1", extensions: "extendedKeyUsage=clientAuth")
    }

    private func makeCA(_ name: String, subject: String) throws {
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                          "-subj", subject, "-keyout", self.path("\(name).key"), "-out", self.path("\(name).pem"),
                          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    private func makeLeaf(_ name: String, ca: String, key: [String], subject: String, extensions: String) throws {
        try Self.openssl(["req"] + key + ["-nodes", "-subj", subject, "-keyout", self.path("\(name).key"), "-out", self.path("\(name).csr")])
        let extFile = self.path("\(name).ext")
        try "\(extensions)\nbasicConstraints=CA:FALSE\n".write(toFile: extFile, atomically: true, encoding: .utf8)
        try Self.openssl(["x509", "-req", "-in", self.path("\(name).csr"), "-CA", self.path("\(ca).pem"), "-CAkey", self.path("\(ca).key"),
                          "-CAcreateserial", "-days", "2", "-extfile", extFile, "-out", self.path("\(name).pem")])
    }

    static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw NSError(domain: "openssl", code: Int(process.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "openssl \(arguments.joined(separator: " ")): \(message)"])
        }
    }
}
