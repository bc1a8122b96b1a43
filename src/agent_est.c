/* EST message formats, agent side (see include/agent_est.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "agent_est.h"

/* The first OpenSSL error in words, for messages; clears the queue. */
static const char *
agent_est_sslerr(char *tmp, size_t n)
{
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (e == 0)
		return "no detail";
	ERR_error_string_n(e, tmp, n);
	return tmp;
}

int
agent_est_base64(const unsigned char *p, size_t n, struct buf *out)
{
	size_t need = 4 * ((n + 2) / 3) + 1;
	unsigned char *tmp;
	int len;

	if (n > (size_t)1 << 28 || (tmp = malloc(need)) == NULL)
		return -1;
	len = EVP_EncodeBlock(tmp, p, (int)n);
	len = buf_add(out, tmp, (size_t)len);
	OPENSSL_cleanse(tmp, need);
	free(tmp);
	return len;
}

/* Copies like's subjectAltName into an extensionRequest of req. */
static int
agent_est_copy_san(X509_REQ *req, X509 *like)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext;
	int loc, rv = -1;

	if ((loc = X509_get_ext_by_NID(like, NID_subject_alt_name, -1)) < 0)
		return 0;
	if ((ext = X509_get_ext(like, loc)) == NULL ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL)
		return -1;
	if (sk_X509_EXTENSION_push(exts, ext) > 0 && X509_REQ_add_extensions(req, exts) == 1)
		rv = 0;
	/* The extension belongs to like. */
	sk_X509_EXTENSION_free(exts);
	return rv;
}

int
agent_est_csr(EVP_PKEY *key, const char *cn, X509 *like, struct buf *out, char *err,
    size_t errlen)
{
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	unsigned char *der = NULL;
	char tmp[256];
	int len, rv = -1;

	if ((req = X509_REQ_new()) == NULL || X509_REQ_set_version(req, 0) != 1)
		goto ssl_fail;
	if (like != NULL) {
		if (X509_REQ_set_subject_name(req, X509_get_subject_name(like)) != 1 ||
		    agent_est_copy_san(req, like) == -1)
			goto ssl_fail;
	} else {
		if (cn == NULL || *cn == '\0') {
			snprintf(err, errlen, "a certificate request needs a subject");
			goto fail;
		}
		if ((name = X509_NAME_new()) == NULL ||
		    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
		    (const unsigned char *)cn, -1, -1, 0) != 1 ||
		    X509_REQ_set_subject_name(req, name) != 1)
			goto ssl_fail;
	}
	if (X509_REQ_set_pubkey(req, key) != 1)
		goto ssl_fail;
	if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
		snprintf(err, errlen, "signing the certificate request with the new key "
		    "failed: %s", agent_est_sslerr(tmp, sizeof(tmp)));
		goto fail;
	}
	/* A token that signs wrongly would otherwise only show at the server. */
	if (X509_REQ_verify(req, key) != 1) {
		snprintf(err, errlen, "the certificate request's signature does not "
		    "verify: %s", agent_est_sslerr(tmp, sizeof(tmp)));
		goto fail;
	}
	if ((len = i2d_X509_REQ(req, &der)) <= 0)
		goto ssl_fail;
	if (agent_est_base64(der, (size_t)len, out) == -1) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	rv = 0;
	goto fail;
ssl_fail:
	snprintf(err, errlen, "building the certificate request failed: %s",
	    agent_est_sslerr(tmp, sizeof(tmp)));
fail:
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return rv;
}

/* Decodes base64 with whitespace anywhere; NULL when it is not base64. */
static unsigned char *
agent_est_unbase64(const char *p, size_t n, size_t *outlen)
{
	EVP_ENCODE_CTX *ctx;
	unsigned char *out;
	int a = 0, b = 0, ok;

	if (n > (size_t)1 << 28 || (out = malloc(n / 4 * 3 + 80)) == NULL)
		return NULL;
	if ((ctx = EVP_ENCODE_CTX_new()) == NULL) {
		free(out);
		return NULL;
	}
	EVP_DecodeInit(ctx);
	ok = EVP_DecodeUpdate(ctx, out, &a, (const unsigned char *)p, (int)n) >= 0 &&
	    EVP_DecodeFinal(ctx, out + a, &b) == 1;
	EVP_ENCODE_CTX_free(ctx);
	if (!ok || a + b == 0) {
		free(out);
		return NULL;
	}
	*outlen = (size_t)(a + b);
	return out;
}

/* 1 when every byte of p is base64 or whitespace. */
static int
agent_est_looks_base64(const char *p, size_t n)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (!isalnum(c) && c != '+' && c != '/' && c != '=' && !isspace(c))
			return 0;
	}
	return 1;
}

