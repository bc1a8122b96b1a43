/* EST (RFC 7030, with the RFC 8951 clarifications) message formats, agent side:
 * the PKCS#10 request a client sends to /simpleenroll and /simplereenroll, the
 * certs-only PKCS#7 it gets back (also the /cacerts answer), and the Basic
 * credentials of an enrollment. No HTTP here (agent_enroll.c talks to the server).
 *
 * Bodies are base64 (RFC 4648, no line breaks when sent; whitespace and line breaks
 * accepted when received, as RFC 8951 asks of both sides). A body that is raw DER
 * is accepted too, as some servers send it.
 *
 * Pure functions, no I/O, thread-safe. The key may live in a PKCS#11 token: it only
 * signs (through the EVP_PKEY that p11.c made). */
#ifndef CERTGATE_AGENT_EST_H
#define CERTGATE_AGENT_EST_H
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "buf.h"

/* Largest body accepted from an EST server (a few certificates). */
#define AGENT_EST_MAX_BODY (1u << 20)

/* Builds a CSR for key's public key, signed by key (SHA-256), and appends its DER
 * in base64 to out. The subject is like's when like is given (a re-enrollment,
 * RFC 7030 4.2.2: same subject and subjectAltName; like's SAN is requested again
 * through an extensionRequest), else CN=cn. Checks the signature it made. Returns
 * 0, or -1 with a message in err. */
int agent_est_csr(EVP_PKEY *key, const char *cn, X509 *like, struct buf *out,
    char *err, size_t errlen);

/* Certificates of a certs-only answer body[0..n): base64 (or DER) of a PKCS#7
 * signedData. Returns a new stack (free with sk_X509_pop_free(s, X509_free)) holding
 * at least one certificate, or NULL with a message in err. */
STACK_OF(X509) *agent_est_certs(const char *body, size_t n, char *err, size_t errlen);

/* Finds among certs the certificate for key (same public key): *leaf gets a new
 * reference, *chain a new stack with the certificates that issued it, in order,
 * up to but without a self-signed root (what a client sends with its certificate).
 * Certificates that are not on that path are left out. Returns 0, or -1 with err
 * when no certificate carries key's public key. */
int agent_est_leaf(STACK_OF(X509) *certs, EVP_PKEY *key, X509 **leaf,
    STACK_OF(X509) **chain, char *err, size_t errlen);

/* Appends "Basic " + base64(id ":" token) to out (the Authorization value of
 * /simpleenroll). out then holds a secret: release it with buf_wipe. Returns 0/-1. */
int agent_est_basic(const char *id, const char *token, struct buf *out);

/* 1 when a Content-Type value is application/pkcs7-mime (any parameters). */
int agent_est_is_pkcs7(const char *content_type);

/* How many times a request that got 503 or no answer is sent again. */
#define AGENT_EST_RETRIES 4

/* Seconds to wait before retry number attempt (1..) of a request that got 503 or no
 * answer: the server's Retry-After when it sent one (retry_after 1..300; larger
 * values are cut to 300), else 2^attempt s capped at 30; plus up to a quarter more
 * by jitter (0 <= jitter < 1, the caller's random number) so agents refused
 * together do not come back together. */
long agent_est_retry_delay(int attempt, long retry_after, double jitter);

/* Appends the base64 encoding of p[0..n) (no line breaks) to out. Returns 0/-1. */
int agent_est_base64(const unsigned char *p, size_t n, struct buf *out);

#endif
