/* The agent's TLS credentials (see include/agent_cred.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent_cred.h"
#include "log.h"

struct agent_cred {
	int refs;
	X509 *leaf;
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	STACK_OF(X509) *anchors;
	char *key_uri;
	time_t not_before, not_after;
	char serial[80];
	char subject[256];
};

static time_t
agent_cred_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

static void
agent_cred_describe(struct agent_cred *c)
{
	const ASN1_INTEGER *sn;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	BIO *bio;
	long n;
	char *p;

	snprintf(c->serial, sizeof(c->serial), "-");
	snprintf(c->subject, sizeof(c->subject), "-");
	if (c->leaf == NULL)
		return;
	c->not_before = agent_cred_time(X509_get0_notBefore(c->leaf));
	c->not_after = agent_cred_time(X509_get0_notAfter(c->leaf));
	if ((sn = X509_get0_serialNumber(c->leaf)) != NULL &&
	    (bn = ASN1_INTEGER_to_BN(sn, NULL)) != NULL && (hex = BN_bn2hex(bn)) != NULL)
		snprintf(c->serial, sizeof(c->serial), "%s", hex);
	OPENSSL_free(hex);
	BN_free(bn);
	if ((bio = BIO_new(BIO_s_mem())) != NULL) {
		if (X509_NAME_print_ex(bio, X509_get_subject_name(c->leaf), 0,
		    XN_FLAG_RFC2253) >= 0 && (n = BIO_get_mem_data(bio, &p)) > 0)
			snprintf(c->subject, sizeof(c->subject), "%.*s", (int)n, p);
		BIO_free(bio);
	}
	ERR_clear_error();
}

struct agent_cred *
agent_cred_new(X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key, const char *key_uri,
    STACK_OF(X509) *anchors)
{
	struct agent_cred *c = NULL;

	if (anchors == NULL || sk_X509_num(anchors) == 0) {
		log_err("no trust anchor (ca.pem) for the gateway");
		goto fail;
	}
	if ((leaf == NULL) != (key == NULL)) {
		log_err("a client certificate needs its key and the other way round");
		goto fail;
	}
	if (leaf != NULL && X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		log_err("the private key does not belong to the certificate");
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (key_uri != NULL && (c->key_uri = strdup(key_uri)) == NULL)) {
		log_err("out of memory");
		if (c != NULL)
			free(c);
		c = NULL;
		goto fail;
	}
	c->refs = 1;
	c->leaf = leaf;
	c->chain = chain;
	c->key = key;
	c->anchors = anchors;
	agent_cred_describe(c);
	return c;
fail:
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	sk_X509_pop_free(anchors, X509_free);
	return NULL;
}

struct agent_cred *
agent_cred_ref(struct agent_cred *c)
{
	if (c != NULL)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void
agent_cred_unref(struct agent_cred *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	X509_free(c->leaf);
	sk_X509_pop_free(c->chain, X509_free);
	EVP_PKEY_free(c->key);
	sk_X509_pop_free(c->anchors, X509_free);
	free(c->key_uri);
	free(c);
}

X509 *agent_cred_leaf(const struct agent_cred *c) { return c->leaf; }
STACK_OF(X509) *agent_cred_chain(const struct agent_cred *c) { return c->chain; }
EVP_PKEY *agent_cred_key(const struct agent_cred *c) { return c->key; }
STACK_OF(X509) *agent_cred_anchors(const struct agent_cred *c) { return c->anchors; }
const char *agent_cred_key_uri(const struct agent_cred *c) { return c->key_uri; }
time_t agent_cred_not_before(const struct agent_cred *c) { return c->not_before; }
time_t agent_cred_not_after(const struct agent_cred *c) { return c->not_after; }
const char *agent_cred_serial(const struct agent_cred *c) { return c->serial; }
const char *agent_cred_subject(const struct agent_cred *c) { return c->subject; }

/* A store holding exactly the anchors. An anchor that is not self-signed (an
 * intermediate the operator chose to trust) ends chains too: partial chains. */
