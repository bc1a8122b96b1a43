/* OCSP formats for client certificates (ocsp.h). */
#include "ocsp.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "text.h"

#define OCSP_SKEW_S 300

const char *
ocsp_verdict_name(enum ocsp_verdict v)
{
	switch (v) {
	case OCSP_VERDICT_GOOD: return "good";
	case OCSP_VERDICT_REVOKED: return "revoked";
	case OCSP_VERDICT_UNKNOWN: return "unknown";
	default: return "error";
	}
}

int
ocsp_key(X509 *cert, X509 *issuer, char key[OCSP_KEY_LEN])
{
	unsigned char name_md[EVP_MAX_MD_SIZE], key_md[EVP_MAX_MD_SIZE], out[32];
	unsigned char *serial = NULL;
	unsigned int nl = 0, kl = 0, ol = 0;
	EVP_MD_CTX *md = NULL;
	int slen, rc = -1;
	if (X509_NAME_digest(X509_get_subject_name(issuer), EVP_sha256(), name_md, &nl) != 1 ||
	    X509_pubkey_digest(issuer, EVP_sha256(), key_md, &kl) != 1 ||
	    (slen = i2d_ASN1_INTEGER(X509_get_serialNumber(cert), &serial)) <= 0 ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, name_md, nl) != 1 || EVP_DigestUpdate(md, key_md, kl) != 1 ||
	    EVP_DigestUpdate(md, serial, (size_t)slen) != 1 ||
	    EVP_DigestFinal_ex(md, out, &ol) != 1 || ol != sizeof(out))
		goto out;
	text_hex(out, sizeof(out), key);
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	OPENSSL_free(serial);
	return rc;
}

char *
ocsp_url_of(X509 *cert, int *https_only)
{
	STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(cert);
	char *url = NULL, *u;
	int i, https = 0;

	for (i = 0; urls != NULL && i < sk_OPENSSL_STRING_num(urls); i++) {
		u = sk_OPENSSL_STRING_value(urls, i);
		if (strncmp(u, "http://", 7) == 0) {
			url = OPENSSL_strdup(u);
			break;
		}
		if (strncmp(u, "https://", 8) == 0)
			https = 1;
	}
	X509_email_free(urls);
	*https_only = url == NULL && https;
	if (url != NULL) {
		/* handed out with free(), not OPENSSL_free */
		char *copy = strdup(url);

		OPENSSL_free(url);
		url = copy;
	}
	return url;
}

int
ocsp_request_new(X509 *cert, X509 *issuer, OCSP_REQUEST **req, OCSP_CERTID **id,
    unsigned char **der, int *derlen)
{
	OCSP_CERTID *cid = NULL, *copy = NULL;

	*req = NULL;
	*id = NULL;
	*der = NULL;
	/* SHA-1 CertIDs: what every responder (openssl ocsp included) indexes by */
	if ((cid = OCSP_cert_to_id(EVP_sha1(), cert, issuer)) == NULL ||
	    (copy = OCSP_CERTID_dup(cid)) == NULL || (*req = OCSP_REQUEST_new()) == NULL ||
	    OCSP_request_add0_id(*req, cid) == NULL)
		goto fail;
	cid = NULL;             /* owned by the request now */
	if (OCSP_request_add1_nonce(*req, NULL, 16) != 1 ||
	    (*derlen = i2d_OCSP_REQUEST(*req, der)) <= 0)
		goto fail;
	*id = copy;
	return 0;
fail:
	OCSP_CERTID_free(cid);
	OCSP_CERTID_free(copy);
	OCSP_REQUEST_free(*req);
	*req = NULL;
	OPENSSL_free(*der);
	*der = NULL;
	ERR_clear_error();
	return -1;
}

/* ASN1_GENERALIZEDTIME to time_t; 0 when absent or unreadable. */
static time_t
ocsp_time(const ASN1_GENERALIZEDTIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

enum ocsp_verdict
ocsp_response_eval(const unsigned char *der, size_t len, OCSP_REQUEST *req,
    OCSP_CERTID *id, X509_STORE *store, STACK_OF(X509) *chain, time_t now,
    time_t *next_update, const char **why)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	ASN1_GENERALIZEDTIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
	enum ocsp_verdict v = OCSP_VERDICT_ERROR;
	int status, reason, rc;
	time_t tu, nu;

	*next_update = 0;
	*why = "unreadable OCSP response";
	if (len == 0 || len > 1024 * 1024 ||
	    (resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len)) == NULL || p != der + len)
		goto out;
	if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		*why = "the responder answered with an error status";
		goto out;
	}
	if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
		*why = "not a basic OCSP response";
		goto out;
	}
	/* 1: the nonces match; -1: the responder sent none (allowed, many precompute);
	 * anything else: a replayed or foreign answer */
	if ((rc = OCSP_check_nonce(req, bs)) != 1 && rc != -1) {
		*why = "the response's nonce is not the request's";
		goto out;
	}
	if (OCSP_basic_verify(bs, chain, store, 0) != 1) {
		*why = "the response's signature does not verify (not the issuer or a "
		    "responder it delegated to)";
		goto out;
	}
	if (OCSP_resp_find_status(bs, id, &status, &reason, &revtime, &thisupd,
	    &nextupd) != 1) {
		*why = "the response does not answer for this certificate";
		goto out;
	}
	tu = ocsp_time(thisupd);
	nu = ocsp_time(nextupd);
	if (tu == 0 || tu > now + OCSP_SKEW_S) {
		*why = "the response's thisUpdate is in the future";
		goto out;
	}
	if (nextupd != NULL && (nu == 0 || nu < now - OCSP_SKEW_S)) {
		*why = "the response is out of date (nextUpdate has passed)";
		goto out;
	}
	*next_update = nextupd != NULL ? nu : 0;
	*why = NULL;
	v = status == V_OCSP_CERTSTATUS_GOOD ? OCSP_VERDICT_GOOD :
	    status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_VERDICT_REVOKED : OCSP_VERDICT_UNKNOWN;
out:
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	ERR_clear_error();
	return v;
}
