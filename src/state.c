/* Reloadable runtime state. The current state is one pointer under a mutex; readers
 * take a reference (atomic count) and may keep using their state after a reload
 * swapped in a newer one: the old one is freed by the last state_put. Reloads run
 * on the main thread only. */
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bn.h>
#include <ctype.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cabundle.h"
#include "log.h"
#include "metrics.h"
#include "dn.h"
#include "tls.h"
#include "tlscrl.h"
#include "tlsvcache.h"

/* What a file looked like when it was last loaded. */
struct state_fsig {
	int exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

enum { SF_MAP, SF_CRL, SF_CA, SF_CERT, SF_COUNT };

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_state *state_cur;
static uint64_t state_gen;		/* atomic */
static const struct config *state_cfg;
static EVP_PKEY *state_key;		/* borrowed */
static struct state_fsig state_sig[SF_COUNT];
static time_t state_crl_warned;

/* Reload history (state.h) and the last-reload gauges. */
static pthread_mutex_t state_hist_lock = PTHREAD_MUTEX_INITIALIZER;
static struct state_reload_ev state_hist[STATE_HISTORY_MAX];
static size_t state_hist_n, state_hist_next;
static time_t state_last_reload, state_last_ok_reload;
static int state_last_ok = 1;
static pthread_once_t state_metrics_once = PTHREAD_ONCE_INIT;

static const char *
state_file(int i)
{
	switch (i) {
	case SF_MAP:
		return state_cfg->identity_map;
	case SF_CRL:
		return state_cfg->tls.crl_check ? state_cfg->tls.crl : NULL;
	case SF_CA:
		return state_cfg->tls.ca;
	case SF_CERT:
		return state_cfg->tls.cert;
	}
	return NULL;
}

static void
state_fsig_read(const char *path, struct state_fsig *s)
{
	struct stat sb;

	memset(s, 0, sizeof(*s));
	if (path == NULL || stat(path, &sb) == -1)
		return;
	s->exists = 1;
	s->dev = sb.st_dev;
	s->ino = sb.st_ino;
	s->size = sb.st_size;
	s->mtime = sb.st_mtim;
}

static int
state_fsig_eq(const struct state_fsig *a, const struct state_fsig *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	    a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The revoked-set key: "ISSUER\nSERIAL", ISSUER the RFC 4514 DN (dn.h, no newline in
 * it), SERIAL hex without leading zeros in upper case, so "0A1B", "a1b" and "A1B" are
 * the same serial whoever formatted them. Serials are unique per issuer only: a CRL
 * of one CA never revokes another CA's certificate of the same serial. Returns a
 * malloc'd key or NULL. */
static char *
state_revoked_key(const char *issuer, const char *serial)
{
	size_t li = strlen(issuer), ls, i;
	char *k;

	while (*serial == '0' && serial[1] != '\0')
		serial++;
	ls = strlen(serial);
	if ((k = malloc(li + ls + 2)) == NULL)
		return NULL;
	memcpy(k, issuer, li);
	k[li] = '\n';
	for (i = 0; i < ls; i++)
		k[li + 1 + i] = (char)toupper((unsigned char)serial[i]);
	k[li + 1 + ls] = '\0';
	return k;
}

static int
state_key_qcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
state_key_bcmp(const void *key, const void *elem)
{
	return strcmp(key, *(char *const *)elem);
}

static void
state_free(struct gw_state *st)
{
	size_t i;

	if (st == NULL)
		return;
	/* Connections made under these contexts keep them alive until they close;
	 * their verified-certificate caches are of no use to anyone any more. */
	tlsvcache_retire(st->ssl_ctx);
	tlsvcache_retire(st->enroll_ctx);
	SSL_CTX_free(st->ssl_ctx);
	SSL_CTX_free(st->enroll_ctx);
	identity_map_free(st->map);
	for (i = 0; i < st->nrevoked; i++)
		free(st->revoked[i]);
	free(st->revoked);
	sk_X509_CRL_pop_free(st->crls, X509_CRL_free);
	sk_X509_pop_free(st->own_ca, X509_free);
	free(st);
}

static time_t
state_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* Adds crl's revoked serials to st->revoked (sized by the caller). */
static int
state_revoked_add(struct gw_state *st, X509_CRL *crl)
{
	STACK_OF(X509_REVOKED) *rv = X509_CRL_get_REVOKED(crl);
	char *hex, *issuer;
	BIGNUM *bn;
	int i, rc = -1;

	if ((issuer = dn_format(X509_CRL_get_issuer(crl))) == NULL) {
		log_err("cannot format the issuer of a CRL");
		return -1;
	}
	for (i = 0; rv != NULL && i < sk_X509_REVOKED_num(rv); i++) {
		bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rv,
		    i)), NULL);
		hex = bn ? BN_bn2hex(bn) : NULL;
		BN_free(bn);
		if (hex == NULL) {
			log_sslerr("cannot read a revoked serial from the CRL");
			goto out;
		}
		st->revoked[st->nrevoked] = state_revoked_key(issuer, hex);
		OPENSSL_free(hex);
		if (st->revoked[st->nrevoked] == NULL) {
			log_err("malloc: %s", strerror(errno));
			goto out;
		}
		st->nrevoked++;
	}
	rc = 0;