static X509_STORE *
agent_cred_store(STACK_OF(X509) *anchors)
{
	X509_STORE *st;
	X509 *a;
	int i, partial = 0;

	if ((st = X509_STORE_new()) == NULL)
		return NULL;
	for (i = 0; i < sk_X509_num(anchors); i++) {
		a = sk_X509_value(anchors, i);
		if (X509_STORE_add_cert(st, a) != 1) {
			X509_STORE_free(st);
			return NULL;
		}
		if (X509_check_issued(a, a) != X509_V_OK)
			partial = 1;
	}
	if (partial)
		X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	return st;
}

int
agent_cred_verify_chain(X509 *leaf, STACK_OF(X509) *chain, STACK_OF(X509) *anchors,
    char *err, size_t errlen)
{
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	int rv = -1;

	if ((st = agent_cred_store(anchors)) == NULL ||
	    (ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, st, leaf, chain) != 1) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(ctx) != 1) {
		snprintf(err, errlen, "%s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)));
		goto done;
	}
	rv = 0;
done:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return rv;
}

/* Runs for every new connection, on the thread running the transfer. */
static CURLcode
agent_cred_sslctx(CURL *e, void *sslctx, void *arg)
{
	struct agent_cred *c = arg;
	SSL_CTX *ctx = sslctx;
	X509_STORE *st;
	int i;

	if ((st = agent_cred_store(c->anchors)) == NULL)
		goto fail;
	SSL_CTX_set_cert_store(ctx, st);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	if (c->leaf != NULL) {
		if (SSL_CTX_use_certificate(ctx, c->leaf) != 1)
			goto fail;
		for (i = 0; c->chain != NULL && i < sk_X509_num(c->chain); i++)
			if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(c->chain, i)) != 1)
				goto fail;
		if (SSL_CTX_use_PrivateKey(ctx, c->key) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1)
			goto fail;
	}
	return CURLE_OK;
fail:
	log_sslerr("setting up TLS with certificate %s", c->serial);
	return CURLE_SSL_CERTPROBLEM;
}

int
agent_cred_curl(CURL *e, struct agent_cred *c)
{
	if (curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, agent_cred_sslctx) != CURLE_OK) {
		log_err("libcurl is not built with OpenSSL: certgate agent needs "
		    "libcurl4-openssl-dev's libcurl");
		return -1;
	}
	curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, c);
	/* No system trust at all: the anchors replace the store in the callback. */
	curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	/* Session ids would let a new connection resume under the previous
	 * certificate's identity after a renewal. */
	curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	return 0;
}

int
agent_cred_curl_usable(void)
{
	const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

	return v != NULL && v->ssl_version != NULL &&
	    strncmp(v->ssl_version, "OpenSSL", 7) == 0;
}

const char *
agent_cred_hint(const char *msg)
{
	static const struct {
		const char *needle;
		const char *hint;
	} hints[] = {
		{ "alert unknown ca", "the gateway refused this agent's certificate (not "
		    "from its CA)" },
		{ "alert certificate expired", "the gateway refused this agent's certificate "
		    "(expired: renew or enroll again)" },
		{ "alert certificate revoked", "the gateway refused this agent's certificate "
		    "(revoked: enroll again)" },
		{ "alert bad certificate", "the gateway refused this agent's certificate" },
		{ "alert certificate unknown", "the gateway refused this agent's certificate" },
		{ "certificate required", "the gateway wants a client certificate" },
		{ "subject name", "the gateway's certificate does not name the host in the "
		    "URL" },
		{ "does not match target host", "the gateway's certificate does not name the "
		    "host in the URL" },
		{ "local issuer", "the gateway's certificate does not chain to ca.pem" },
		{ "self-signed certificate", "the gateway's certificate does not chain to "
		    "ca.pem" },
		{ "certificate has expired", "the gateway's own certificate has expired" },
		{ "SSL certificate problem", "the gateway's certificate does not verify "
		    "against ca.pem" },
	};
	size_t i;

	if (msg == NULL)
		return "";
	for (i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (strstr(msg, hints[i].needle) != NULL)
			return hints[i].hint;
	return "";
}
