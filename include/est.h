/* EST (RFC 7030) enrollment and OCSP (RFC 6960) for the gateway's HTTP layer, without
 * sockets: the HTTP code hands over a request it has read (method, path, headers,
 * body, the verified client certificate), gets back either the response or a CA
 * request to send with caclient_send (caclient.h), then turns the CA's reply into
 * the response with est_reply.
 *
 * What is checked here, in the network-facing process, before anything reaches the
 * CA service: the route and method, the media type, the Authorization header, the
 * base64 and DER of the PKCS#10 request, its self-signature (proof of possession)
 * and its key (EC P-256/P-384 or RSA 2048..16384). Only the SubjectPublicKeyInfo
 * goes to the CA; the CSR's subject and extensions are ignored (identity, roles,
 * scopes and lifetime come from the token or the current certificate). For OCSP
 * the request is parsed here and only the CertIDs' fields and the nonce are sent.
 * The CA's answer is checked too: the certificate must certify the CSR's key.
 *
 * Routes:
 *   GET  /.well-known/est/cacerts         200 application/pkcs7-mime (base64)
 *   POST /.well-known/est/simpleenroll    Authorization: Basic base64(ID:TOKEN) or
 *                                         Bearer TOKEN; body base64 PKCS#10
 *   POST /.well-known/est/simplereenroll  the TLS client certificate authenticates
 *   POST /ocsp  (application/ocsp-request, DER)   GET /ocsp/BASE64 (RFC 6960 A.1)
 * Statuses: 400 bad CSR, 401 missing or refused token (WWW-Authenticate), 403 refused
 * certificate, 404, 405 (Allow), 413 body over EST_MAX_BODY, 415 media type, 429
 * (Retry-After), 500, 503 (CA unreachable, Retry-After). OCSP problems are answered
 * as OCSP responses (malformedRequest, internalError, tryLater) with 200.
 *
 * A struct est may be shared by every worker thread: it is immutable after est_new
 * except for the /cacerts answer, which follows the CA file under a mutex.
 * The other functions are pure and thread-safe. */
#ifndef CERTGATE_EST_H
#define CERTGATE_EST_H
#include <stddef.h>

#include <openssl/x509.h>

#include "caproto.h"

#define EST_MAX_BODY	32768	/* a base64 CSR or an OCSP request */

struct est;

/* ca_pem: the CA certificate(s) served by cacerts (ca.cert; a bundle may follow). */
struct est *est_new(const char *ca_pem_path, char *err, size_t errlen);
struct est *est_new_mem(const char *pem, size_t len, char *err, size_t errlen);
void est_free(struct est *e);

/* 1 when est_handle answers this path (the HTTP layer routes on it). */
int est_path(const char *path);

struct est_request {
	const char *method;          /* "GET", "POST", ... */
	const char *path;            /* the request target's path, without the query */
	const char *content_type;    /* or NULL */
	const char *authorization;   /* or NULL */
	const unsigned char *body;
	size_t body_len;
	X509 *client_cert;           /* verified by the TLS layer, or NULL (borrowed) */
	const char *peer;            /* client address for the CA's audit, or NULL */
};

struct est_response {
	int status;
	const char *content_type;    /* static string */
	char *body;                  /* malloc'd (est_response_clear), may hold NULs */
	size_t body_len;
	int retry_after;             /* > 0: send Retry-After: N */
	const char *www_authenticate;/* static, or NULL */
	const char *allow;           /* 405: static Allow value */
};

enum est_op { EST_OP_NONE, EST_OP_ENROLL, EST_OP_REENROLL, EST_OP_OCSP };

/* A request for the CA service and what est_reply needs to check its answer. */
struct est_call {
	enum est_op op;
	struct caproto_req req;      /* send with caclient_send(c, &call->req, ...) */
};

enum est_next { EST_RESPOND, EST_ASK_CA };

/* EST_RESPOND: resp is the answer. EST_ASK_CA: send call->req, then est_reply. Both
 * structs are filled (clear them with est_response_clear / est_call_clear). */
enum est_next est_handle(const struct est *e, const struct est_request *r,
    struct est_response *resp, struct est_call *call);

/* The HTTP response for the CA's reply to call (rep->err CAPROTO_E_UNAVAILABLE when
 * caclient could not get one). */
void est_reply(const struct est *e, const struct est_call *call,
    const struct caproto_reply *rep, struct est_response *resp);

void est_response_clear(struct est_response *r);
void est_call_clear(struct est_call *c);

#endif
