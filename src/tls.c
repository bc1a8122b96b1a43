/* TLS: the server SSL_CTX (mTLS against our CA and CRL, TLS >= 1.2, AEAD suites,
 * stateful resumption from a process-wide session cache) and loading of the
 * server key. */
/* ENGINE_* is deprecated in OpenSSL 3 but is the only switch to its legacy EC key
 * code (tls_legacy_ec below). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "p11.h"
#include "ticketkeys.h"
#include "tlsvcache.h"

#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS	"X25519:P-256:P-384"
#define TLS_VERIFY_DEPTH 4
#define TLS_NUM_TICKETS	1
#define TLS_CACHE_SIZE	4096		/* resumable sessions kept, oldest dropped first */
#define TLS_CACHE_BUCKETS 8192		/* power of two */
#define TLS_CACHE_NIL	UINT32_MAX

/* Server-side session cache, one for the process.
 *
 * Resumption is stateful (SSL_OP_NO_TICKET): a TLS 1.3 ticket, like a TLS 1.2
 * session id, is only a random id of a session kept here. OpenSSL 3.0's stateless
 * tickets serialise the session, client certificate included, encode it, decode it
 * again and encrypt it for every ticket, and decode it on every resumption; its
 * provider decoders made that about 40 % of the CPU of a full handshake.
 *
 * The cache is outside any SSL_CTX (OpenSSL's external cache callbacks, internal
 * store off), so sessions survive a reload, which builds a new SSL_CTX. Lookups
 * check the session against the current revocation list and the certificate's
 * expiry: a revoked or expired certificate gets a full handshake, where the CRL
 * check refuses it with a proper alert; conn.c checks again after every handshake.
 * A session is kept while the cache has room (oldest replaced first) and for at
 * most its timeout. The cached session is the one the connection uses (shared
 * reference), so an open connection costs the cache one entry, not a copy.
 *
 * Sessions are kept serialised (i2d_SSL_SESSION: the master secret, parameters and
 * the client certificate's DER, ~1 KiB), not as the decoded SSL_SESSION with its
 * certificate, decoded key and ASN.1 objects (~11 KiB of RSS each in OpenSSL 3.0).
 * A resumption decodes its session once (d2i_SSL_SESSION, with tls_legacy_ec's EC
 * decoding); a full handshake encodes once. OpenSSL 3.0 has no setter for a session's
 * peer certificate, so the certificate cannot be kept apart and shared by hash. */
struct tls_cent {
	unsigned char *der;		/* NULL: free slot */
	uint32_t derlen;
	uint32_t next;			/* hash chain */
	unsigned int idlen;
	unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
};

#define TLS_SESS_DER_MAX 8192		/* larger sessions (huge certificates) are not kept */

static struct {
	pthread_mutex_t mtx;
	struct tls_cent *ent;		/* TLS_CACHE_SIZE slots, filled round robin */
	uint32_t *bucket;
	uint32_t next;			/* slot for the next session */
	int sid_idx;			/* SSL_CTX ex_data: its session id context */
	int ok;
} tls_cache = { .mtx = PTHREAD_MUTEX_INITIALIZER, .sid_idx = -1 };
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static tls_revoked_check tls_revoked_fn;	/* atomic */

void
tls_set_revoked_check(tls_revoked_check fn)
{
	__atomic_store_n(&tls_revoked_fn, fn, __ATOMIC_RELEASE);
}

/* An SSL_CTX's session id context, kept to compare cached sessions against. */
struct tls_sid {
	unsigned int len;
	unsigned char md[SSL_MAX_SID_CTX_LENGTH];
};

static void
tls_sid_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

/* The client certificate of a handshake that failed verification: OpenSSL keeps no
 * peer certificate then, and the audit line of the refusal should say whose it was.
 * The verify callback keeps a reference to the leaf in SSL ex_data (freed with the
 * SSL); verification itself is unchanged. */
