/* The signed objects of the CA: X.509 certificates (the CA, server and agent
 * profiles), CRLs and OCSP responses, plus the checks on keys and names they need.
 *
 * OpenSSL only: the signing key is any EVP_PKEY (the token key from p11.c in
 * certgate), no files except the PEM helpers, no config. Errors are returned as a
 * message in err (with OpenSSL's queued errors appended and the queue drained).
 * Thread-safe (no shared state). Objects returned are owned by the caller. */
#ifndef CERTGATE_CERTIFY_H
#define CERTGATE_CERTIFY_H
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct cadb;

/* notBefore = now - CERTIFY_BACKDATE: tolerates clock skew between CA and verifier. */
#define CERTIFY_BACKDATE	300
/* Agent ids: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
#define CERTIFY_AGENT_MAX	64

/* 1 when id is a valid agent id. */
int certify_agent_id_valid(const char *id);

/* Accepted subject keys: EC P-256 or P-384, RSA 2048..16384 bits. Returns 0, or -1
 * with the reason in err ("RSA key has 1024 bits; at least 2048 are required"). */
int certify_key_acceptable(EVP_PKEY *k, char *err, size_t errlen);

/* X509_NAME from "CN=a,O=b" or "/CN=a/O=b". NULL with err. */
X509_NAME *certify_dn(const char *dn, char *err, size_t errlen);

/* A random positive 128-bit serial (top bit clear) for which taken(hex, arg) is 0
 * (taken may be NULL); *hex is the uppercase hex (OPENSSL_free). NULL with err. */
ASN1_INTEGER *certify_serial(int (*taken)(const char *hex, void *arg), void *arg,
    char **hex, char *err, size_t errlen);

/* The three profiles. issuer/signer: the CA certificate and its key. seconds: the
 * lifetime from now (notBefore is backdated). serial: from certify_serial. */
enum certify_profile {
	CERTIFY_CA,       /* self-signed: CA:TRUE pathlen 0, keyCertSign+cRLSign */
	CERTIFY_SERVER,   /* serverAuth; san is "DNS:..,IP:.." */
	CERTIFY_AGENT,    /* clientAuth; san is the SPIFFE URI (without "URI:") */
};

struct certify_spec {
	enum certify_profile profile;
	X509_NAME *subject;        /* borrowed */
	EVP_PKEY *pubkey;          /* key certified (borrowed); the signer for CERTIFY_CA */
	X509 *issuer;              /* CA certificate; NULL for CERTIFY_CA */
	EVP_PKEY *signer;          /* CA key */
	long seconds;
	const ASN1_INTEGER *serial;
	const char *san;           /* server/agent, see above */
	const char *ocsp_url;      /* AIA OCSP for server/agent, or NULL */
};

/* Builds and signs a v3 certificate with SHA-256, then verifies its signature with
 * the issuer's public key (which proves the key matches the CA certificate). */
X509 *certify_cert(const struct certify_spec *s, char *err, size_t errlen);

/* A v2 CRL (AKI, CRL number) listing every revoked row of db, lastUpdate now,
 * nextUpdate now + seconds, signed and verified like certify_cert. */
X509_CRL *certify_crl(X509 *cacert, EVP_PKEY *key, const struct cadb *db,
    const BIGNUM *number, time_t now, long seconds, char *err, size_t errlen);

/* SHA-256 of the DER of x, lowercase hex (65 bytes with the NUL). 0/-1. */
int certify_fingerprint(X509 *x, char out[65]);

/* OCSP (RFC 6960). One CertID as the requester sent it, and the answer for it. */
struct certify_ocsp_id {
	int md_nid;                       /* hash of the CertID: NID_sha1, NID_sha256, ... */
	unsigned char name_hash[64];
	size_t name_hash_len;
	unsigned char key_hash[64];
	size_t key_hash_len;
	char serial[80];                  /* uppercase hex */
	/* answer, filled by the caller: */
	int status;                       /* V_OCSP_CERTSTATUS_GOOD|REVOKED|UNKNOWN */
	time_t revoked_at;
	int reason;                       /* CRL reason code, or -1 */
};

/* 1 when the CertID's issuer hashes are those of cacert (computed with its md). */
int certify_ocsp_issuer_is(X509 *cacert, const struct certify_ocsp_id *id);

/* A successful OCSP response (basic, responder id by key hash, signed by the CA key
 * with SHA-256, no certificates), one SingleResponse per id (the CertID echoed),
 * thisUpdate now, nextUpdate now + validity, the nonce extension copied when
 * nonce (the extnValue octets of the request's nonce) is given. Returns the DER
 * (OPENSSL_malloc'd, OPENSSL_free) and *len, or NULL with err. */
unsigned char *certify_ocsp(X509 *cacert, EVP_PKEY *key, const struct certify_ocsp_id *ids,
    size_t nids, const unsigned char *nonce, size_t nonce_len, time_t now, long validity,
    size_t *len, char *err, size_t errlen);

/* PEM files. certify_pem_cert reads the first certificate of path. certify_pem_write
 * writes exactly one of x, crl or key atomically (file.h) with mode. */
X509 *certify_pem_cert(const char *path, char *err, size_t errlen);
int certify_pem_write(const char *path, X509 *x, X509_CRL *crl, EVP_PKEY *key, mode_t mode,
    char *err, size_t errlen);

#endif