out:
	free(issuer);
	return rc;
}

/* Fills st->revoked (sorted issuer+serial keys) and st->crl_next_update (the earliest
 * nextUpdate) from st->crls. */
static int
state_revoked_from_crls(struct gw_state *st)
{
	STACK_OF(X509_REVOKED) *rv;
	size_t n = 0;
	time_t t;
	int i;

	for (i = 0; i < sk_X509_CRL_num(st->crls); i++) {
		rv = X509_CRL_get_REVOKED(sk_X509_CRL_value(st->crls, i));
		n += rv ? (size_t)sk_X509_REVOKED_num(rv) : 0;
		t = state_asn1_time(X509_CRL_get0_nextUpdate(sk_X509_CRL_value(st->crls, i)));
		if (t != 0 && (st->crl_next_update == 0 || t < st->crl_next_update))
			st->crl_next_update = t;
	}
	if (n == 0)
		return 0;
	if ((st->revoked = calloc(n, sizeof(char *))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < sk_X509_CRL_num(st->crls); i++)
		if (state_revoked_add(st, sk_X509_CRL_value(st->crls, i)) == -1)
			return -1;
	qsort(st->revoked, st->nrevoked, sizeof(char *), state_key_qcmp);
	return 0;
}

/* certgate's own CA (identity.h, issuer binding): certgate's CAs in ca.cert (several
 * during a rollover; not the corporate chain behind an intermediate, cabundle.h). Without that file (a gateway that is not next to its
 * CA) every CA of tls.ca counts as certgate's, as before issuers could be bound. */
static int
state_own_ca(struct gw_state *st)
{
	STACK_OF(X509_OBJECT) *objs;
	const char *path = state_cfg->ca.cert;
	struct cabundle cb;
	char why[256];
	unsigned long e;
	X509 *x;
	BIO *b;
	int i;

	if ((st->own_ca = sk_X509_new_null()) == NULL)
		return -1;
	if (path == NULL || (b = BIO_new_file(path, "r")) == NULL) {
		ERR_clear_error();
		log_warn("certgate's CA certificate %s (ca.cert) is missing: agents without "
		    "\"issuer\" match certificates of every CA in tls.ca %s",
		    path ? path : "(unset)", state_cfg->tls.ca);
		objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(st->ssl_ctx));
		for (i = 0; i < sk_X509_OBJECT_num(objs); i++)
			if ((x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i))) != NULL &&
			    X509_up_ref(x) == 1 && sk_X509_push(st->own_ca, x) == 0) {
				X509_free(x);
				return -1;
			}
		return 0;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(st->own_ca, x) == 0) {
			X509_free(x);
			BIO_free(b);
			return -1;
		}
	BIO_free(b);
	e = ERR_peek_last_error();
	ERR_clear_error();
	if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE ||
	    sk_X509_num(st->own_ca) == 0) {
		log_err("cannot read certgate's CA certificate %s (ca.cert)", path);
		return -1;
	}
	/* Only certgate's CAs, not a corporate chain that follows them (cabundle.h). */
	if (cabundle_from(st->own_ca, &cb, why, sizeof(why)) == -1) {
		log_err("certgate's CA certificate %s (ca.cert): %s", path, why);
		return -1;
	}
	sk_X509_pop_free(st->own_ca, X509_free);
	st->own_ca = cb.ours;
	cb.ours = NULL;
	cabundle_free(&cb);
	return 0;
}