static int tls_refused_idx = -1;

static void
tls_refused_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	X509_free(ptr);
}

static void
tls_refused_init(void)
{
	tls_refused_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_refused_free);
}

static int
tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
	X509 *leaf;
	SSL *s;

	if (ok || tls_refused_idx < 0)
		return ok;
	s = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	leaf = X509_STORE_CTX_get0_cert(xs);
	if (s != NULL && leaf != NULL && SSL_get_ex_data(s, tls_refused_idx) == NULL &&
	    X509_up_ref(leaf) == 1 && SSL_set_ex_data(s, tls_refused_idx, leaf) != 1)
		X509_free(leaf);
	return ok;
}

X509 *
tls_refused_cert(const SSL *s)
{
	return tls_refused_idx < 0 ? NULL : SSL_get_ex_data(s, tls_refused_idx);
}

/* OpenSSL 3.0 decodes every public key it parses (the client certificate of each
 * full handshake) through its provider decoders, which build a decoder chain under
 * read-write locks for each key: about a fifth of a full handshake's CPU. When an
 * ENGINE provides the EC key method, it takes its legacy path instead (plain
 * EC_KEY decoding, the EVP_PKEY_METHOD for verification), which is what an
 * application that loads the pkcs11 engine gets. This engine is a pass-through:
 * it offers OpenSSL's own EC method (or the one p11.c registered), so the
 * arithmetic and the checks are OpenSSL's; only the dispatch changes. */
static const int tls_legacy_nids[] = { EVP_PKEY_EC };
static EVP_PKEY_METHOD *tls_legacy_meth;	/* owned by the engine (freed at exit) */

static int
tls_legacy_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
	if (pmeth == NULL) {
		*nids = tls_legacy_nids;
		return (int)(sizeof(tls_legacy_nids) / sizeof(tls_legacy_nids[0]));
	}
	*pmeth = nid == EVP_PKEY_EC ? tls_legacy_meth : NULL;
	return *pmeth != NULL;
}

/* Runs once, after the server key was loaded: the method copied is then the one
 * OpenSSL would pick for EC keys (p11.c's wrapper, which signs with the token key
 * and leaves every other key to OpenSSL's own code). */
static void
tls_legacy_ec(void)
{
	const EVP_PKEY_METHOD *orig;
	ENGINE *e;
	int id, flags;

	if ((orig = EVP_PKEY_meth_find(EVP_PKEY_EC)) == NULL)
		goto fail;
	EVP_PKEY_meth_get0_info(&id, &flags, orig);
	if ((tls_legacy_meth = EVP_PKEY_meth_new(EVP_PKEY_EC, flags)) == NULL)
		goto fail;
	EVP_PKEY_meth_copy(tls_legacy_meth, orig);
	if ((e = ENGINE_new()) == NULL) {
		EVP_PKEY_meth_free(tls_legacy_meth);
		goto fail;
	}
	/* From here the engine owns tls_legacy_meth (ENGINE_free frees it). */
	if (ENGINE_set_id(e, "certgate-ec") != 1 ||
	    ENGINE_set_name(e, "certgate: OpenSSL's EC key method, legacy dispatch") != 1 ||
	    ENGINE_set_pkey_meths(e, tls_legacy_pkey_meths) != 1 ||
	    ENGINE_init(e) != 1) {
		ENGINE_free(e);
		goto fail;
	}
	if (ENGINE_set_default_pkey_meths(e) != 1) {
		ENGINE_finish(e);
		ENGINE_free(e);
		goto fail;
	}
	/* The engine table holds its own references now; ours go. */
	ENGINE_finish(e);
	ENGINE_free(e);
	return;
fail:
	tls_legacy_meth = NULL;
	ERR_clear_error();
	log_debug("EC keys stay on OpenSSL's provider path");
}

