import BouncerCore
import BouncerTLS
import BouncerTestSupport
import Foundation
import Logging
import Testing

@testable import BouncerProxy

@Suite("Certificate reload")
struct TLSReloaderTests {
    let certificates = TestCertificates.shared

    func settings(in directory: URL) throws -> ServerTLSSettings {
        let certificate = directory.appendingPathComponent("live.pem").path
        let key = directory.appendingPathComponent("live.key").path
        try FileManager.default.copyItem(atPath: self.certificates.rsaServer.certificate, toPath: certificate)
        try FileManager.default.copyItem(atPath: self.certificates.rsaServer.key, toPath: key)
        return ServerTLSSettings(certificate: CertificateFiles(certificate: certificate, privateKey: key))
    }

    func scratch() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func aGoodNewFileReplacesTheContextAndABadOneKeepsTheOld() throws {
        let settings = try self.settings(in: try self.scratch())
        let box = ServerTLSContextBox(try TLSContext(configuration: GatewayTLSContexts.serverConfiguration(settings)))
        let reloader = TLSReloader(settings: settings, box: box, logger: Logger(label: "test"))
        let original = box.current

        let before = reloader.fingerprint()
        try FileManager.default.removeItem(atPath: settings.certificate.certificate)
        try FileManager.default.removeItem(atPath: settings.certificate.privateKey)
        try FileManager.default.copyItem(atPath: self.certificates.ecdsaServer.certificate, toPath: settings.certificate.certificate)
        try FileManager.default.copyItem(atPath: self.certificates.ecdsaServer.key, toPath: settings.certificate.privateKey)
        #expect(reloader.fingerprint() != before, "a replaced file is noticed")
        #expect(reloader.reload(reason: "test"))
        #expect(box.current !== original)

        let good = box.current
        try "not a key".write(toFile: settings.certificate.privateKey, atomically: true, encoding: .utf8)
        #expect(!reloader.reload(reason: "test"))
        #expect(box.current === good)
    }

    @Test func loadingReportsEveryBrokenFileWithItsKeyPath() throws {
        let yaml = """
            listen: 127.0.0.1:0
            public_url: https://localhost:8443
            tls:
              certificate: \(self.certificates.rsaServer.certificate)
              private_key: \(self.certificates.ecdsaServer.key)
            authorization_servers:
              a:
                issuer: https://as.example.test
                tls: { ca_file: /nonexistent/ca.pem }
            resources:
              - path: /mcp
                authorization_server: a
                upstream: https://localhost:1/mcp
                upstream_tls: { ca_file: \(self.certificates.caCertificate) }
                methods: { initialize: [] }
            """
        let policy = try PolicyLoader.load(yaml: yaml, secrets: .empty)
        do {
            _ = try GatewayTLSContexts.load(policy, logger: Logger(label: "test"))
            Issue.record("expected failures")
        } catch {
            #expect(error.errors.map(\.keyPath).sorted() == ["authorization_servers.a.tls", "tls"])
            #expect(error.description.contains("does not match the certificate"))
        }
    }
}
