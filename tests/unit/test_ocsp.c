/* ocsp.h verdicts on responses built here with OpenSSL (signed by the issuer, by a
 * stranger, for another certificate, stale, from the future, without or with a
 * foreign nonce, error statuses, trailing bytes), responder URLs from the AIA, cache
 * keys; ocspcache.h claim/put/expire semantics (revoked is sticky). */
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "ocsp.h"
#include "ocspcache.h"

static X509 *
mkcert(const char *cn, long serial, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey,
    const char *aia)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	if (issuer == NULL) {
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (aia != NULL) {
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_info_access, aia);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	X509_sign(x, ikey ? ikey : key, EVP_sha256());
	return x;
}

/* A DER response about `about` (issued by ca): status, signed by signer/skey, with
 * the nonce of req when req != NULL, thisUpdate now+tu, nextUpdate now+nu (nu == 0:
 * none). rstatus != SUCCESSFUL: an error response. */
static unsigned char *
mkresp(X509 *about, X509 *ca, int status, X509 *signer, EVP_PKEY *skey, OCSP_REQUEST *req,
    long tu, long nu, int rstatus, int *len)
{
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), about, ca);
	ASN1_TIME *t1 = X509_gmtime_adj(NULL, tu), *t2 = nu ? X509_gmtime_adj(NULL, nu) : NULL;
	ASN1_TIME *rev = X509_gmtime_adj(NULL, -10);
	OCSP_RESPONSE *r;
	unsigned char *der = NULL;

	OCSP_basic_add1_status(bs, id, status, status == V_OCSP_CERTSTATUS_REVOKED ?
	    OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0, status == V_OCSP_CERTSTATUS_REVOKED ?
	    rev : NULL, t1, t2);
	if (req != NULL)
		OCSP_copy_nonce(bs, req);
	OCSP_basic_sign(bs, signer, skey, EVP_sha256(), NULL, 0);
	r = OCSP_response_create(rstatus, rstatus == OCSP_RESPONSE_STATUS_SUCCESSFUL ? bs :
	    NULL);
	*len = i2d_OCSP_RESPONSE(r, &der);
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_CERTID_free(id);
	ASN1_TIME_free(t1);
	ASN1_TIME_free(t2);
	ASN1_TIME_free(rev);
	return der;
}

static void
test_cache(void)
{
	struct ocspcache_answer a;
	const char *k1 = "k1", *k2 = "k2";

	ocspcache_get(k1, 100, &a);
	CHECK(!a.known && !a.fetching);
	CHECK(ocspcache_claim(k1, 100) == 1);
	CHECK(ocspcache_claim(k1, 100) == 0);           /* one query at a time */
	ocspcache_get(k1, 100, &a);
	CHECK(!a.known && a.fetching);
	ocspcache_put(k1, OCSP_VERDICT_GOOD, 101, 160);
	ocspcache_get(k1, 102, &a);
	CHECK(a.known && a.verdict == OCSP_VERDICT_GOOD && a.expires == 160 && !a.fetching);
	CHECK(ocspcache_claim(k1, 170) == 1);
	ocspcache_put(k1, OCSP_VERDICT_REVOKED, 171, 230);
	CHECK(ocspcache_claim(k1, 240) == 1);
	ocspcache_put(k1, OCSP_VERDICT_GOOD, 241, 300);  /* never un-revoked */
	ocspcache_get(k1, 242, &a);
	CHECK(a.verdict == OCSP_VERDICT_REVOKED && !a.fetching);
	CHECK(ocspcache_claim(k2, 50) == 1);
	ocspcache_release(k2);
	ocspcache_get(k2, 50, &a);
	CHECK(!a.known && !a.fetching);
	CHECK(ocspcache_count() == 2);
	ocspcache_expire(100);                          /* k2 last asked at 50 */
	CHECK(ocspcache_count() == 1);
	ocspcache_clear();
	CHECK(ocspcache_count() == 0);
}