static void
tls_cache_init(void)
{
	uint32_t i;

	tls_cache.ent = calloc(TLS_CACHE_SIZE, sizeof(*tls_cache.ent));
	tls_cache.bucket = malloc(TLS_CACHE_BUCKETS * sizeof(*tls_cache.bucket));
	tls_cache.sid_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_sid_free);
	if (tls_cache.ent == NULL || tls_cache.bucket == NULL || tls_cache.sid_idx < 0)
		return;
	for (i = 0; i < TLS_CACHE_BUCKETS; i++)
		tls_cache.bucket[i] = TLS_CACHE_NIL;
	tls_cache.ok = 1;
}

/* Process-wide set-up, at the first SSL_CTX (the server key is loaded by then). */
static void
tls_init(void)
{
	tls_legacy_ec();
	tls_cache_init();
	tls_refused_init();
}

/* Session ids are random bytes chosen by OpenSSL, not by the client. */
static uint32_t
tls_cache_hash(const unsigned char *id, unsigned int len)
{
	return hash_fnv1a(HASH_FNV_INIT, id, len) & (TLS_CACHE_BUCKETS - 1);
}

/* Slot of id, or TLS_CACHE_NIL. Caller holds the lock. */
static uint32_t
tls_cache_find(const unsigned char *id, unsigned int len)
{
	uint32_t i;

	for (i = tls_cache.bucket[tls_cache_hash(id, len)]; i != TLS_CACHE_NIL;
	    i = tls_cache.ent[i].next)
		if (tls_cache.ent[i].idlen == len && memcmp(tls_cache.ent[i].id, id, len) == 0)
			return i;
	return TLS_CACHE_NIL;
}

/* Empties slot i and returns its serialised session for the caller to free
 * (outside the lock). Caller holds the lock. */
static unsigned char *
tls_cache_unlink(uint32_t i)
{
	struct tls_cent *e = &tls_cache.ent[i];
	unsigned char *der = e->der;
	uint32_t *pp;

	pp = &tls_cache.bucket[tls_cache_hash(e->id, e->idlen)];
	while (*pp != TLS_CACHE_NIL && *pp != i)
		pp = &tls_cache.ent[*pp].next;
	if (*pp == i)
		*pp = e->next;
	e->der = NULL;
	e->derlen = 0;
	metrics_dec(M_TLS_CACHE_SESSIONS);
	e->idlen = 0;
	e->next = TLS_CACHE_NIL;
	return der;
}

