internal import CBouncerOpenSSL

/// An OpenSSL `SSL_CTX`: certificates, keys, trust, versions, ciphers, ALPN and SNI, built once
/// and shared by every connection that uses it.
///
/// > Warning: Building a context reads files and parses keys. Never build one on an event
/// > loop: do it at startup or from a task (the reloader does).
///
/// `@unchecked Sendable`: the `SSL_CTX` is fully configured in `init` and only read afterwards
/// (OpenSSL documents `SSL_new` on a shared, no longer modified context as thread-safe); the
/// stored Swift properties are immutable.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer
    public let configuration: TLSConfiguration
    /// Contexts chosen by SNI server name (servers only).
    private let sniContexts: [String: TLSContext]
    /// ALPN protocols in wire format, owned here because OpenSSL keeps pointers into it.
    private let alpnWire: UnsafeMutableBufferPointer<UInt8>
    /// Bytes of `alpnWire` in use (the allocation is never empty).
    private let alpnWireCount: Int

    public init(configuration: TLSConfiguration) throws(TLSError) {
        _ = drainErrorQueue()
        let method = configuration.role == .server ? TLS_server_method() : TLS_client_method()
        guard let context = SSL_CTX_new(method) else {
            throw TLSError.fromQueue(.configuration, "cannot create an SSL_CTX")
        }
        self.context = context
        self.configuration = configuration
        var wire: [UInt8] = []
        for proto in configuration.applicationProtocols {
            wire.append(UInt8(truncatingIfNeeded: proto.utf8.count))
            wire.append(contentsOf: proto.utf8)
        }
        self.alpnWire = .allocate(capacity: max(wire.count, 1))
        _ = self.alpnWire.initialize(from: wire)
        self.alpnWireCount = wire.count

        var children: [String: TLSContext] = [:]
        if configuration.role == .server {
            for (name, certificate) in configuration.sniCertificates {
                var child = configuration
                child.certificate = certificate
                child.sniCertificates = [:]
                children[name.lowercased()] = try TLSContext(configuration: child)
            }
        }
        self.sniContexts = children
        try self.configure()
    }

    deinit {
        SSL_CTX_free(self.context)
        self.alpnWire.deallocate()
    }

    private func configure() throws(TLSError) {
        let wireCount = self.alpnWireCount
        let configuration = self.configuration
        let context = self.context
        let minimum = configuration.minimumVersion == .tls13 ? bouncer_TLS1_3_VERSION() : bouncer_TLS1_2_VERSION()
        guard bouncer_SSL_CTX_set_min_proto_version(context, minimum) == 1,
              bouncer_SSL_CTX_set_max_proto_version(context, configuration.maximumVersion == .tls13 ? bouncer_TLS1_3_VERSION() : bouncer_TLS1_2_VERSION()) == 1
        else { throw TLSError.fromQueue(.configuration, "cannot set protocol versions") }
        _ = SSL_CTX_set_options(context, UInt64(bouncer_SSL_OP_defaults()))
        _ = bouncer_SSL_CTX_set_mode(context, bouncer_SSL_MODE_defaults())
        guard SSL_CTX_set_cipher_list(context, TLSConfiguration.tls12Ciphers) == 1 else {
            throw TLSError.fromQueue(.configuration, "cannot set the cipher list")
        }
        guard bouncer_SSL_CTX_set1_groups_list(context, "X25519:P-256:P-384") == 1 else {
            throw TLSError.fromQueue(.configuration, "cannot set the key exchange groups")
        }

        if let certificate = configuration.certificate {
            guard SSL_CTX_use_certificate_chain_file(context, certificate.certificateChain) == 1 else {
                throw TLSError.fromQueue(.configuration, "cannot load the certificate chain \(certificate.certificateChain)")
            }
            guard SSL_CTX_use_PrivateKey_file(context, certificate.privateKey, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError.fromQueue(.configuration, "cannot load the private key \(certificate.privateKey)")
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw TLSError.fromQueue(.configuration, "the private key \(certificate.privateKey) does not match the certificate \(certificate.certificateChain)")
            }
        } else if configuration.role == .server {
            throw TLSError(.configuration, "a server needs a certificate and a private key")
        }

        switch configuration.role {
        case .server:
            _ = bouncer_SSL_CTX_set_session_cache_mode(context, bouncer_SSL_SESS_CACHE_SERVER())
            let sessionContext = Array("mcp-bouncer".utf8)
            _ = SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
            if let clientCA = configuration.clientCA {
                guard SSL_CTX_load_verify_locations(context, clientCA, nil) == 1, let names = SSL_load_client_CA_file(clientCA) else {
                    throw TLSError.fromQueue(.configuration, "cannot load the client CA file \(clientCA)")
                }
                SSL_CTX_set_client_CA_list(context, names)
            }
            switch configuration.clientVerification {
            case .none:
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            case .optional, .required:
                guard configuration.clientCA != nil else {
                    throw TLSError(.configuration, "client certificate verification needs a client CA file")
                }
                let fail = configuration.clientVerification == .required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER | fail, nil)
            }
            let unmanaged = Unmanaged.passUnretained(self).toOpaque()
            if wireCount > 0 {
                SSL_CTX_set_alpn_select_cb(context, alpnSelectCallback, unmanaged)
            }
            if !self.sniContexts.isEmpty {
                bouncer_SSL_CTX_set_tlsext_servername_callback(context, serverNameCallback, unmanaged)
            }
        case .client:
            if configuration.insecureSkipVerify {
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            } else {
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
                switch configuration.trustRoots {
                case .system:
                    guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                        throw TLSError.fromQueue(.configuration, "cannot load the system trust store")
                    }
                case .file(let path):
                    guard SSL_CTX_load_verify_locations(context, path, nil) == 1 else {
                        throw TLSError.fromQueue(.configuration, "cannot load the CA file \(path)")
                    }
                }
            }
            if wireCount > 0 {
                // Note the inverted convention: 0 is success here.
                guard SSL_CTX_set_alpn_protos(context, self.alpnWire.baseAddress, UInt32(wireCount)) == 0 else {
                    throw TLSError.fromQueue(.configuration, "cannot set ALPN protocols")
                }
            }
        }
    }

    /// The context for an SNI server name: exact match, then a one-label wildcard.
    func context(forServerName name: String) -> TLSContext? {
        let name = name.lowercased()
        if let exact = self.sniContexts[name] { return exact }
        if let dot = name.firstIndex(of: ".") {
            return self.sniContexts["*" + name[dot...]]
        }
        return nil
    }

    func selectALPN(offered: UnsafeBufferPointer<UInt8>) -> (UnsafePointer<UInt8>, UInt8)? {
        // Server preference order: the first of ours the client offers.
        var ours = 0
        let wire = UnsafeBufferPointer(self.alpnWire)
        while ours < self.alpnWireCount {
            let length = Int(wire[ours])
            let candidate = UnsafeBufferPointer(rebasing: wire[(ours + 1)..<(ours + 1 + length)])
            var theirs = 0
            while theirs < offered.count {
                let theirLength = Int(offered[theirs])
                guard theirs + 1 + theirLength <= offered.count else { return nil }
                if theirLength == length, Array(offered[(theirs + 1)..<(theirs + 1 + theirLength)]) == Array(candidate) {
                    return (candidate.baseAddress!, UInt8(length))
                }
                theirs += 1 + theirLength
            }
            ours += 1 + length
        }
        return nil
    }
}

