/* The request protocol between the gateway and the CA service (caserve.h): small,
 * typed, validated field by field on arrival on both ends.
 *
 * Framing: a 4-byte big-endian length N (1..CAPROTO_MAX) followed by N bytes of one
 * JSON object. Requests:
 *   {"v":1,"op":"ping"}
 *   {"v":1,"op":"enroll","token":T,"spki":B64[,"agent":ID][,"peer":P][,"deadline":MS]}
 *   {"v":1,"op":"renew","cert":B64,"spki":B64[,"peer":P][,"deadline":MS]}
 *   {"v":1,"op":"ocsp","ids":[{"hash":"sha1"|"sha256"|"sha384"|"sha512",
 *        "name_hash":HEX,"key_hash":HEX,"serial":HEX},...][,"nonce":B64]}
 * Replies:
 *   {"ok":true,"ca":FP,"pid":N}                                   ping
 *   {"ok":true,"serial":HEX,"agent":ID,"not_after":T,"cert":B64,"chain":[B64...]}
 *   {"ok":true,"ocsp":B64}
 *   {"ok":false,"error":KIND,"message":TEXT[,"retry_after":S]}
 * MS is the wall-clock time (Unix epoch milliseconds) after which the sender no longer
 * waits for the answer: the CA service refuses a request it takes up after that as
 * unavailable (busy), before spending or signing anything.
 * B64 is standard base64 with padding; spki is a DER SubjectPublicKeyInfo, cert a DER
 * certificate. Unknown ops, unknown or missing fields, wrong types and out-of-range
 * sizes are refused: one text decodes to one request.
 *
 * Pure functions, no I/O, thread-safe. Structs own their buffers (caproto_*_clear;
 * the token is wiped). */
#ifndef CERTGATE_CAPROTO_H
#define CERTGATE_CAPROTO_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CAPROTO_MAX		65536	/* bytes of JSON per message */
#define CAPROTO_MAX_DER		16384	/* a certificate or SPKI */
#define CAPROTO_MAX_IDS		16	/* CertIDs per OCSP request */
#define CAPROTO_MAX_NONCE	128	/* bytes of the nonce extension value */
#define CAPROTO_MAX_CHAIN	8

enum caproto_op { CAPROTO_PING, CAPROTO_ENROLL, CAPROTO_RENEW, CAPROTO_OCSP };

/* Refusal kinds; est.h maps them to HTTP statuses. */
enum caproto_err {
	CAPROTO_OK = 0,
	CAPROTO_E_BAD_REQUEST,    /* malformed request or unacceptable key: 400 */
	CAPROTO_E_UNAUTHORIZED,   /* token missing, unknown, used, expired, other agent: 401 */
	CAPROTO_E_FORBIDDEN,      /* certificate revoked, expired, unknown, unmapped: 403 */
	CAPROTO_E_RATE_LIMITED,   /* 429 with retry_after */
	CAPROTO_E_UNAVAILABLE,    /* the CA service cannot be reached or timed out: 503 */
	CAPROTO_E_INTERNAL,       /* the CA failed (token, disk): 500 */
};

struct caproto_id {
	int md_nid;               /* NID_sha1, NID_sha256, NID_sha384, NID_sha512 */
	unsigned char name_hash[64];
	size_t name_hash_len;     /* the digest's size */
	unsigned char key_hash[64];
	size_t key_hash_len;
	char serial[80];          /* uppercase hex, no leading zeros beyond one byte */
};

struct caproto_req {
	enum caproto_op op;
	char agent[65];           /* enroll: "" when not given */
	char token[128];          /* enroll (wiped by clear) */
	unsigned char *spki;      /* enroll, renew */
	size_t spki_len;
	unsigned char *cert;      /* renew */
	size_t cert_len;
	struct caproto_id ids[CAPROTO_MAX_IDS];   /* ocsp */
	size_t nids;
	unsigned char nonce[CAPROTO_MAX_NONCE];
	size_t nonce_len;
	int has_nonce;
	char peer[64];            /* client address for the audit, "" when not given */
	long long deadline_ms;    /* enroll, renew: see MS above; 0 when not given
	                           * (caclient.h fills it in from its timeout) */
};

struct caproto_reply {
	enum caproto_err err;
	char message[256];
	int retry_after;          /* rate_limited: seconds */
	char ca[65];              /* ping: the CA fingerprint */
	long long pid;            /* ping */
	char serial[80];
	char agent[65];
	char not_after[32];
	unsigned char *cert;      /* DER */
	size_t cert_len;
	unsigned char *chain[CAPROTO_MAX_CHAIN];
	size_t chain_len[CAPROTO_MAX_CHAIN];
	size_t nchain;
	unsigned char *ocsp;      /* DER OCSPResponse */
	size_t ocsp_len;
};

/* Appends the framed request (length prefix + JSON) to out. 0/-1 (invalid request
 * fields or ENOMEM, with err). */
int caproto_req_encode(const struct caproto_req *r, struct buf *out, char *err, size_t errlen);
/* Decodes one JSON body (without the prefix). 0, or -1 with the reason in err. */
int caproto_req_decode(const char *json, size_t len, struct caproto_req *r, char *err,
    size_t errlen);
void caproto_req_clear(struct caproto_req *r);

int caproto_reply_encode(const struct caproto_reply *r, struct buf *out);
int caproto_reply_decode(const char *json, size_t len, struct caproto_reply *r, char *err,
    size_t errlen);
void caproto_reply_clear(struct caproto_reply *r);
/* Fills r as a refusal (message formatted). */
void caproto_reply_error(struct caproto_reply *r, enum caproto_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The frame length in the 4 bytes at p: 1..CAPROTO_MAX, or 0 when out of range. */
size_t caproto_frame_len(const unsigned char p[4]);

struct sockaddr_un;
/* The address of the CA service's socket path. -1 when the path is empty or longer
 * than a Unix socket address allows (107 bytes): set ca.socket to a shorter path. */
int caproto_sockaddr(const char *path, struct sockaddr_un *sa, unsigned *salen);

/* "unauthorized", ... for logs and the wire; NULL for an unknown value. */
const char *caproto_err_name(enum caproto_err e);

#endif
