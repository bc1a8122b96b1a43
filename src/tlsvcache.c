/* Verified client certificate chains per SSL_CTX (tlsvcache.h). */
#include "tlsvcache.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "metrics.h"

/* A certificate larger than this is verified every time (agent certificates are
 * ~600 bytes; this keeps the DER of the one being checked on the stack). */
#define TLSVCACHE_MAX_DER	8192

struct tlsvcache_ent {
	unsigned char *der;             /* NULL: empty slot */
	int derlen;
	STACK_OF(X509) *issuers;        /* the verified chain after the leaf, referenced */
	time_t from, until;             /* usable while from <= now <= until */
};

struct tlsvcache {
	pthread_mutex_t mtx;
	size_t n;
	time_t crl_from, crl_until;     /* over every CRL of the context */
	int retired;                    /* tlsvcache_retire: empty, takes nothing */
	struct tlsvcache_ent *slot;
};

static int tlsvcache_idx = -1;
static pthread_once_t tlsvcache_once = PTHREAD_ONCE_INIT;

/* An ASN1_TIME as time_t. -1 when it cannot be read: a certificate whose times
 * cannot be read is not cached, a CRL's closes the whole cache. */
static int
tlsvcache_time(const ASN1_TIME *t, time_t *out)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = timegm(&tm);
	return 0;
}

static void
tlsvcache_ent_clear(struct tlsvcache_ent *e)
{
	free(e->der);
	sk_X509_pop_free(e->issuers, X509_free);
	memset(e, 0, sizeof(*e));
}

struct tlsvcache *
tlsvcache_new(size_t slots, STACK_OF(X509_CRL) *crls)
{
	struct tlsvcache *vc;
	time_t t;
	int i;

	if (slots == 0 || (vc = calloc(1, sizeof(*vc))) == NULL)
		return NULL;
	if ((vc->slot = calloc(slots, sizeof(*vc->slot))) == NULL) {
		free(vc);
		return NULL;
	}
	pthread_mutex_init(&vc->mtx, NULL);
	vc->n = slots;
	vc->crl_from = 0;
	vc->crl_until = (time_t)LLONG_MAX;
	for (i = 0; i < sk_X509_CRL_num(crls); i++) {
		X509_CRL *c = sk_X509_CRL_value(crls, i);

		if (tlsvcache_time(X509_CRL_get0_lastUpdate(c), &t) == -1) {
			vc->crl_until = 0;      /* unreadable: never use the cache */
			continue;
		}
		if (t > vc->crl_from)
			vc->crl_from = t;
		/* No nextUpdate: the CRL never expires for X509_verify_cert either. */
		if (X509_CRL_get0_nextUpdate(c) == NULL)
			continue;
		if (tlsvcache_time(X509_CRL_get0_nextUpdate(c), &t) == -1)
			vc->crl_until = 0;
		else if (t < vc->crl_until)
			vc->crl_until = t;
	}
	return vc;
}

void
tlsvcache_free(struct tlsvcache *vc)
{
	size_t i;

	if (vc == NULL)
		return;
	for (i = 0; i < vc->n; i++)
		tlsvcache_ent_clear(&vc->slot[i]);
	pthread_mutex_destroy(&vc->mtx);
	free(vc->slot);
	free(vc);
}

/* Remembers the chain xs verified for der. Failures only cost the next handshake a
 * verification. */
static void
tlsvcache_put(struct tlsvcache *vc, struct tlsvcache_ent *e, const unsigned char *der,
    int derlen, STACK_OF(X509) *chain)
{
	struct tlsvcache_ent n = { 0 };
	time_t t;
	int i;

	n.from = vc->crl_from;
	n.until = vc->crl_until;
	for (i = 0; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		if (tlsvcache_time(X509_get0_notBefore(x), &t) == -1)
			return;
		if (t > n.from)
			n.from = t;
		if (tlsvcache_time(X509_get0_notAfter(x), &t) == -1)
			return;
		if (t < n.until)
			n.until = t;
	}
	if ((n.der = malloc((size_t)derlen)) == NULL || (n.issuers = sk_X509_new_null()) == NULL)
		goto fail;
	memcpy(n.der, der, (size_t)derlen);
	n.derlen = derlen;
	for (i = 1; i < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);

		if (X509_up_ref(x) != 1)
			goto fail;
		if (sk_X509_push(n.issuers, x) <= 0) {
			X509_free(x);
			goto fail;
		}
	}
	tlsvcache_ent_clear(e);
	*e = n;
	return;
fail:
	tlsvcache_ent_clear(&n);
}

/* The verified chain of a hit: leaf, then the cached issuers, each referenced. */
static STACK_OF(X509) *
tlsvcache_chain(X509 *leaf, const STACK_OF(X509) *issuers)
{
	STACK_OF(X509) *sk;
	int i;

	if ((sk = sk_X509_new_reserve(NULL, sk_X509_num(issuers) + 1)) == NULL)
		return NULL;
	for (i = -1; i < sk_X509_num(issuers); i++) {
		X509 *x = i < 0 ? leaf : sk_X509_value(issuers, i);

		if (X509_up_ref(x) != 1 || sk_X509_push(sk, x) <= 0) {
			sk_X509_pop_free(sk, X509_free);
			return NULL;
		}
	}
	return sk;
}

