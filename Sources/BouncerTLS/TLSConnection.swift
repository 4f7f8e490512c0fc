internal import CBouncerOpenSSL
import NIOCore

/// One TLS session: an `SSL*` between two memory BIOs. Ciphertext from the network goes into
/// one, ciphertext to send comes out of the other; OpenSSL never touches a socket.
///
/// Not thread-safe; owned by one ``TLSHandler`` on one event loop.
final class TLSConnection {
    enum Status: Equatable {
        case complete
        /// Needs more ciphertext from the peer.
        case wantRead
        /// The peer sent close_notify.
        case closed
        case failed(TLSError)
    }

    let context: TLSContext
    private let ssl: OpaquePointer
    private let networkIn: OpaquePointer
    private let networkOut: OpaquePointer

    init(context: TLSContext, serverHostname: String?) throws(TLSError) {
        _ = drainErrorQueue()
        guard let ssl = SSL_new(context.context) else { throw TLSError.fromQueue(.configuration, "cannot create an SSL session") }
        guard let networkIn = BIO_new(BIO_s_mem()), let networkOut = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError.fromQueue(.configuration, "cannot create memory BIOs")
        }
        _ = bouncer_BIO_set_mem_eof_return(networkIn, -1)
        _ = bouncer_BIO_set_mem_eof_return(networkOut, -1)
        SSL_set_bio(ssl, networkIn, networkOut)  // the SSL owns both BIOs from here on
        self.context = context
        self.ssl = ssl
        self.networkIn = networkIn
        self.networkOut = networkOut

        switch context.configuration.role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            if let serverHostname {
                let isIP = Self.isIPAddress(serverHostname)
                if !isIP {
                    // RFC 6066: SNI carries host names, never IP literals.
                    guard bouncer_SSL_set_tlsext_host_name(ssl, serverHostname) == 1 else {
                        throw TLSError.fromQueue(.configuration, "cannot set SNI \(serverHostname)")
                    }
                }
                if !context.configuration.insecureSkipVerify {
                    let ok = isIP
                        ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverHostname)
                        : SSL_set1_host(ssl, serverHostname)
                    guard ok == 1 else { throw TLSError.fromQueue(.configuration, "cannot set the expected peer name \(serverHostname)") }
                }
            } else if !context.configuration.insecureSkipVerify {
                throw TLSError(.configuration, "a verifying client needs the server's host name")
            }
        }
    }

    deinit {
        SSL_free(self.ssl)
    }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || (host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." })
    }

    /// Hands ciphertext received from the network to OpenSSL.
    func consume(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                // A memory BIO grows as needed, so this only stops on allocation failure.
                let written = BIO_write(self.networkIn, bytes.baseAddress! + offset, Int32(min(bytes.count - offset, Int(Int32.max))))
                guard written > 0 else { return }
                offset += Int(written)
            }
        }
    }

    /// Ciphertext OpenSSL wants sent, if any.
    func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = BIO_ctrl_pending(self.networkOut)
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: Int(pending))
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(pending)) { pointer in
            Int(max(0, BIO_read(self.networkOut, pointer.baseAddress, Int32(pending))))
        }
        return buffer
    }

    func handshake() -> Status {
        _ = drainErrorQueue()
        let result = SSL_do_handshake(self.ssl)
        if result == 1 { return .complete }
        return self.status(for: result, failure: .handshakeFailed, "handshake failed")
    }

    /// Decrypts as much as is available into `buffer`.
    func read(into buffer: inout ByteBuffer) -> Status {
        while true {
            _ = drainErrorQueue()
            var count = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16 * 1024) { pointer -> Int in
                count = Int(SSL_read(self.ssl, pointer.baseAddress, Int32(pointer.count)))
                return max(count, 0)
            }
            if count > 0 { continue }
            return self.status(for: Int32(count), failure: .readFailed, "read failed")
        }
    }

    /// Encrypts all of `buffer`. With memory BIOs a write never has to wait for the network,
    /// but it may need the handshake to progress (renegotiation is disabled, TLS 1.3 key
    /// updates are handled inside OpenSSL).
    func write(_ buffer: ByteBuffer) -> Status {
        var failure: Status?
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                _ = drainErrorQueue()
                let written = SSL_write(self.ssl, bytes.baseAddress! + offset, Int32(min(bytes.count - offset, 1 << 30)))
                if written > 0 {
                    offset += Int(written)
                    continue
                }
                failure = self.status(for: written, failure: .writeFailed, "write failed")
                return
            }
        }
        return failure ?? .complete
    }

    /// Sends close_notify. `.complete` once both sides have sent theirs.
    func shutdown() -> Status {
        _ = drainErrorQueue()
        let result = SSL_shutdown(self.ssl)
        switch result {
        case 1: return .complete
        case 0: return .wantRead
        default: return self.status(for: result, failure: .writeFailed, "shutdown failed")
        }
    }

    private func status(for result: Int32, failure: TLSError.Code, _ reason: String) -> Status {
        switch SSL_get_error(self.ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantRead
        case SSL_ERROR_ZERO_RETURN: return .closed
        default:
            var error = TLSError.fromQueue(failure, reason)
            let verify = SSL_get_verify_result(self.ssl)
            if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
                error.details.append("certificate verification: \(String(cString: text))")
            }
            return .failed(error)
        }
    }

    var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(self.ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var protocolVersion: String { String(cString: SSL_get_version(self.ssl)) }
    var cipher: String { SSL_get_current_cipher(self.ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "" }

    /// The peer's certificate (DER) after a handshake in which it was verified, if it sent one.
    var peerCertificate: [UInt8]? {
        guard let certificate = SSL_get1_peer_certificate(self.ssl) else { return nil }
        defer { X509_free(certificate) }
        guard SSL_get_verify_result(self.ssl) == X509_V_OK else { return nil }
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509(certificate, &output)
        guard length > 0, let output else { return nil }
        defer { CRYPTO_free(output, #fileID, #line) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }
}