/* Drops the session with this id from the cache if it is there. */
static void
tls_cache_remove_id(const unsigned char *id, unsigned int len)
{
	unsigned char *old = NULL;
	uint32_t i;

	if (!tls_cache.ok || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
		return;
	pthread_mutex_lock(&tls_cache.mtx);
	if ((i = tls_cache_find(id, len)) != TLS_CACHE_NIL)
		old = tls_cache_unlink(i);
	pthread_mutex_unlock(&tls_cache.mtx);
	free(old);
}

static void
tls_cache_remove(SSL_SESSION *sess)
{
	const unsigned char *id;
	unsigned int len;

	id = SSL_SESSION_get_id(sess, &len);
	tls_cache_remove_id(id, len);
}

/* OpenSSL made a session resumable: keep its serialised form. Returns 0, so
 * OpenSSL keeps its reference (the connection's session) and the cache none. */
static int
tls_sess_new_cb(SSL *s, SSL_SESSION *sess)
{
	unsigned char *der, *p, *old = NULL;
	struct tls_cent *e;
	const unsigned char *id;
	unsigned int len;
	uint32_t i, h;
	int n;

	id = SSL_SESSION_get_id(sess, &len);
	if (!tls_cache.ok || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
		return 0;
	if ((n = i2d_SSL_SESSION(sess, NULL)) <= 0 || n > TLS_SESS_DER_MAX ||
	    (der = malloc((size_t)n)) == NULL) {
		ERR_clear_error();
		return 0;
	}
	p = der;
	if (i2d_SSL_SESSION(sess, &p) != n) {
		free(der);
		ERR_clear_error();
		return 0;
	}
	h = tls_cache_hash(id, len);
	pthread_mutex_lock(&tls_cache.mtx);
	i = tls_cache.next;
	tls_cache.next = (i + 1) % TLS_CACHE_SIZE;
	e = &tls_cache.ent[i];
	if (e->der != NULL)
		old = tls_cache_unlink(i);
	e->der = der;
	e->derlen = (uint32_t)n;
	metrics_inc(M_TLS_CACHE_SESSIONS);
	e->idlen = len;
	memcpy(e->id, id, len);
	e->next = tls_cache.bucket[h];
	tls_cache.bucket[h] = i;
	pthread_mutex_unlock(&tls_cache.mtx);
	free(old);
	return 0;
}

/* OpenSSL gave up on a session (e.g. a fatal alert on its connection). */
static void
tls_sess_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
	tls_cache_remove(sess);
}

/* 1 when a cached session may resume on s: still resumable, within its timeout,
 * made under the same session id context (CA bundle), and its certificate neither
 * expired nor revoked. */
static int
tls_sess_usable(SSL *s, SSL_SESSION *sess)
{
	const struct tls_sid *sid;
	const unsigned char *sctx;
	unsigned int slen;
	tls_revoked_check check;
	X509 *peer;
	char serial[80];
	int revoked = 0;

	if (!SSL_SESSION_is_resumable(sess))
		return 0;
	if ((time_t)SSL_SESSION_get_time(sess) + (time_t)SSL_SESSION_get_timeout(sess) <=
	    time(NULL))
		return 0;
	sid = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), tls_cache.sid_idx);
	sctx = SSL_SESSION_get0_id_context(sess, &slen);
	if (sid == NULL || slen != sid->len || memcmp(sctx, sid->md, slen) != 0)
		return 0;
	peer = SSL_SESSION_get0_peer(sess);
	if (peer == NULL || tls_serial_hex(peer, serial, sizeof(serial)) == -1)
		return 0;
	if (X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0)
		return 0;
	if ((check = __atomic_load_n(&tls_revoked_fn, __ATOMIC_ACQUIRE)) != NULL)
		revoked = check(peer);
	if (revoked) {
		log_debug("session not resumed: certificate %s revoked", serial);
		return 0;
	}
	return 1;
}

const unsigned char *
tls_trust_id(SSL_CTX *ctx, unsigned int *len)
{
	const struct tls_sid *sid;

	if (tls_cache.sid_idx < 0 || (sid = SSL_CTX_get_ex_data(ctx, tls_cache.sid_idx)) == NULL)
		return NULL;
	*len = sid->len;
	return sid->md;
}

/* The client offered a session id (TLS 1.2) or a stateful ticket (TLS 1.3). The
 * session returned is decoded for this handshake; OpenSSL owns it (*copy = 0). */
