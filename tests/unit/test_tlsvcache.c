/* tlsvcache.h: a verified certificate is served from the cache on its next
 * verification (same chain, no error), never outside the window of its own times,
 * its chain's and the CRLs'; a refused certificate (revoked, expired) is never
 * cached; another certificate (other bytes) or one evicted by a colliding slot is
 * verified again. */
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "metrics.h"
#include "tlsvcache.h"

static time_t t0;

static X509 *
mkcert(const char *cn, long serial, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long life)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509_time_adj_ex(X509_getm_notBefore(x), 0, -60, &t0);
	X509_time_adj_ex(X509_getm_notAfter(x), 0, life, &t0);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	    issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (issuer == NULL) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	X509_sign(x, ikey ? ikey : key, EVP_sha256());
	return x;
}

static X509_CRL *
mkcrl(X509 *ca, EVP_PKEY *key, long serial_revoked, long next)
{
	X509_CRL *c = X509_CRL_new();
	X509_REVOKED *r = X509_REVOKED_new();
	ASN1_TIME *t = ASN1_TIME_new();
	ASN1_INTEGER *s = ASN1_INTEGER_new();

	X509_CRL_set_version(c, 1);
	X509_CRL_set_issuer_name(c, X509_get_subject_name(ca));
	X509_time_adj_ex(t, 0, -60, &t0);
	X509_CRL_set1_lastUpdate(c, t);
	X509_REVOKED_set_revocationDate(r, t);
	X509_time_adj_ex(t, 0, next, &t0);
	X509_CRL_set1_nextUpdate(c, t);
	ASN1_INTEGER_set(s, serial_revoked);
	X509_REVOKED_set_serialNumber(r, s);
	X509_CRL_add0_revoked(c, r);
	X509_CRL_sort(c);
	X509_CRL_sign(c, key, EVP_sha256());
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(s);
	return c;
}

/* One verification of leaf against store at time now (the store context's own
 * clock too, as in a handshake at that time). */
static int
verify(struct tlsvcache *vc, X509_STORE *store, X509 *leaf, time_t now, int *hit, int *err,
    STACK_OF(X509) **chain)
{
	X509_STORE_CTX *xs = X509_STORE_CTX_new();
	int r;

	X509_STORE_CTX_init(xs, store, leaf, NULL);
	X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(xs), now);
	r = tlsvcache_verify(vc, xs, now, hit);
	*err = X509_STORE_CTX_get_error(xs);
	if (chain != NULL)
		*chain = X509_STORE_CTX_get1_chain(xs);
	X509_STORE_CTX_free(xs);
	return r;
}

