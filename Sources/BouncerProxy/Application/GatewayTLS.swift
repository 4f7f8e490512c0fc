import BouncerCore
import BouncerTLS
import Logging
import NIOConcurrencyHelpers

/// A TLS context that failed to load, with the policy key it came from.
package struct GatewayTLSError: Error, Sendable, CustomStringConvertible {
    package var keyPath: String
    package var error: TLSError
    package var description: String { "\(self.keyPath): \(self.error)" }
}

/// Every TLS context a policy needs, loaded from the files it names.
///
/// > Warning: Loading reads files: call it at startup or from a task, never on an event loop.
package struct GatewayTLSContexts: Sendable {
    /// Client-facing, when the policy has `tls:`; swapped on reload.
    package var server: ServerTLSContextBox?
    /// Per authorization server name, used when its URLs are https.
    var authorizationServers: [String: TLSContext] = [:]
    /// Per resource path, for https upstreams.
    var upstreams: [String: TLSContext] = [:]

    package init() {}

    /// Loads every context, collecting every failure.
    package static func load(_ policy: GatewayPolicy, logger: Logger) throws(TLSLoadErrors) -> GatewayTLSContexts {
        var contexts = GatewayTLSContexts()
        var errors: [GatewayTLSError] = []
        if let settings = policy.tls {
            do {
                contexts.server = ServerTLSContextBox(try TLSContext(configuration: Self.serverConfiguration(settings)))
            } catch {
                errors.append(GatewayTLSError(keyPath: "tls", error: error))
            }
        }
        for (name, server) in policy.authorizationServers {
            do {
                contexts.authorizationServers[name] = try Self.clientContext(server.tls, what: "authorization server \(name)", logger: logger)
            } catch {
                errors.append(GatewayTLSError(keyPath: "authorization_servers.\(name).tls", error: error))
            }
        }
        for (index, resource) in policy.resources.enumerated() where resource.upstream.uri.scheme == "https" {
            do {
                contexts.upstreams[resource.path] = try Self.clientContext(resource.upstreamTLS, what: "upstream \(resource.upstream)", logger: logger)
            } catch {
                errors.append(GatewayTLSError(keyPath: "resources[\(index)].upstream_tls", error: error))
            }
        }
        guard errors.isEmpty else { throw TLSLoadErrors(errors: errors) }
        return contexts
    }

    package static func serverConfiguration(_ settings: ServerTLSSettings) -> TLSConfiguration {
        func pair(_ files: CertificateFiles) -> TLSConfiguration.CertifiedKey {
            .init(certificateChain: files.certificate, privateKey: files.privateKey)
        }
        return .server(
            certificate: pair(settings.certificate),
            sniCertificates: settings.sniCertificates.mapValues(pair),
            minimumVersion: settings.minimumVersion.tlsVersion,
            clientCA: settings.clientCA,
            clientVerification: settings.clientVerification.tlsVerification
        )
    }

    static func clientContext(_ settings: ClientTLSSettings, what: String, logger: Logger) throws(TLSError) -> TLSContext {
        if settings.insecureSkipVerify {
            logger.warning("TLS VERIFICATION IS OFF: insecure_skip_verify is set, so any certificate is accepted and the connection can be intercepted", metadata: ["peer": "\(what)"])
        }
        return try TLSContext(configuration: .client(
            trustRoots: settings.caFile.map { .file($0) } ?? .system,
            certificate: settings.clientCertificate.map { .init(certificateChain: $0.certificate, privateKey: $0.privateKey) },
            applicationProtocols: ["http/1.1"],
            insecureSkipVerify: settings.insecureSkipVerify
        ))
    }
}

package struct TLSLoadErrors: Error, Sendable, CustomStringConvertible {
    package var errors: [GatewayTLSError]
    package var description: String { self.errors.map(\.description).joined(separator: "\n") }
}

/// The current client-facing TLS context. New connections read it once; a reload swaps it,
/// and connections already open keep the context they started with.
package final class ServerTLSContextBox: Sendable {
    private let box: NIOLockedValueBox<TLSContext>

    init(_ context: TLSContext) {
        self.box = NIOLockedValueBox(context)
    }

    package var current: TLSContext { self.box.withLockedValue { $0 } }

    func replace(with context: TLSContext) {
        self.box.withLockedValue { $0 = context }
    }
}

extension MinimumTLSVersion {
    var tlsVersion: TLSConfiguration.Version {
        switch self {
        case .tls12: return .tls12
        case .tls13: return .tls13
        }
    }
}

extension ClientCertificateVerification {
    var tlsVerification: TLSConfiguration.ClientVerification {
        switch self {
        case .none: return .none
        case .optional: return .optional
        case .required: return .required
        }
    }
}