static SSL_SESSION *
tls_sess_get_cb(SSL *s, const unsigned char *id, int len, int *copy)
{
	/* on the heap: this may run on an async job's small stack (signer.h) */
	unsigned char *buf = NULL;
	const unsigned char *p;
	SSL_SESSION *sess;
	uint32_t i, n = 0;

	*copy = 0;
	if (!tls_cache.ok || len <= 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
		return NULL;
	/* copied out under the lock, decoded outside it */
	pthread_mutex_lock(&tls_cache.mtx);
	if ((i = tls_cache_find(id, (unsigned int)len)) != TLS_CACHE_NIL) {
		n = tls_cache.ent[i].derlen;
		if ((buf = malloc(n)) != NULL)
			memcpy(buf, tls_cache.ent[i].der, n);
	}
	pthread_mutex_unlock(&tls_cache.mtx);
	if (buf == NULL)
		return NULL;
	p = buf;
	sess = d2i_SSL_SESSION(NULL, &p, (long)n);
	free(buf);
	if (sess == NULL) {
		tls_cache_remove_id(id, (unsigned int)len);
		ERR_clear_error();
		return NULL;
	}
	if (!tls_sess_usable(s, sess)) {
		tls_cache_remove_id(id, (unsigned int)len);
		SSL_SESSION_free(sess);
		ERR_clear_error();
		return NULL;
	}
	return sess;
}

void
tls_shutdown(void)
{
	unsigned char *der;
	uint32_t i;

	if (!tls_cache.ok)
		return;
	for (i = 0; i < TLS_CACHE_SIZE; i++) {
		pthread_mutex_lock(&tls_cache.mtx);
		der = tls_cache.ent[i].der != NULL ? tls_cache_unlink(i) : NULL;
		pthread_mutex_unlock(&tls_cache.mtx);
		free(der);
	}
}

int
tls_serial_hex(X509 *cert, char *buf, size_t len)
{
	const ASN1_INTEGER *ai;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	int rc = -1;

	if (len == 0)
		return -1;
	buf[0] = '\0';
	if ((ai = X509_get0_serialNumber(cert)) == NULL)
		return -1;
	if ((bn = ASN1_INTEGER_to_BN(ai, NULL)) == NULL)
		goto fail;
	if ((hex = BN_bn2hex(bn)) == NULL)
		goto fail;
	if (strlen(hex) >= len)
		goto fail;
	memcpy(buf, hex, strlen(hex) + 1);
	rc = 0;
fail:
	OPENSSL_free(hex);
	BN_free(bn);
	return rc;
}

int
tls_load_server_key(const struct config *cfg, EVP_PKEY **out)
{
	struct p11_defaults d;
	EVP_PKEY *pk = NULL;
	FILE *f;

	*out = NULL;
	if (cfg->tls.key == NULL) {
		log_err("%s: tls.key is not set", cfg->path ? cfg->path : "config");
		return -1;
	}
	if (p11_is_uri(cfg->tls.key)) {
		memset(&d, 0, sizeof(d));
		d.module = cfg->pkcs11.module;
		d.token = cfg->pkcs11.token;
		d.pin_file = cfg->pkcs11.pin_file;
		d.pin_env = cfg->pkcs11.pin_env;
		d.softhsm2_conf = cfg->pkcs11.softhsm2_conf;
		if (p11_load_private_key(&d, cfg->tls.key, cfg->tls.allow_extractable_key,
		    out) == -1) {
			log_err("cannot load the server key from the token (tls.key)");
			return -1;
		}
		return 0;
	}
	if ((f = fopen(cfg->tls.key, "r")) == NULL) {
		log_err("cannot open server key %s: %s", cfg->tls.key, strerror(errno));
		return -1;
	}
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL) {
		log_sslerr("cannot read server key %s (PEM private key expected)", cfg->tls.key);
		return -1;
	}
	log_warn("server key %s is a software key file (not in a token)", cfg->tls.key);
	*out = pk;
	return 0;
}

/* Session id context: a hash of the CA bundle, so sessions made under another CA
 * never resume after tls.ca changes. */
