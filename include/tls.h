/* TLS: server SSL_CTX construction (mTLS, CA store with CRL, modern suites, tickets)
 * and key loading. */
#ifndef CERTGATE_TLS_H
#define CERTGATE_TLS_H
#include <openssl/ssl.h>

#include "config.h"

/* Loads cfg->tls.key: a pkcs11: URI through p11.c, or a PEM file (software key, for
 * benchmarks and tests). *out is a new reference. Returns 0/-1 (logged). */
int tls_load_server_key(const struct config *cfg, EVP_PKEY **out);

/* Builds a server SSL_CTX from the config files and the (borrowed) key: certificate
 * chain, key match check, client verification against tls.ca with the CRLs crls
 * (borrowed; from tlscrl_load, required when crl_check) at every level of the chain,
 * TLS >= 1.2, AEAD suites only, no renegotiation/compression, session tickets.
 * Returns NULL on failure (logged, file names included). */
#define TLS_CTX_OPTIONAL_CERT 0x1   /* the enrollment listener: a certificate may be
                                     * absent (one presented is still verified) */
SSL_CTX *tls_ctx_new(const struct config *cfg, EVP_PKEY *key, int flags,
    STACK_OF(X509_CRL) *crls);

/* Writes cert's serial number as uppercase hex without separators (BN_bn2hex, the
 * format identity_peer_from_cert uses) into buf. Returns 0/-1. */
int tls_serial_hex(X509 *cert, char *buf, size_t len);

/* The revocation check a cached session must pass before it may resume (the
 * current revocation list lives in the state, above this file): fn returns 1 when
 * the certificate (its issuer and serial) is revoked. Set by state.c; NULL checks
 * nothing. Thread-safe. */
typedef int (*tls_revoked_check)(X509 *cert);
void tls_set_revoked_check(tls_revoked_check fn);

/* The chain from leaf to a trust anchor of ctx's store, with untrusted (may be NULL)
 * as intermediates, for a certificate verified earlier (a resumed session): paths
 * are built with today's trust store and time, revocation is not re-checked here
 * (the caller's revocation check did that). Returns a new stack (leaf first), or NULL
 * when no path exists any more. */
STACK_OF(X509) *tls_build_chain(SSL_CTX *ctx, X509 *leaf, STACK_OF(X509) *untrusted);
/* What identifies ctx's CA bundle: its session id context (a hash of the contents
 * of tls.ca and the listener kind), which every session made under ctx carries
 * (SSL_SESSION_get0_id_context). Borrowed from ctx, *len bytes; NULL when unknown.
 * Any thread. */
const unsigned char *tls_trust_id(SSL_CTX *ctx, unsigned int *len);
/* The client certificate of a handshake on s whose verification failed (the leaf
 * the verifier rejected), or NULL. Borrowed: valid until SSL_free(s). For the audit
 * line of the refusal; any thread that owns s. */
X509 *tls_refused_cert(const SSL *s);

/* Frees the process-wide TLS session cache (shutdown, after every SSL_CTX). */
void tls_shutdown(void);

#endif