/* The DER of leaf into der (TLSVCACHE_MAX_DER bytes); its length, or -1 when it
 * does not fit. */
static int
tlsvcache_der(X509 *leaf, unsigned char *der)
{
	unsigned char *p = der;
	int len = leaf != NULL ? i2d_X509(leaf, NULL) : -1;

	if (len <= 0 || len > TLSVCACHE_MAX_DER || i2d_X509(leaf, &p) != len)
		return -1;
	return len;
}

/* The slot of der, and (NULL when none) the chain it holds for leaf at now. */
static struct tlsvcache_ent *
tlsvcache_get(struct tlsvcache *vc, X509 *leaf, const unsigned char *der, int len,
    time_t now, STACK_OF(X509) **chain)
{
	struct tlsvcache_ent *e = &vc->slot[hash_fnv1a(HASH_FNV_INIT, der, (size_t)len) % vc->n];

	*chain = NULL;
	pthread_mutex_lock(&vc->mtx);
	if (e->der != NULL && e->derlen == len && memcmp(e->der, der, (size_t)len) == 0 &&
	    now >= e->from && now <= e->until)
		*chain = tlsvcache_chain(leaf, e->issuers);
	pthread_mutex_unlock(&vc->mtx);
	return e;
}

int
tlsvcache_verify(struct tlsvcache *vc, X509_STORE_CTX *xs, time_t now, int *hit)
{
	unsigned char der[TLSVCACHE_MAX_DER];
	STACK_OF(X509) *chain;
	struct tlsvcache_ent *e;
	X509 *leaf = X509_STORE_CTX_get0_cert(xs);
	int len, r;

	if (hit != NULL)
		*hit = 0;
	if ((len = tlsvcache_der(leaf, der)) == -1)
		return X509_verify_cert(xs);
	e = tlsvcache_get(vc, leaf, der, len, now, &chain);
	if (chain != NULL) {
		/* What X509_verify_cert leaves behind on success: the chain, no error. */
		X509_STORE_CTX_set0_verified_chain(xs, chain);
		X509_STORE_CTX_set_error(xs, X509_V_OK);
		metrics_inc(M_TLS_VERIFY_HIT);
		if (hit != NULL)
			*hit = 1;
		return 1;
	}
	metrics_inc(M_TLS_VERIFY_MISS);
	r = X509_verify_cert(xs);
	if (r == 1 && X509_STORE_CTX_get_error(xs) == X509_V_OK) {
		pthread_mutex_lock(&vc->mtx);
		if (!vc->retired)
			tlsvcache_put(vc, e, der, len, X509_STORE_CTX_get0_chain(xs));
		pthread_mutex_unlock(&vc->mtx);
	}
	return r;
}

/* ---- the SSL_CTX's cache ---- */

STACK_OF(X509) *
tlsvcache_lookup(SSL_CTX *ctx, X509 *leaf, time_t now)
{
	unsigned char der[TLSVCACHE_MAX_DER];
	STACK_OF(X509) *chain;
	struct tlsvcache *vc;
	int len;

	if (tlsvcache_idx < 0 || (vc = SSL_CTX_get_ex_data(ctx, tlsvcache_idx)) == NULL ||
	    (len = tlsvcache_der(leaf, der)) == -1)
		return NULL;
	(void)tlsvcache_get(vc, leaf, der, len, now, &chain);
	return chain;
}

static void
tlsvcache_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	tlsvcache_free(ptr);
}

static void
tlsvcache_init(void)
{
	tlsvcache_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tlsvcache_ex_free);
}

static int
tlsvcache_cb(X509_STORE_CTX *xs, void *arg)
{
	return tlsvcache_verify(arg, xs, time(NULL), NULL);
}

void
tlsvcache_retire(SSL_CTX *ctx)
{
	struct tlsvcache *vc;
	size_t i;

	if (ctx == NULL || tlsvcache_idx < 0 ||
	    (vc = SSL_CTX_get_ex_data(ctx, tlsvcache_idx)) == NULL)
		return;
	pthread_mutex_lock(&vc->mtx);
	vc->retired = 1;
	for (i = 0; i < vc->n; i++)
		tlsvcache_ent_clear(&vc->slot[i]);
	pthread_mutex_unlock(&vc->mtx);
}

int
tlsvcache_attach(SSL_CTX *ctx, STACK_OF(X509_CRL) *crls)
{
	struct tlsvcache *vc;

	pthread_once(&tlsvcache_once, tlsvcache_init);
	if (tlsvcache_idx < 0 || (vc = tlsvcache_new(TLSVCACHE_SLOTS, crls)) == NULL)
		return -1;
	if (SSL_CTX_set_ex_data(ctx, tlsvcache_idx, vc) != 1) {
		tlsvcache_free(vc);
		return -1;
	}
	SSL_CTX_set_cert_verify_callback(ctx, tlsvcache_cb, vc);
	return 0;
}