static int
tls_set_sid_ctx(SSL_CTX *ctx, const char *ca_path, const char *label)
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[4096];
	unsigned int mdlen = 0;
	struct tls_sid *sid;
	EVP_MD_CTX *m;
	size_t n;
	FILE *f;
	int rc = -1;

	if ((m = EVP_MD_CTX_new()) == NULL)
		return -1;
	if ((f = fopen(ca_path, "r")) == NULL) {
		log_err("cannot open CA bundle %s: %s", ca_path, strerror(errno));
		goto fail;
	}
	if (EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(m, label, strlen(label)) != 1)
		goto fail;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(m, buf, n) != 1)
			goto fail;
	if (EVP_DigestFinal_ex(m, md, &mdlen) != 1)
		goto fail;
	if (mdlen > SSL_MAX_SID_CTX_LENGTH)
		mdlen = SSL_MAX_SID_CTX_LENGTH;
	if (SSL_CTX_set_session_id_context(ctx, md, mdlen) != 1)
		goto fail;
	/* Kept with the context for resumption (tls_sess_usable) and for telling whether
	 * an open connection was verified under the same bundle (tls_trust_id). */
	if (tls_cache.sid_idx >= 0) {
		if ((sid = calloc(1, sizeof(*sid))) == NULL)
			goto fail;
		sid->len = mdlen;
		memcpy(sid->md, md, mdlen);
		if (SSL_CTX_set_ex_data(ctx, tls_cache.sid_idx, sid) != 1) {
			free(sid);
			goto fail;
		}
	}
	rc = 0;
fail:
	if (rc == -1)
		log_sslerr("cannot set the session id context");
	if (f != NULL)
		fclose(f);
	EVP_MD_CTX_free(m);
	return rc;
}

/* Builds the verification store: the CA bundle and, when checking, the CRLs (one per
 * CA, tlscrl_load). */
static X509_STORE *
tls_store_new(const struct config *cfg, STACK_OF(X509_CRL) *crls)
{
	X509_STORE *store;
	int i;

	if ((store = X509_STORE_new()) == NULL) {
		log_sslerr("X509_STORE_new");
		return NULL;
	}
	if (X509_STORE_load_file(store, cfg->tls.ca) != 1) {
		log_sslerr("cannot load CA bundle %s (tls.ca)", cfg->tls.ca);
		goto fail;
	}
	if (sk_X509_OBJECT_num(X509_STORE_get0_objects(store)) == 0) {
		log_err("CA bundle %s (tls.ca) holds no certificate", cfg->tls.ca);
		goto fail;
	}
	if (cfg->tls.crl_check) {
		if (sk_X509_CRL_num(crls) <= 0) {
			log_err("tls.crl_check is on but no CRL was loaded");
			goto fail;
		}
		for (i = 0; i < sk_X509_CRL_num(crls); i++)
			if (X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i)) != 1) {
				log_sslerr("cannot add a CRL of %s", cfg->tls.crl);
				goto fail;
			}
		/* Every level: an issuing CA under a root is itself checked against the
		 * root's CRL (for a single self-signed CA this is the leaf check). */
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	X509_STORE_set_depth(store, TLS_VERIFY_DEPTH);
	return store;
fail:
	X509_STORE_free(store);
	return NULL;
}

static int
tls_ctx_protocol(SSL_CTX *ctx, const struct config *cfg)
{
	int minv = cfg->tls.min_version ? cfg->tls.min_version : TLS1_2_VERSION;

	if (minv < TLS1_2_VERSION)
		minv = TLS1_2_VERSION;
	if (SSL_CTX_set_min_proto_version(ctx, minv) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		log_sslerr("cannot set TLS protocol versions");
		return -1;
	}
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		log_sslerr("cannot set TLS 1.2 ciphers");
		return -1;
	}
	if (SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
		log_sslerr("cannot set groups %s", TLS_GROUPS);
		return -1;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
	    | SSL_OP_NO_CLIENT_RENEGOTIATION
#endif
	    );
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return 0;
}

static int
tls_ctx_identity(SSL_CTX *ctx, const struct config *cfg, EVP_PKEY *key)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1) {
		log_sslerr("cannot load server certificate chain %s (tls.cert)", cfg->tls.cert);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		log_sslerr("server certificate %s does not match the server key (tls.key) "
		    "or the key is unusable", cfg->tls.cert);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_sslerr("server certificate %s does not match the server key (tls.key)",
		    cfg->tls.cert);
		return -1;
	}
	return 0;
}

