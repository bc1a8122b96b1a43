/* agent_est.c: CSRs (new and re-enrollment), certs-only answers (base64 with and
 * without line breaks, DER, junk), the leaf for a key and its chain, Basic
 * credentials, content types. Certificates are made here with OpenSSL. */
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "agent_est.h"
#include "check.h"

static X509 *
mk(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, int ca, const char *san)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random() & 0xffffff) + 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) :
	    X509_get_subject_name(x));
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" :
	    "critical,CA:FALSE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if (san != NULL) {
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	X509_sign(x, ikey ? ikey : key, EVP_sha256());
	return x;
}

/* base64 of a certs-only PKCS#7 of the given certificates, lines of 64 or one line */
static char *
p7_b64(X509 **c, int n, int lines, size_t *len)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	PKCS7 *p7 = PKCS7_new();
	PKCS7_SIGNED *s;
	unsigned char *der = NULL;
	struct buf b;
	int i, dl;

	PKCS7_set_type(p7, NID_pkcs7_signed);
	s = p7->d.sign;
	ASN1_INTEGER_set(s->version, 1);
	PKCS7_content_new(p7, NID_pkcs7_data);
	for (i = 0; i < n; i++)
		PKCS7_add_certificate(p7, c[i]);
	dl = i2d_PKCS7(p7, &der);
	buf_init(&b);
	agent_est_base64(der, (size_t)dl, &b);
	if (lines) {
		struct buf l;
		size_t k;

		buf_init(&l);
		for (k = 0; k < b.len; k += 64) {
			buf_add(&l, b.p + k, b.len - k < 64 ? b.len - k : 64);
			buf_adds(&l, "\r\n");
		}
		buf_free(&b);
		b = l;
	}
	OPENSSL_free(der);
	PKCS7_free(p7);
	sk_X509_free(sk);
	return buf_detach(&b, len);
}

static unsigned char *
unb64(const char *s, size_t n, int *len)
{
	unsigned char *out = malloc(n);

	*len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	while (*len > 0 && n > 0 && s[n - 1] == '=') {
		(*len)--;
		n--;
	}
	return out;
}

/* Retry-After wins (cut to 300 s); else 2, 4, 8, 16, 30, 30 s; jitter adds at most a
 * quarter and nonsense jitter adds nothing. */
static void
test_retry_delay(void)
{
	CHECK(agent_est_retry_delay(1, 5, 0) == 5);
	CHECK(agent_est_retry_delay(3, 5, 0) == 5);
	CHECK(agent_est_retry_delay(1, 1000, 0) == 300);
	CHECK(agent_est_retry_delay(1, -1, 0) == 2);
	CHECK(agent_est_retry_delay(2, -1, 0) == 4);
	CHECK(agent_est_retry_delay(4, 0, 0) == 16);
	CHECK(agent_est_retry_delay(5, -1, 0) == 30);
	CHECK(agent_est_retry_delay(40, -1, 0) == 30);
	CHECK(agent_est_retry_delay(0, -1, 0) == 1);
	CHECK(agent_est_retry_delay(1, 8, 0.99) == 9);
	CHECK(agent_est_retry_delay(5, -1, 0.99) == 37);
	CHECK(agent_est_retry_delay(1, 8, 1.5) == 8);
	CHECK(agent_est_retry_delay(1, 8, -0.5) == 8);
}

