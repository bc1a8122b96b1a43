/* Verified client certificate chains, remembered per SSL_CTX.
 *
 * Verifying a client certificate (chain building, the certificate's signature, the
 * signature of every CRL in the context's store, tls.crl_check) costs ~350 us of a
 * ~1.6 ms full handshake, and agents present the same certificate on every
 * connection. A context's trust store and CRLs never change after it is built
 * (state.c builds a new context for every new trust store or CRL, build-then-swap),
 * so a certificate that passed X509_verify_cert under a context passes it again
 * under that context for as long as every time it depends on holds: the validity of
 * each certificate in its chain and of each CRL (lastUpdate .. nextUpdate). The
 * cache keeps, per context, the DER of such certificates with the issuer chain that
 * verified them and that window; a full handshake whose certificate is byte-for-byte
 * one of them, inside its window, gets the same verified chain without verifying
 * again. Anything else (another certificate, a window passed, a failed verification,
 * which is never cached) is verified by X509_verify_cert as before. The revoked-set
 * check after the handshake (conn.c) and OCSP are unchanged and run every time.
 *
 * Bounded: TLSVCACHE_SLOTS entries per context, direct-mapped by a hash of the DER
 * (a colliding certificate replaces the entry), freed with the context.
 *
 * Threading: one cache per SSL_CTX, shared by the workers that use it; a mutex
 * guards the slots. Functions return 0/-1 unless stated. */
#ifndef CERTGATE_TLSVCACHE_H
#define CERTGATE_TLSVCACHE_H
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#define TLSVCACHE_SLOTS 1024

struct tlsvcache;

/* A cache of `slots` entries whose windows also end at the nextUpdate (and start
 * at the lastUpdate) of every CRL in crls (may be NULL: no CRLs). NULL: no memory. */
struct tlsvcache *tlsvcache_new(size_t slots, STACK_OF(X509_CRL) *crls);
void tlsvcache_free(struct tlsvcache *vc);

/* Verifies xs (initialised with the certificate to verify, as OpenSSL's
 * cert_verify_callback receives it) at time now: a cached chain, or
 * X509_verify_cert (whose success is then cached). Returns what X509_verify_cert
 * would (1 verified, with X509_STORE_CTX_get0_chain set; <= 0 refused). *hit (may
 * be NULL) says which way it went. */
int tlsvcache_verify(struct tlsvcache *vc, X509_STORE_CTX *xs, time_t now, int *hit);

/* The chain cached for leaf under ctx (tlsvcache_attach) if it is usable at now:
 * a new stack, leaf first, each certificate referenced; NULL when none. For a
 * resumed session, whose certificate was verified at its full handshake under the
 * same bundle: what that verification found, without verifying again. */
STACK_OF(X509) *tlsvcache_lookup(SSL_CTX *ctx, X509 *leaf, time_t now);

/* ctx is no longer used for new connections (a reload replaced it; connections made
 * under it may keep it alive for hours): its cache is emptied and takes nothing more,
 * so superseded contexts hold no cached chains. NULL is a no-op. */
void tlsvcache_retire(SSL_CTX *ctx);

/* Makes ctx verify client certificates through a new cache (TLSVCACHE_SLOTS, crls
 * as above), owned by ctx from then on. */
int tlsvcache_attach(SSL_CTX *ctx, STACK_OF(X509_CRL) *crls);

#endif