static X509_STORE *
mkstore(X509 *ca, X509_CRL *crl)
{
	X509_STORE *st = X509_STORE_new();

	X509_STORE_add_cert(st, ca);
	if (crl != NULL) {
		X509_STORE_add_crl(st, crl);
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	return st;
}

int
main(void)
{
	EVP_PKEY *kca, *k1, *k2, *k3, *k4;
	X509 *ca, *alice, *bob, *carol, *dave;
	X509_CRL *crl, *shortcrl;
	STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null(), *shortcrls = sk_X509_CRL_new_null();
	STACK_OF(X509) *chain;
	X509_STORE *store, *shortstore;
	struct tlsvcache *vc, *one;
	long hits0, miss0;
	int hit, err;

	t0 = time(NULL);
	kca = EVP_EC_gen("P-256");
	k1 = EVP_EC_gen("P-256");
	k2 = EVP_EC_gen("P-256");
	k3 = EVP_EC_gen("P-256");
	k4 = EVP_EC_gen("P-256");
	ca = mkcert("test CA", 1, kca, NULL, NULL, 30 * 86400);
	alice = mkcert("alice", 10, k1, ca, kca, 86400);
	bob = mkcert("bob", 11, k2, ca, kca, 86400);        /* revoked */
	carol = mkcert("carol", 12, k3, ca, kca, 86400);
	dave = mkcert("dave", 13, k4, ca, kca, 600);        /* expires in 10 minutes */
	crl = mkcrl(ca, kca, 11, 7 * 86400);
	shortcrl = mkcrl(ca, kca, 11, 300);                 /* next update in 5 minutes */
	sk_X509_CRL_push(crls, crl);
	sk_X509_CRL_push(shortcrls, shortcrl);
	store = mkstore(ca, crl);
	shortstore = mkstore(ca, shortcrl);

	vc = tlsvcache_new(64, crls);
	CHECK(vc != NULL);
	hits0 = metrics_get(M_TLS_VERIFY_HIT);
	miss0 = metrics_get(M_TLS_VERIFY_MISS);

	/* first time: verified, cached; second time: the same chain from the cache */
	CHECK(verify(vc, store, alice, t0, &hit, &err, NULL) == 1 && hit == 0 && err == X509_V_OK);
	CHECK(verify(vc, store, alice, t0 + 1, &hit, &err, &chain) == 1 && hit == 1 &&
	    err == X509_V_OK);
	CHECK(chain != NULL && sk_X509_num(chain) == 2 && sk_X509_value(chain, 0) == alice &&
	    X509_cmp(sk_X509_value(chain, 1), ca) == 0);
	sk_X509_pop_free(chain, X509_free);
	CHECK(metrics_get(M_TLS_VERIFY_HIT) == hits0 + 1);
	CHECK(metrics_get(M_TLS_VERIFY_MISS) == miss0 + 1);

	/* the same bytes in another X509 object hit too (each handshake decodes anew) */
	{
		unsigned char *der = NULL;
		const unsigned char *p;
		int len = i2d_X509(alice, &der);
		X509 *copy;

		p = der;
		copy = d2i_X509(NULL, &p, len);
		CHECK(verify(vc, store, copy, t0 + 2, &hit, &err, &chain) == 1 && hit == 1);
		CHECK(chain != NULL && sk_X509_value(chain, 0) == copy);
		sk_X509_pop_free(chain, X509_free);
		X509_free(copy);
		OPENSSL_free(der);
	}

	/* a revoked certificate is refused every time, never cached */
	CHECK(verify(vc, store, bob, t0, &hit, &err, NULL) != 1 && hit == 0 &&
	    err == X509_V_ERR_CERT_REVOKED);
	CHECK(verify(vc, store, bob, t0 + 1, &hit, &err, NULL) != 1 && hit == 0 &&
	    err == X509_V_ERR_CERT_REVOKED);

	/* another certificate is verified on its own */
	CHECK(verify(vc, store, carol, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(vc, store, carol, t0, &hit, &err, NULL) == 1 && hit == 1);

	/* past the certificate's notAfter: not from the cache, and refused */
	CHECK(verify(vc, store, dave, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(vc, store, dave, t0 + 300, &hit, &err, NULL) == 1 && hit == 1);
	CHECK(verify(vc, store, dave, t0 + 700, &hit, &err, NULL) != 1 && hit == 0 &&
	    err == X509_V_ERR_CERT_HAS_EXPIRED);
	/* before notBefore and the CRL's lastUpdate (a clock stepped back): not from
	 * the cache (X509_verify_cert names the CRL: it is checked first) */
	CHECK(verify(vc, store, alice, t0 - 3600, &hit, &err, NULL) != 1 && hit == 0 &&
	    (err == X509_V_ERR_CRL_NOT_YET_VALID || err == X509_V_ERR_CERT_NOT_YET_VALID));
	tlsvcache_free(vc);

	/* past the CRL's nextUpdate: verified again, and refused as X509_verify_cert does */
	vc = tlsvcache_new(64, shortcrls);
	CHECK(verify(vc, shortstore, alice, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(vc, shortstore, alice, t0 + 100, &hit, &err, NULL) == 1 && hit == 1);
	CHECK(verify(vc, shortstore, alice, t0 + 400, &hit, &err, NULL) != 1 && hit == 0 &&
	    err == X509_V_ERR_CRL_HAS_EXPIRED);
	tlsvcache_free(vc);

	/* one slot: a second certificate replaces the first, which is verified again */
	one = tlsvcache_new(1, crls);
	CHECK(verify(one, store, alice, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(one, store, carol, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(one, store, alice, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(one, store, alice, t0, &hit, &err, NULL) == 1 && hit == 1);
	tlsvcache_free(one);

	/* no CRLs at all (tls.crl_check off) */
	vc = tlsvcache_new(8, NULL);
	X509_STORE_free(store);
	store = mkstore(ca, NULL);
	CHECK(verify(vc, store, bob, t0, &hit, &err, NULL) == 1 && hit == 0);
	CHECK(verify(vc, store, bob, t0, &hit, &err, NULL) == 1 && hit == 1);
	tlsvcache_free(vc);

	CHECK(tlsvcache_new(0, NULL) == NULL);

	X509_STORE_free(store);
	X509_STORE_free(shortstore);
	sk_X509_CRL_free(crls);
	sk_X509_CRL_free(shortcrls);
	X509_CRL_free(crl);
	X509_CRL_free(shortcrl);
	X509_free(ca);
	X509_free(alice);
	X509_free(bob);
	X509_free(carol);
	X509_free(dave);
	EVP_PKEY_free(kca);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	EVP_PKEY_free(k4);
	CHECK_DONE();
}