static int
tls_ctx_verify(SSL_CTX *ctx, const struct config *cfg, int flags, STACK_OF(X509_CRL) *crls)
{
	STACK_OF(X509_NAME) *names;
	X509_STORE *store;

	if ((store = tls_store_new(cfg, crls)) == NULL)
		return -1;
	SSL_CTX_set_cert_store(ctx, store);	/* ctx owns store now */
	SSL_CTX_set_verify(ctx, (flags & TLS_CTX_OPTIONAL_CERT) ? SSL_VERIFY_PEER :
	    SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_cb);
	SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
	/* The store and CRLs are fixed for ctx's life: a certificate verified once
	 * need not be verified again while its times hold (tlsvcache.h). */
	if (tlsvcache_attach(ctx, cfg->tls.crl_check ? crls : NULL) == -1) {
		log_err("no memory for the verified-certificate cache");
		return -1;
	}
	if ((names = SSL_load_client_CA_file(cfg->tls.ca)) == NULL) {
		log_sslerr("cannot read CA names from %s", cfg->tls.ca);
		return -1;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	/* Another session id context per listener kind: a session made on one never
	 * resumes on the other. */
	return tls_set_sid_ctx(ctx, cfg->tls.ca, (flags & TLS_CTX_OPTIONAL_CERT) ?
	    "certgate-enroll" : "certgate");
}

static int
tls_ctx_sessions(SSL_CTX *ctx, const struct config *cfg)
{
	/* A cluster: stateless tickets under keys shared by the instances. */
	if (cfg->cluster.redis != NULL && cfg->tls.session_tickets) {
		SSL_CTX_set_num_tickets(ctx, TLS_NUM_TICKETS);
		return ticketkeys_ctx_setup(ctx, tls_sess_usable);
	}
	/* Stateful resumption only (see tls_cache): never a stateless ticket. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (!cfg->tls.session_tickets || !tls_cache.ok) {
		if (cfg->tls.session_tickets)
			log_warn("no memory for the session cache: resumption is off");
		/* No resumption at all: every connection re-verifies its certificate. */
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		return 0;
	}
	/* One ticket per handshake: clients keep the latest anyway, and each ticket
	 * is a cached session. */
	SSL_CTX_set_num_tickets(ctx, TLS_NUM_TICKETS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER |
	    SSL_SESS_CACHE_NO_INTERNAL | SSL_SESS_CACHE_NO_AUTO_CLEAR);
	SSL_CTX_sess_set_new_cb(ctx, tls_sess_new_cb);
	SSL_CTX_sess_set_get_cb(ctx, tls_sess_get_cb);
	SSL_CTX_sess_set_remove_cb(ctx, tls_sess_remove_cb);
	return 0;
}

SSL_CTX *
tls_ctx_new(const struct config *cfg, EVP_PKEY *key, int flags, STACK_OF(X509_CRL) *crls)
{
	SSL_CTX *ctx;

	if (key == NULL) {
		log_err("no server key");
		return NULL;
	}
	pthread_once(&tls_once, tls_init);
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		log_sslerr("SSL_CTX_new");
		return NULL;
	}
	if (tls_ctx_protocol(ctx, cfg) == -1 || tls_ctx_identity(ctx, cfg, key) == -1 ||
	    tls_ctx_verify(ctx, cfg, flags, crls) == -1 || tls_ctx_sessions(ctx, cfg) == -1)
		goto fail;
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

STACK_OF(X509) *
tls_build_chain(SSL_CTX *ctx, X509 *leaf, STACK_OF(X509) *untrusted)
{
	X509_STORE_CTX *vc;
	STACK_OF(X509) *chain = NULL;

	if ((vc = X509_STORE_CTX_new()) == NULL)
		return NULL;
	if (X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(ctx), leaf, untrusted) != 1)
		goto out;
	X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(vc),
	    X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(vc) == 1)
		chain = X509_STORE_CTX_get1_chain(vc);
out:
	X509_STORE_CTX_free(vc);
	ERR_clear_error();
	return chain;
}
