/* OCSP for client certificates (RFC 6960), the formats: which responder a certificate
 * names, the request for it, and the verdict of a response. Pure: no I/O, no clock
 * (now is a parameter); thread-safe. The cache is ocspcache.h, the queries on a
 * worker's event loop ocspcheck.h.
 *
 * A response counts only when it is a successful basic response signed by the
 * issuer or by a responder the issuer delegated to (OCSP_basic_verify against the
 * trust store), carries the request's nonce when it echoes one, answers for exactly
 * the certificate asked about, and is current (thisUpdate not in the future,
 * nextUpdate not past, 5 minutes of clock skew allowed). Anything else is an error,
 * never "good". */
#ifndef CERTGATE_OCSP_H
#define CERTGATE_OCSP_H
#include <stddef.h>
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/x509.h>

enum ocsp_verdict {
	OCSP_VERDICT_GOOD,
	OCSP_VERDICT_REVOKED,
	OCSP_VERDICT_UNKNOWN,   /* the responder does not know the certificate */
	OCSP_VERDICT_ERROR,     /* no usable answer (see *why) */
};

/* "good", "revoked", "unknown", "error". */
const char *ocsp_verdict_name(enum ocsp_verdict v);

#define OCSP_KEY_LEN 65         /* hex SHA-256 + NUL */

/* The cache key of cert as issued by issuer: hex SHA-256 over the issuer's name and
 * key hashes and the serial (what an OCSP CertID names). Returns 0/-1. */
int ocsp_key(X509 *cert, X509 *issuer, char key[OCSP_KEY_LEN]);

/* The first http:// OCSP responder in cert's Authority Information Access, as a
 * malloc'd string; NULL when it names none. *https_only is set to 1 when it names
 * only https:// responders (which certgate does not query: RFC 6960 A.1 is HTTP). */
char *ocsp_url_of(X509 *cert, int *https_only);

/* A query for cert issued by issuer with a fresh 16-byte nonce. *req and *id are new
 * (the caller frees them with OCSP_REQUEST_free / OCSP_CERTID_free and keeps them for
 * ocsp_response_eval); *der is the request to POST (OPENSSL_free). Returns 0/-1. */
int ocsp_request_new(X509 *cert, X509 *issuer, OCSP_REQUEST **req, OCSP_CERTID **id,
    unsigned char **der, int *derlen);

/* The verdict of response der[0..len) to req about id, verified against store
 * with chain (the client's chain: issuer and intermediates) as untrusted
 * certificates. On GOOD/REVOKED/UNKNOWN *next_update is the response's nextUpdate
 * (0 when it gives none). On ERROR *why is a static message. */
enum ocsp_verdict ocsp_response_eval(const unsigned char *der, size_t len,
    OCSP_REQUEST *req, OCSP_CERTID *id, X509_STORE *store, STACK_OF(X509) *chain,
    time_t now, time_t *next_update, const char **why);

#endif
