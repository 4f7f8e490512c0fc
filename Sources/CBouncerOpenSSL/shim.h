// The system OpenSSL (libssl-dev, 3.x) for mcp-bouncer's TLS.
//
// OpenSSL exposes several operations only as macros, which Swift cannot call; the static
// inline functions below wrap them with the same meaning.
#ifndef C_BOUNCER_OPENSSL_SHIM_H
#define C_BOUNCER_OPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline int bouncer_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int bouncer_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline long bouncer_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline int bouncer_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}

static inline int bouncer_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

typedef int (*bouncer_servername_callback)(SSL *ssl, int *alert, void *arg);

static inline void bouncer_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, bouncer_servername_callback callback, void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, callback);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

static inline long bouncer_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

static inline int bouncer_TLS1_VERSION(void) { return TLS1_VERSION; }
static inline int bouncer_TLS1_1_VERSION(void) { return TLS1_1_VERSION; }
static inline int bouncer_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
static inline int bouncer_TLS1_3_VERSION(void) { return TLS1_3_VERSION; }

static inline long bouncer_SSL_MODE_defaults(void) {
    // Writes may be retried with a different buffer address (the handler's ByteBuffer moves),
    // and partial writes are accepted.
    return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS;
}

static inline unsigned long bouncer_SSL_OP_defaults(void) {
    return SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
}

static inline long bouncer_SSL_SESS_CACHE_SERVER(void) { return SSL_SESS_CACHE_SERVER; }

// A memory BIO that is empty should say "retry later", not "end of file": more ciphertext may
// still arrive from the network.
static inline long bouncer_BIO_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}

static inline int bouncer_SSL_ERROR_code(int code) { return code; }

#endif