STACK_OF(X509) *
agent_est_certs(const char *body, size_t n, char *err, size_t errlen)
{
	STACK_OF(X509) *out = NULL, *in;
	const unsigned char *q;
	unsigned char *der = NULL;
	PKCS7 *p7 = NULL;
	size_t len = 0;
	char tmp[256];
	int i;

	if (n == 0) {
		snprintf(err, errlen, "the answer is empty (want a base64 PKCS#7 "
		    "certs-only bundle)");
		return NULL;
	}
	if (n > AGENT_EST_MAX_BODY) {
		snprintf(err, errlen, "the answer is larger than %u bytes",
		    AGENT_EST_MAX_BODY);
		return NULL;
	}
	if (agent_est_looks_base64(body, n)) {
		if ((der = agent_est_unbase64(body, n, &len)) == NULL) {
			snprintf(err, errlen, "the answer is not valid base64");
			return NULL;
		}
		q = der;
	} else if ((unsigned char)body[0] == 0x30) {
		q = (const unsigned char *)body;
		len = n;
	} else {
		snprintf(err, errlen, "the answer is neither base64 nor DER (want a base64 "
		    "PKCS#7 certs-only bundle)");
		return NULL;
	}
	if (len > 0x7fffffff || (p7 = d2i_PKCS7(NULL, &q, (long)len)) == NULL) {
		snprintf(err, errlen, "the answer is not a DER PKCS#7 structure: %s",
		    agent_est_sslerr(tmp, sizeof(tmp)));
		goto fail;
	}
	if (!PKCS7_type_is_signed(p7) || p7->d.sign == NULL ||
	    (in = p7->d.sign->cert) == NULL || sk_X509_num(in) == 0) {
		snprintf(err, errlen, "the PKCS#7 answer holds no certificates");
		goto fail;
	}
	if ((out = sk_X509_new_null()) == NULL)
		goto oom;
	for (i = 0; i < sk_X509_num(in); i++) {
		X509 *c = sk_X509_value(in, i);

		if (X509_up_ref(c) != 1)
			goto oom;
		if (sk_X509_push(out, c) <= 0) {
			X509_free(c);
			goto oom;
		}
	}
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
	sk_X509_pop_free(out, X509_free);
	out = NULL;
	goto done;
fail:
	out = NULL;
done:
	PKCS7_free(p7);
	free(der);
	return out;
}

int
agent_est_leaf(STACK_OF(X509) *certs, EVP_PKEY *key, X509 **leaf,
    STACK_OF(X509) **chain, char *err, size_t errlen)
{
	X509 *cur, *c, *next;
	int i, found = -1, guard;

	*leaf = NULL;
	*chain = NULL;
	for (i = 0; i < sk_X509_num(certs); i++) {
		EVP_PKEY *pub = X509_get0_pubkey(sk_X509_value(certs, i));

		if (pub != NULL && EVP_PKEY_eq(pub, key) == 1) {
			found = i;
			break;
		}
	}
	ERR_clear_error();
	if (found < 0) {
		snprintf(err, errlen, "none of the %d certificate(s) in the answer is for "
		    "the key this request was made with", sk_X509_num(certs));
		return -1;
	}
	if ((*chain = sk_X509_new_null()) == NULL)
		goto oom;
	cur = sk_X509_value(certs, found);
	if (X509_up_ref(cur) != 1)
		goto oom;
	*leaf = cur;
	/* Walk up by issuer, at most once per certificate (no loops). */
	for (guard = 0; guard < sk_X509_num(certs); guard++) {
		if (X509_check_issued(cur, cur) == X509_V_OK)
			break;
		next = NULL;
		for (i = 0; i < sk_X509_num(certs); i++) {
			c = sk_X509_value(certs, i);
			if (c != cur && X509_check_issued(c, cur) == X509_V_OK) {
				next = c;
				break;
			}
		}
		if (next == NULL || X509_check_issued(next, next) == X509_V_OK)
			break;
		if (X509_up_ref(next) != 1)
			goto oom;
		if (sk_X509_push(*chain, next) <= 0) {
			X509_free(next);
			goto oom;
		}
		cur = next;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	X509_free(*leaf);
	*leaf = NULL;
	sk_X509_pop_free(*chain, X509_free);
	*chain = NULL;
	return -1;
}

int
agent_est_basic(const char *id, const char *token, struct buf *out)
{
	struct buf cred;
	int rv;

	buf_init(&cred);
	buf_adds(&cred, id);
	buf_addc(&cred, ':');
	buf_adds(&cred, token);
	if (buf_failed(&cred)) {
		buf_wipe(&cred);
		return -1;
	}
	rv = buf_adds(out, "Basic ");
	if (rv == 0)
		rv = agent_est_base64((const unsigned char *)cred.p, cred.len, out);
	buf_wipe(&cred);
	return rv;
}

int
agent_est_is_pkcs7(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, "; \t");
	return (n == 22 && strncasecmp(ct, "application/pkcs7-mime", 22) == 0) ||
	    (n == 24 && strncasecmp(ct, "application/x-pkcs7-mime", 24) == 0);
}

long
agent_est_retry_delay(int attempt, long retry_after, double jitter)
{
	long base;

	if (retry_after >= 1)
		base = retry_after > 300 ? 300 : retry_after;
	else
		base = attempt >= 5 ? 30 : attempt < 1 ? 1 : 1L << attempt;
	if (!(jitter >= 0 && jitter < 1))
		jitter = 0;
	return base + (long)((double)base * jitter / 4);
}
