import BouncerCore
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

import BouncerProxy

/// What the loopback suites share: an event loop group, the stand-in backend publishing a
/// signing key, and helpers to start a gateway and mint tokens for it.
package final class LoopbackHarness {
    package let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    package let backend: LoopbackBackend
    package let signer = TestSigner.p256(kid: "k1")
    /// Only compared as a string: nothing is fetched from it (the JWKS URI is configured).
    package let issuer = "http://127.0.0.1:1/issuer"
    /// The gateways' public URL; tokens name `\(publicURL)/mcp`.
    package let publicURL = "http://127.0.0.1:8443"

    /// A gateway the harness started: its application (for its gateway, audit trail and
    /// metrics), its listener, and the admin listener or the policy reloader when it has one.
    package struct Running {
        package let application: GatewayApplication
        package let server: any Channel
        package var admin: (any Channel)?
        package var reloader: PolicyReloader?
        package var port: Int { self.server.localAddress!.port! }
        package var adminPort: Int? { self.admin?.localAddress?.port }
        package var gateway: Gateway { self.application.gateway }

        package init(application: GatewayApplication, server: any Channel, admin: (any Channel)? = nil, reloader: PolicyReloader? = nil) {
            self.application = application
            self.server = server
            self.admin = admin
            self.reloader = reloader
        }

        /// Closes the listeners and stops the audit trail (its `stop` record and last checkpoint).
        package func stop() {
            try? self.server.close().wait()
            try? self.admin?.close().wait()
            self.application.gateway.audit?.stop()
        }
    }

    package init() throws {
        self.backend = try LoopbackBackend(group: self.group)
        self.backend.setJWKS(TestSigner.jwks([self.signer]))
    }

    deinit {
        try? self.backend.close()
        try? self.group.syncShutdownGracefully()
    }

    /// Binds a gateway for `yaml` on a free port (and its admin listener, when the policy has one).
    package func start(_ yaml: String, secrets: SecretSource = .empty) throws -> Running {
        let policy = try PolicyLoader.load(yaml: yaml, secrets: secrets)
        let application = try GatewayApplication(policy: policy, group: self.group, logger: Logger(label: "test"))
        let server = try application.server.bind().wait()
        return Running(application: application, server: server, admin: try application.admin?.bind().wait())
    }

    /// Binds a gateway for `policy` on a free port.
    package func start(_ policy: LoopbackPolicy, secrets: SecretSource = .empty) throws -> Running {
        try self.start(policy.yaml, secrets: secrets)
    }

    package func token(subject: String = "alice", scope: String = "read", signer: TestSigner? = nil, resource: String = "/mcp") -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let claims = #"{"iss":"\#(self.issuer)","sub":"\#(subject)","aud":"\#(self.publicURL)\#(resource)","exp":\#(now + 300),"iat":\#(now),"scope":"\#(scope)"}"#
        return (signer ?? self.signer).sign(claims)
    }

    /// The session id a client of `gateway` holds for the upstream's `upstreamID`, sealed for
    /// `subject`'s tokens from ``token(subject:scope:signer:)`` at `/mcp`.
    package func sealedSession(_ upstreamID: String, gateway: Gateway, subject: String = "alice", resource: String = "/mcp") -> String {
        let binding = SessionBinding(resource: resource, issuer: self.issuer, subject: "sub:\(subject)", clientID: "")
        return gateway.sessions.seal(upstreamID, for: binding, now: Int64(Date().timeIntervalSince1970))!
    }

    /// A `tools/call` POST to `/mcp` as raw bytes, for tests that pipeline, trickle or inspect
    /// the wire; `fields` are extra header lines, each ending in CRLF.
    package func wire(id: Int = 1, token: String? = nil, body: String? = nil, fields: String = "") -> String {
        let body = body ?? #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"echo"}}"#
        return "POST /mcp HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token ?? self.token())\r\nContent-Type: application/json\r\n"
            + "Accept: application/json, text/event-stream\r\n\(fields)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// POSTs a `tools/call` to the gateway's `/mcp`.
    package func call(port: Int, token: String?, id: Int = 1, tool: String = "echo", headers: [(String, String)] = []) throws -> TestClient.Response {
        var all = headers
        if let token { all.append(("Authorization", "Bearer \(token)")) }
        return try TestClient(group: self.group).send(
            port: port, uri: "/mcp", headers: all,
            body: #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"\#(tool)"}}"#
        )
    }
}