int
main(void)
{
	EVP_PKEY *cak = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256"), *xk = EVP_EC_gen("P-256");
	X509 *ca = mkcert("issuing", 1, cak, NULL, NULL, NULL);
	X509 *stranger = mkcert("stranger", 9, xk, NULL, NULL, NULL);
	X509 *leaf = mkcert("leaf", 0x1234, lk, ca, cak, "OCSP;URI:http://127.0.0.1:9/ocsp");
	X509 *other = mkcert("other", 0x1235, lk, ca, cak, "OCSP;URI:https://ocsp.example/");
	X509 *bare = mkcert("bare", 0x1236, lk, ca, cak, NULL);
	X509_STORE *store = X509_STORE_new();
	STACK_OF(X509) *chain = sk_X509_new_null();
	OCSP_REQUEST *req = NULL, *req2 = NULL;
	OCSP_CERTID *id = NULL, *id2 = NULL;
	unsigned char *der = NULL, *r;
	char k1[OCSP_KEY_LEN], k2[OCSP_KEY_LEN], k3[OCSP_KEY_LEN];
	const char *why;
	time_t now = time(NULL), next;
	int derlen, n, https;
	char *url;

	X509_STORE_add_cert(store, ca);
	sk_X509_push(chain, ca);

	url = ocsp_url_of(leaf, &https);
	CHECK_STR(url, "http://127.0.0.1:9/ocsp");
	CHECK(!https);
	free(url);
	CHECK(ocsp_url_of(other, &https) == NULL && https == 1);
	CHECK(ocsp_url_of(bare, &https) == NULL && https == 0);

	CHECK(ocsp_key(leaf, ca, k1) == 0 && ocsp_key(other, ca, k2) == 0 &&
	    ocsp_key(leaf, stranger, k3) == 0);
	CHECK(strlen(k1) == 64 && strcmp(k1, k2) != 0 && strcmp(k1, k3) != 0);

	CHECK(ocsp_request_new(leaf, ca, &req, &id, &der, &derlen) == 0 && derlen > 0);
	CHECK(ocsp_request_new(other, ca, &req2, &id2, &r, &n) == 0);
	OPENSSL_free(r);

#define EVAL(resp, len) ocsp_response_eval(resp, (size_t)(len), req, id, store, chain, \
	now, &next, &why)
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req, -5, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_GOOD && next >= now + 590 && next <= now + 610);
	CHECK(EVAL(r, n - 1) == OCSP_VERDICT_ERROR);           /* cut short */
	OPENSSL_free(r);
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_REVOKED, ca, cak, req, -5, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_REVOKED);
	OPENSSL_free(r);
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_UNKNOWN, ca, cak, req, -5, 0,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_UNKNOWN && next == 0);
	OPENSSL_free(r);
	/* no nonce echoed: accepted (precomputed answers) */
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, NULL, -5, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_GOOD);
	OPENSSL_free(r);
	/* another request's nonce: a replay */
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req2, -5, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_ERROR && strstr(why, "nonce") != NULL);
	OPENSSL_free(r);
	/* signed by a key the issuer never delegated to */
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, stranger, xk, req, -5, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_ERROR && strstr(why, "signature") != NULL);
	OPENSSL_free(r);
	/* about another certificate */
	r = mkresp(other, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req, -5, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_ERROR && strstr(why, "does not answer") != NULL);
	OPENSSL_free(r);
	/* stale, and from the future (beyond the 5 minutes of skew) */
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req, -3600, -1800,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_ERROR && strstr(why, "out of date") != NULL);
	OPENSSL_free(r);
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req, 1800, 3600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_ERROR && strstr(why, "future") != NULL);
	OPENSSL_free(r);
	/* within the skew: fine */
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req, 60, 600,
	    OCSP_RESPONSE_STATUS_SUCCESSFUL, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_GOOD);
	OPENSSL_free(r);
	r = mkresp(leaf, ca, V_OCSP_CERTSTATUS_GOOD, ca, cak, req, -5, 600,
	    OCSP_RESPONSE_STATUS_TRYLATER, &n);
	CHECK(EVAL(r, n) == OCSP_VERDICT_ERROR && strstr(why, "error status") != NULL);
	OPENSSL_free(r);
	CHECK(EVAL((const unsigned char *)"\x30\x03\x0a\x01\x00", 5) == OCSP_VERDICT_ERROR);
	CHECK(EVAL((const unsigned char *)"", 0) == OCSP_VERDICT_ERROR);
#undef EVAL
	CHECK(strcmp(ocsp_verdict_name(OCSP_VERDICT_REVOKED), "revoked") == 0);

	test_cache();

	OPENSSL_free(der);
	OCSP_REQUEST_free(req);
	OCSP_REQUEST_free(req2);
	OCSP_CERTID_free(id);
	OCSP_CERTID_free(id2);
	sk_X509_free(chain);
	X509_STORE_free(store);
	X509_free(ca);
	X509_free(stranger);
	X509_free(leaf);
	X509_free(other);
	X509_free(bare);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(lk);
	EVP_PKEY_free(xk);
	CHECK_DONE();
}