int
main(void)
{
	EVP_PKEY *rk = EVP_EC_gen("P-256"), *ik = EVP_EC_gen("P-256"),
	    *lk = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
	X509 *root, *inter, *leaf, *got = NULL, *all[3];
	STACK_OF(X509) *certs, *chain = NULL;
	X509_REQ *req;
	struct buf b;
	const unsigned char *q;
	unsigned char *der;
	char err[300], *body;
	size_t len;
	int dl;

	root = mk("root", rk, NULL, NULL, 1, NULL);
	inter = mk("inter", ik, root, rk, 1, NULL);
	leaf = mk("bot", lk, inter, ik, 0, "URI:spiffe://certgate.local/agent/bot");
	test_retry_delay();

	/* A first CSR: CN, the key, a valid signature. */
	buf_init(&b);
	CHECK(agent_est_csr(lk, "bot", NULL, &b, err, sizeof(err)) == 0);
	CHECK(strchr(b.p, '\n') == NULL);
	der = unb64(b.p, b.len, &dl);
	q = der;
	CHECK((req = d2i_X509_REQ(NULL, &q, dl)) != NULL);
	CHECK(X509_REQ_verify(req, lk) == 1);
	{
		STACK_OF(X509_EXTENSION) *none = X509_REQ_get_extensions(req);

		CHECK(sk_X509_EXTENSION_num(none) <= 0);
		sk_X509_EXTENSION_pop_free(none, X509_EXTENSION_free);
	}
	{
		char cn[64];

		X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn,
		    sizeof(cn));
		CHECK_STR(cn, "bot");
	}
	X509_REQ_free(req);
	free(der);
	buf_reset(&b);
	CHECK(agent_est_csr(lk, "", NULL, &b, err, sizeof(err)) == -1);
	CHECK(agent_est_csr(lk, NULL, NULL, &b, err, sizeof(err)) == -1);

	/* A re-enrollment CSR: the old certificate's subject and SAN, the new key. */
	buf_reset(&b);
	CHECK(agent_est_csr(other, NULL, leaf, &b, err, sizeof(err)) == 0);
	der = unb64(b.p, b.len, &dl);
	q = der;
	CHECK((req = d2i_X509_REQ(NULL, &q, dl)) != NULL);
	CHECK(X509_REQ_verify(req, other) == 1);
	CHECK(X509_NAME_cmp(X509_REQ_get_subject_name(req), X509_get_subject_name(leaf)) == 0);
	{
		STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
		GENERAL_NAMES *gn = NULL;
		int loc = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);

		CHECK(loc >= 0);
		if (loc >= 0)
			gn = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, loc));
		CHECK(gn != NULL && sk_GENERAL_NAME_num(gn) == 1 &&
		    sk_GENERAL_NAME_value(gn, 0)->type == GEN_URI);
		GENERAL_NAMES_free(gn);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	X509_REQ_free(req);
	free(der);
	buf_free(&b);

	/* Answers: one line, CRLF lines, raw DER; order of certificates is free. */
	all[0] = inter;
	all[1] = root;
	all[2] = leaf;
	body = p7_b64(all, 3, 0, &len);
	CHECK((certs = agent_est_certs(body, len, err, sizeof(err))) != NULL);
	CHECK(sk_X509_num(certs) == 3);
	CHECK(agent_est_leaf(certs, lk, &got, &chain, err, sizeof(err)) == 0);
	CHECK(got != NULL && X509_cmp(got, leaf) == 0);
	/* the chain goes up to, without, the self-signed root */
	CHECK(chain != NULL && sk_X509_num(chain) == 1 && X509_cmp(sk_X509_value(chain, 0), inter) == 0);
	X509_free(got);
	sk_X509_pop_free(chain, X509_free);
	CHECK(agent_est_leaf(certs, other, &got, &chain, err, sizeof(err)) == -1);
	CHECK(strstr(err, "none of the 3") != NULL && got == NULL && chain == NULL);
	sk_X509_pop_free(certs, X509_free);
	free(body);
	body = p7_b64(all + 2, 1, 1, &len);
	CHECK(strstr(body, "\r\n") != NULL);
	CHECK((certs = agent_est_certs(body, len, err, sizeof(err))) != NULL);
	CHECK(agent_est_leaf(certs, lk, &got, &chain, err, sizeof(err)) == 0);
	CHECK(sk_X509_num(chain) == 0);
	X509_free(got);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(certs, X509_free);
	{
		PKCS7 *p7 = PKCS7_new();
		unsigned char *d = NULL;

		PKCS7_set_type(p7, NID_pkcs7_signed);
		PKCS7_content_new(p7, NID_pkcs7_data);
		PKCS7_add_certificate(p7, root);
		dl = i2d_PKCS7(p7, &d);
		CHECK((certs = agent_est_certs((char *)d, (size_t)dl, err, sizeof(err))) != NULL);
		CHECK(certs != NULL && sk_X509_num(certs) == 1);
		sk_X509_pop_free(certs, X509_free);
		OPENSSL_free(d);
		PKCS7_free(p7);
	}
	free(body);
	/* junk */
	CHECK(agent_est_certs("", 0, err, sizeof(err)) == NULL && strstr(err, "empty"));
	CHECK(agent_est_certs("!!!", 3, err, sizeof(err)) == NULL && strstr(err, "neither"));
	CHECK(agent_est_certs("QUJD", 4, err, sizeof(err)) == NULL && strstr(err, "PKCS#7"));
	CHECK(agent_est_certs("QUJ", 3, err, sizeof(err)) == NULL);
	CHECK(agent_est_certs("====", 4, err, sizeof(err)) == NULL);
	{
		/* a PKCS#7 without certificates */
		PKCS7 *p7 = PKCS7_new();
		unsigned char *d = NULL;

		PKCS7_set_type(p7, NID_pkcs7_signed);
		PKCS7_content_new(p7, NID_pkcs7_data);
		dl = i2d_PKCS7(p7, &d);
		CHECK(agent_est_certs((char *)d, (size_t)dl, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "no certificates") != NULL);
		OPENSSL_free(d);
		PKCS7_free(p7);
	}
	{
		char *huge = malloc(AGENT_EST_MAX_BODY + 1);

		memset(huge, 'A', AGENT_EST_MAX_BODY + 1);
		CHECK(agent_est_certs(huge, AGENT_EST_MAX_BODY + 1, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "larger") != NULL);
		free(huge);
	}

	/* Basic credentials and content types */
	buf_init(&b);
	CHECK(agent_est_basic("bot", "cg1.x.y", &b) == 0);
	CHECK_STR(buf_str(&b), "Basic Ym90OmNnMS54Lnk=");
	buf_wipe(&b);
	CHECK(agent_est_is_pkcs7("application/pkcs7-mime"));
	CHECK(agent_est_is_pkcs7("application/pkcs7-mime; smime-type=certs-only"));
	CHECK(agent_est_is_pkcs7(" Application/PKCS7-MIME;smime-type=certs-only"));
	CHECK(agent_est_is_pkcs7("application/x-pkcs7-mime"));
	CHECK(!agent_est_is_pkcs7("application/pkcs7-mimex"));
	CHECK(!agent_est_is_pkcs7("application/json"));
	CHECK(!agent_est_is_pkcs7(""));
	CHECK(!agent_est_is_pkcs7(NULL));

	X509_free(root);
	X509_free(inter);
	X509_free(leaf);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(lk);
	EVP_PKEY_free(other);
	CHECK_DONE();
}