/* The server certificate's and the trusted CAs' notAfter, for /metrics and the
 * status page: read from the SSL_CTX just built, so they describe what is in force. */
static void
state_expiry_from_ctx(struct gw_state *st)
{
	STACK_OF(X509_OBJECT) *objs;
	X509 *x;
	time_t t;
	int i;

	if ((x = SSL_CTX_get0_certificate(st->ssl_ctx)) != NULL)
		st->server_not_after = state_asn1_time(X509_get0_notAfter(x));
	objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(st->ssl_ctx));
	for (i = 0; objs != NULL && i < sk_X509_OBJECT_num(objs); i++) {
		if ((x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i))) == NULL)
			continue;
		t = state_asn1_time(X509_get0_notAfter(x));
		if (t != 0 && (st->ca_not_after == 0 || t < st->ca_not_after))
			st->ca_not_after = t;
		st->nca++;
	}
}

/* Builds a complete state from the files; NULL on any failure (logged). */
static struct gw_state *
state_build(void)
{
	struct gw_state *st, *cur;
	char err[512];
	int rc = 0;

	if ((st = calloc(1, sizeof(*st))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		return NULL;
	}
	st->refs = 1;
	if (state_cfg->tls.crl_check) {
		/* the CRLs in force: a reload never takes an older one */
		cur = state_get();
		rc = tlscrl_load(state_cfg, cur ? cur->crls : NULL, &st->crls);
		state_put(cur);
		if (rc == -1)
			goto fail;
	}
	if ((st->ssl_ctx = tls_ctx_new(state_cfg, state_key, 0, st->crls)) == NULL)
		goto fail;
	if (state_cfg->enroll.listen_host != NULL && (st->enroll_ctx = tls_ctx_new(state_cfg,
	    state_key, TLS_CTX_OPTIONAL_CERT, st->crls)) == NULL)
		goto fail;
	if (state_own_ca(st) == -1)
		goto fail;
	err[0] = '\0';
	if (identity_map_load(state_cfg->identity_map, &st->map, err, sizeof(err)) == -1) {
		log_err("identity map %s rejected: %s", state_cfg->identity_map,
		    err[0] ? err : "cannot load");
		st->map = NULL;
		goto fail;
	}
	if (state_revoked_from_crls(st) == -1)
		goto fail;
	state_expiry_from_ctx(st);
	return st;
fail:
	state_free(st);
	return NULL;
}

static void
state_snapshot_files(void)
{
	int i;

	for (i = 0; i < SF_COUNT; i++)
		state_fsig_read(state_file(i), &state_sig[i]);
}

/* Installs st as current; the previous state lives until its last reader is done. */
static void
state_swap(struct gw_state *st)
{
	struct gw_state *old;

	pthread_mutex_lock(&state_lock);
	old = state_cur;
	st->generation = __atomic_load_n(&state_gen, __ATOMIC_RELAXED) + 1;
	state_cur = st;
	__atomic_store_n(&state_gen, st->generation, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&state_lock);
	if (old != NULL)
		state_put(old);
}

/* For the TLS session cache (tls.h): revoked in the state in force now? */
static int
state_cert_revoked_now(X509 *cert)
{
	struct gw_state *st;
	char serial[80], *issuer;
	int revoked = 0;

	if (tls_serial_hex(cert, serial, sizeof(serial)) == -1 ||
	    (issuer = dn_format(X509_get_issuer_name(cert))) == NULL)
		return 1;       /* unreadable: a full handshake decides */
	if ((st = state_get()) != NULL) {
		revoked = state_is_revoked(st, issuer, serial);
		state_put(st);
	}
	free(issuer);
	return revoked;
}

void
state_history_note(int ok, const char *what)
{
	struct state_reload_ev *e;

	pthread_mutex_lock(&state_hist_lock);
	e = &state_hist[state_hist_next];
	e->when = time(NULL);
	e->ok = ok;
	e->generation = state_generation();
	snprintf(e->what, sizeof(e->what), "%s", what ? what : "-");
	state_hist_next = (state_hist_next + 1) % STATE_HISTORY_MAX;
	if (state_hist_n < STATE_HISTORY_MAX)
		state_hist_n++;
	pthread_mutex_unlock(&state_hist_lock);
}

size_t
state_history(struct state_reload_ev *out, size_t max)
{
	size_t i, n;

	pthread_mutex_lock(&state_hist_lock);
	n = state_hist_n < max ? state_hist_n : max;
	for (i = 0; i < n; i++)
		out[i] = state_hist[(state_hist_next + STATE_HISTORY_MAX - 1 - i) %
		    STATE_HISTORY_MAX];
	pthread_mutex_unlock(&state_hist_lock);
	return n;
}

/* Records a reload attempt of the files (state_reload) for the history and gauges. */
static void
state_reloaded(int ok, const char *why)
{
	char what[192];

	pthread_mutex_lock(&state_hist_lock);
	state_last_reload = time(NULL);
	state_last_ok = ok;
	if (ok)
		state_last_ok_reload = state_last_reload;
	pthread_mutex_unlock(&state_hist_lock);
	snprintf(what, sizeof(what), "%s: %s", why ? why : "reload",
	    ok ? "reloaded" : "rejected, previous state kept");
	state_history_note(ok, what);
}

static void
state_put_gauge(FILE *f, const char *name, const char *help, long long v)
{
	metrics_put_head(f, name, "gauge", help);
	fprintf(f, "certgate_%s %lld\n", name, v);
}

/* /metrics: expiry times of what is in force and the last reload's outcome. */
static void
state_metrics(FILE *f)
{
	struct gw_state *st;
	time_t last, last_ok;
	int ok;

	if ((st = state_get()) != NULL) {
		if (st->crl_next_update != 0)
			state_put_gauge(f, "crl_next_update_timestamp_seconds",
			    "nextUpdate of the CRL in force (every client is refused after it).",
			    (long long)st->crl_next_update);
		if (st->server_not_after != 0)
			state_put_gauge(f, "server_certificate_expiry_timestamp_seconds",
			    "notAfter of the server certificate in force.",
			    (long long)st->server_not_after);
		if (st->ca_not_after != 0)
			state_put_gauge(f, "ca_certificate_expiry_timestamp_seconds",
			    "Earliest notAfter of the trusted CA certificates (tls.ca).",
			    (long long)st->ca_not_after);
		state_put_gauge(f, "identity_map_agents", "Agents in the identity map in force.",
		    st->map ? (long long)st->map->nagents : 0);
		state_put_gauge(f, "crl_revoked_serials", "Serials revoked by the CRLs in force.",
		    (long long)st->nrevoked);
		state_put_gauge(f, "crls", "CRLs in force (one per CA of tls.ca).",
		    (long long)sk_X509_CRL_num(st->crls));
		state_put(st);
	}
	pthread_mutex_lock(&state_hist_lock);
	last = state_last_reload;
	last_ok = state_last_ok_reload;
	ok = state_last_ok;
	pthread_mutex_unlock(&state_hist_lock);
	metrics_put_head(f, "crl_older_refused_total", "counter",
	    "CRLs not taken on a reload because they were older than the one in force.");
	fprintf(f, "certgate_crl_older_refused_total %ld\n", tlscrl_older_refused());
	state_put_gauge(f, "last_reload_successful",
	    "1 when the last reload of the identity map, CRL and certificates succeeded.", ok);
	state_put_gauge(f, "last_reload_timestamp_seconds",
	    "Time of the last reload attempt (start-up counts as one).", (long long)last);
	state_put_gauge(f, "last_reload_success_timestamp_seconds",
	    "Time of the last successful reload (or start-up).", (long long)last_ok);
}

static void
state_metrics_init(void)
{
	(void)metrics_add_renderer(state_metrics);
}

int
state_init(const struct config *cfg, EVP_PKEY *server_key)
{
	struct gw_state *st;

	state_cfg = cfg;
	state_key = server_key;
	/* Snapshot before reading: a change during the load triggers another one. */
	state_snapshot_files();
	if ((st = state_build()) == NULL)
		return -1;
	state_swap(st);
	tls_set_revoked_check(state_cert_revoked_now);
	pthread_once(&state_metrics_once, state_metrics_init);
	state_reloaded(1, "start-up");
	log_info("state loaded: %zu agents, %zu revoked serials",
	    st->map ? st->map->nagents : 0, st->nrevoked);
	return 0;
}

int
state_reload(const char *why)
{
	struct gw_state *st;

	if (state_cfg == NULL)
		return -1;
	state_snapshot_files();
	if ((st = state_build()) == NULL) {
		metrics_inc(M_RELOAD_FAIL);
		log_err("reload (%s) failed; the previous configuration stays in force",
		    why ? why : "-");
		state_reloaded(0, why);
		return -1;
	}
	state_swap(st);
	metrics_inc(M_RELOAD_OK);
	state_reloaded(1, why);
	log_info("reloaded (%s): generation %llu, %zu agents, %zu revoked serials",
	    why ? why : "-", (unsigned long long)st->generation,
	    st->map ? st->map->nagents : 0, st->nrevoked);
	return 0;
}

void
state_check_files(void)
{
	struct state_fsig now;
	const char *changed = NULL;
	char why[512];
	int i;

	if (state_cfg == NULL)
		return;
	for (i = 0; i < SF_COUNT; i++) {
		state_fsig_read(state_file(i), &now);
		if (!state_fsig_eq(&now, &state_sig[i])) {
			changed = state_file(i);
			break;
		}
	}
	if (changed == NULL)
		return;
	snprintf(why, sizeof(why), "%s changed", changed);
	state_reload(why);
}

uint64_t
state_generation(void)
{
	return __atomic_load_n(&state_gen, __ATOMIC_ACQUIRE);
}

struct gw_state *
state_get(void)
{
	struct gw_state *st;

	pthread_mutex_lock(&state_lock);
	st = state_cur;
	if (st != NULL)
		__atomic_add_fetch(&st->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&state_lock);
	return st;
}

void
state_put(struct gw_state *st)
{
	if (st == NULL)
		return;
	if (__atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) == 0)
		state_free(st);
}