private func alpnSelectCallback(
    ssl: OpaquePointer?, out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, outLength: UnsafeMutablePointer<UInt8>?,
    input: UnsafePointer<UInt8>?, inputLength: UInt32, argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let argument, let input, let out, let outLength else { return SSL_TLSEXT_ERR_NOACK }
    let context = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
    guard let (selected, length) = context.selectALPN(offered: UnsafeBufferPointer(start: input, count: Int(inputLength))) else {
        // No common protocol: carry on without ALPN (HTTP/1.1 clients that offer h2 only are rare
        // and get a clear HTTP-level failure rather than a handshake alert).
        return SSL_TLSEXT_ERR_NOACK
    }
    out.pointee = selected
    outLength.pointee = length
    return SSL_TLSEXT_ERR_OK
}

private func serverNameCallback(ssl: OpaquePointer?, alert: UnsafeMutablePointer<Int32>?, argument: UnsafeMutableRawPointer?) -> Int32 {
    guard let ssl, let argument, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
        return SSL_TLSEXT_ERR_OK  // no SNI: the default certificate
    }
    let context = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
    if let chosen = context.context(forServerName: String(cString: name)) {
        SSL_set_SSL_CTX(ssl, chosen.context)
    }
    return SSL_TLSEXT_ERR_OK
}