/* The serial revoked by any of the CRLs (linear; only for a peer without issuer). */
static int
state_is_revoked_any(const struct gw_state *st, const char *serial)
{
	char *k, *tail;
	size_t i;
	int r = 0;

	if ((k = state_revoked_key("", serial)) == NULL)
		return 1;
	for (i = 0; i < st->nrevoked && !r; i++)
		r = (tail = strchr(st->revoked[i], '\n')) != NULL && strcmp(tail, k) == 0;
	free(k);
	return r;
}

int
state_is_revoked(const struct gw_state *st, const char *issuer, const char *serial)
{
	char *k;
	int r;

	if (st == NULL || serial == NULL || serial[0] == '\0' || st->nrevoked == 0)
		return 0;
	/* no issuer (cannot happen for a verified certificate): revoked by any CA */
	if (issuer == NULL)
		return state_is_revoked_any(st, serial);
	if ((k = state_revoked_key(issuer, serial)) == NULL)
		return 1;       /* out of memory: refuse rather than let it through */
	r = bsearch(k, st->revoked, st->nrevoked, sizeof(char *), state_key_bcmp) != NULL;
	free(k);
	return r;
}

int
state_crl_expired(void)
{
	struct gw_state *st;
	int expired = 0;

	if ((st = state_get()) == NULL)
		return 0;
	if (st->crl_next_update != 0 && st->crl_next_update <= time(NULL))
		expired = 1;
	state_put(st);
	return expired;
}

void
state_check_crl_expiry(void)
{
	struct gw_state *st;
	time_t now = time(NULL), next;
	char buf[64];
	struct tm tm;

	if ((st = state_get()) == NULL)
		return;
	next = st->crl_next_update;
	state_put(st);
	if (next == 0 || next - now > 86400)
		return;
	/* Once per 10 minutes: loud enough to be seen, not a flood. */
	if (state_crl_warned != 0 && now - state_crl_warned < 600)
		return;
	state_crl_warned = now;
	gmtime_r(&next, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (next <= now)
		log_err("CRL %s expired at %s; every client will be refused; run "
		    "scripts/agent-list or certgate ca crl to re-sign", state_cfg->tls.crl, buf);
	else
		log_warn("CRL %s expires at %s (within 24 h); run certgate ca crl to re-sign",
		    state_cfg->tls.crl, buf);
}

void
state_shutdown(void)
{
	struct gw_state *old;

	pthread_mutex_lock(&state_lock);
	old = state_cur;
	state_cur = NULL;
	pthread_mutex_unlock(&state_lock);
	state_put(old);
	tls_set_revoked_check(NULL);
	state_cfg = NULL;
	state_key = NULL;
}
