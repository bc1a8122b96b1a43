/* Session-ticket keys shared through Redis (ticketkeys.h). */
#include "ticketkeys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "metrics.h"
#include "rconn.h"

#define TK_NAME_LEN   16
#define TK_AES_LEN    32
#define TK_HMAC_LEN   32
#define TK_BLOB_LEN   (TK_NAME_LEN + TK_AES_LEN + TK_HMAC_LEN)
#define TK_PREFIX     "certgate:tk:"
#define TK_RETRY_MS   1000      /* after a failed fetch */
#define TK_POLL_MAX_MS 30000
#define TK_POLL_MIN_MS 250
#define TK_BOUNDARY_MS 20       /* after an epoch starts, so Redis's clock passed it */

struct ticketkeys_key {
	long long epoch;
	unsigned char name[TK_NAME_LEN];
	unsigned char aes[TK_AES_LEN];
	unsigned char hmac[TK_HMAC_LEN];
};

/* Immutable once published; replaced whole (build, swap under ticketkeys_mtx, wipe
 * the old). */
struct ticketkeys_set {
	int n;                          /* 0..2, k[0] the newest */
	struct ticketkeys_key k[2];
	double redis_now;               /* Redis's TIME when fetched ... */
	double mono;                    /* ... and our monotonic clock then */
};

/* Fetch the key of the current epoch, creating it when there is none (NX), after
 * offering the keys this instance holds (so a restarted, empty Redis gets the keys
 * in use back instead of new ones). KEYS[1] the prefix; ARGV: rotation, a fresh
 * random key, then EPOCH, KEY pairs held. Returns {epoch, seconds, microseconds,
 * current key, previous key or false}. */
static const char ticketkeys_lua[] =
	"local r=tonumber(ARGV[1]) local t=redis.call('TIME') local now=tonumber(t[1]) "
	"local e=math.floor(now/r) "
	"for i=3,#ARGV,2 do local k=tonumber(ARGV[i]) "
	"if k==e or k==e-1 then redis.call('SET',KEYS[1]..string.format('%d',k),ARGV[i+1],"
	"'NX','EXAT',(k+2)*r) end end "
	"redis.call('SET',KEYS[1]..string.format('%d',e),ARGV[2],'NX','EXAT',(e+2)*r) "
	"return {e,now,tonumber(t[2]),redis.call('GET',KEYS[1]..string.format('%d',e)),"
	"redis.call('GET',KEYS[1]..string.format('%d',e-1))}";

static pthread_mutex_t ticketkeys_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct ticketkeys_set *ticketkeys_cur;  /* under ticketkeys_mtx; NULL: no keys */
static int ticketkeys_rotate_s = 3600;          /* written before the workers start */
static ticketkeys_usable_fn ticketkeys_usable;  /* atomic */
static atomic_long ticketkeys_n_fetch_fail, ticketkeys_n_rotations, ticketkeys_n_dec[4],
    ticketkeys_n_unusable, ticketkeys_n_none;
static pthread_once_t ticketkeys_once = PTHREAD_ONCE_INIT;

static struct {
	const struct config *cfg;
	struct rconn *rc;
	struct event *timer;
	struct rconn_op *op;
	long long last_epoch;           /* newest epoch adopted (log once per rotation) */
	int logged_fail;
} ticketkeys_st;

long long
ticketkeys_epoch(double t, int r)
{
	return (long long)(t / r);
}

int
ticketkeys_alive(long long k, double t, int r)
{
	return t < (double)(k + 2) * r;
}

static double
ticketkeys_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
ticketkeys_set_free(struct ticketkeys_set *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

/* Redis's time now, as this instance estimates it from the last fetch. */
static double
ticketkeys_redis_now(const struct ticketkeys_set *s)
{
	return s->redis_now + (ticketkeys_mono() - s->mono);
}

/* Publishes s (may be NULL: no keys) and wipes the set it replaces. Main thread. */
static void
ticketkeys_publish(struct ticketkeys_set *s)
{
	struct ticketkeys_set *old;

	pthread_mutex_lock(&ticketkeys_mtx);
	old = ticketkeys_cur;
	ticketkeys_cur = s;
	pthread_mutex_unlock(&ticketkeys_mtx);
	ticketkeys_set_free(old);
}

/* Copies the key to encrypt under (enc) or the key named name (decrypt) into *out.
 * Returns -1 (none), or for a decrypt 1 (current epoch) / 2 (an older one: renew). */
static int
ticketkeys_pick(const unsigned char *name, struct ticketkeys_key *out, double *now_out)
{
	const struct ticketkeys_set *s;
	double now = 0;
	int i, rv = -1;

	pthread_mutex_lock(&ticketkeys_mtx);
	if ((s = ticketkeys_cur) == NULL)
		goto out;
	now = ticketkeys_redis_now(s);
	for (i = 0; i < s->n; i++) {
		if (!ticketkeys_alive(s->k[i].epoch, now, ticketkeys_rotate_s))
			continue;
		if (name == NULL || memcmp(name, s->k[i].name, TK_NAME_LEN) == 0) {
			*out = s->k[i];
			rv = s->k[i].epoch == ticketkeys_epoch(now, ticketkeys_rotate_s) ? 1 : 2;
			break;
		}
	}
out:
	pthread_mutex_unlock(&ticketkeys_mtx);
	if (now_out != NULL)
		*now_out = now;
	return rv;
}

static int
ticketkeys_hmac_init(EVP_MAC_CTX *hctx, const unsigned char *key)
{
	OSSL_PARAM p[2];

	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	p[1] = OSSL_PARAM_construct_end();
	return EVP_MAC_init(hctx, key, TK_HMAC_LEN, p) == 1 ? 0 : -1;
}

/* OpenSSL's ticket key callback: 1 ok (decrypt: current key), 2 decrypted under the
 * previous key (renew), 0 no key (decrypt: full handshake), -1 error. */
static int
ticketkeys_key_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct ticketkeys_key k;
	int rv = 0, which;

	if (enc) {
		if ((which = ticketkeys_pick(NULL, &k, NULL)) < 0) {
			/* The key aged out between the ClientHello (ticketkeys_hello_cb) and now:
			 * a throwaway key, so the ticket simply never decrypts (TLS 1.3 in
			 * OpenSSL 3.0 cannot skip a ticket from here). */
			if (RAND_bytes(k.name, TK_NAME_LEN) != 1 ||
			    RAND_bytes(k.aes, TK_AES_LEN) != 1 ||
			    RAND_bytes(k.hmac, TK_HMAC_LEN) != 1) {
				rv = -1;
				goto out;
			}
		}
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1 ||
		    EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
		    ticketkeys_hmac_init(hctx, k.hmac) == -1) {
			rv = -1;
			goto out;
		}
		memcpy(key_name, k.name, TK_NAME_LEN);
		rv = 1;
		goto out;
	}
	if ((which = ticketkeys_pick(key_name, &k, NULL)) < 0) {
		atomic_fetch_add(&ticketkeys_n_dec[0], 1);
		goto out;       /* unknown or aged out: full handshake */
	}
	if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
	    ticketkeys_hmac_init(hctx, k.hmac) == -1) {
		rv = -1;
		goto out;
	}
	atomic_fetch_add(&ticketkeys_n_dec[which], 1);
	rv = which;
out:
	OPENSSL_cleanse(&k, sizeof(k));
	return rv;
}

/* A decrypted ticket's session: resumes only when the caller's check (revocation,
 * expiry, session id context) says so; otherwise a full handshake, where the CRL
 * check refuses a revoked certificate with a proper alert. */
static SSL_TICKET_RETURN
ticketkeys_dec_cb(SSL *s, SSL_SESSION *ss, const unsigned char *keyname, size_t keyname_len,
    SSL_TICKET_STATUS status, void *arg)
{
	ticketkeys_usable_fn usable = __atomic_load_n(&ticketkeys_usable, __ATOMIC_ACQUIRE);

	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		if (usable == NULL || !usable(s, ss)) {
			atomic_fetch_add(&ticketkeys_n_unusable, 1);
			return SSL_TICKET_RETURN_IGNORE_RENEW;
		}
		/* Renewed even under the current key: TLS 1.3 sends no new ticket after
		 * a resumption otherwise, and a client that uses each ticket once (as
		 * RFC 8446 advises, and as our single-instance cache works) could not
		 * resume again. */
		return SSL_TICKET_RETURN_USE_RENEW;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_IGNORE;
	}
}

/* No key to encrypt under (Redis unreachable for longer than the keys live, or not
 * reached yet): this handshake gets no ticket at all. */
static int
ticketkeys_hello_cb(SSL *s, int *al, void *arg)
{
	struct ticketkeys_key k;

	if (ticketkeys_pick(NULL, &k, NULL) < 0) {
		atomic_fetch_add(&ticketkeys_n_none, 1);
		SSL_set_num_tickets(s, 0);
		SSL_set_options(s, SSL_OP_NO_TICKET);
	}
	OPENSSL_cleanse(&k, sizeof(k));
	return SSL_CLIENT_HELLO_SUCCESS;
}

int
ticketkeys_ctx_setup(SSL_CTX *ctx, ticketkeys_usable_fn usable)
{
	__atomic_store_n(&ticketkeys_usable, usable, __ATOMIC_RELEASE);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	/* Tickets carry the session: no server-side cache to fill or look up. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_client_hello_cb(ctx, ticketkeys_hello_cb, NULL);
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticketkeys_key_cb) != 1 ||
	    SSL_CTX_set_session_ticket_cb(ctx, NULL, ticketkeys_dec_cb, NULL) != 1) {
		log_sslerr("cannot set the session ticket callbacks");
		return -1;
	}
	return 0;
}

/* ---- fetching, on the main loop ---- */

static void
ticketkeys_metrics(FILE *f)
{
	static const char *names[3] = { "unknown_key", "current_key", "previous_key" };
	double now;
	int i, n = 0;

	pthread_mutex_lock(&ticketkeys_mtx);
	if (ticketkeys_cur != NULL) {
		now = ticketkeys_redis_now(ticketkeys_cur);
		for (i = 0; i < ticketkeys_cur->n; i++)
			n += ticketkeys_alive(ticketkeys_cur->k[i].epoch, now, ticketkeys_rotate_s);
	}
	pthread_mutex_unlock(&ticketkeys_mtx);
	metrics_put_head(f, "cluster_ticket_keys", "gauge",
	    "Shared TLS ticket keys held and still usable (2 normally, 0: no tickets).");
	fprintf(f, "certgate_cluster_ticket_keys %d\n", n);
	metrics_put_head(f, "cluster_ticket_key_fetch_failures_total", "counter",
	    "Fetches of the shared ticket keys Redis did not answer.");
	fprintf(f, "certgate_cluster_ticket_key_fetch_failures_total %ld\n",
	    atomic_load(&ticketkeys_n_fetch_fail));
	metrics_put_head(f, "cluster_ticket_key_rotations_total", "counter",
	    "New current ticket keys adopted.");
	fprintf(f, "certgate_cluster_ticket_key_rotations_total %ld\n",
	    atomic_load(&ticketkeys_n_rotations));
	metrics_put_head(f, "cluster_tickets_decrypted_total", "counter",
	    "Session tickets presented, by the key they were under.");
	for (i = 0; i < 3; i++)
		fprintf(f, "certgate_cluster_tickets_decrypted_total{key=\"%s\"} %ld\n",
		    names[i], atomic_load(&ticketkeys_n_dec[i]));
	metrics_put_head(f, "cluster_tickets_refused_total", "counter",
	    "Decrypted tickets not resumed: certificate revoked or expired, or another "
	    "listener's session.");
	fprintf(f, "certgate_cluster_tickets_refused_total %ld\n",
	    atomic_load(&ticketkeys_n_unusable));
	metrics_put_head(f, "cluster_tickets_not_issued_total", "counter",
	    "Handshakes that got no ticket because no shared key was usable.");
	fprintf(f, "certgate_cluster_tickets_not_issued_total %ld\n",
	    atomic_load(&ticketkeys_n_none));
}

static void
ticketkeys_metrics_init(void)
{
	(void)metrics_add_renderer(ticketkeys_metrics);
}

static void
ticketkeys_arm(long ms)
{
	struct timeval tv;

	if (ms < 1)
		ms = 1;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ticketkeys_st.timer, &tv);
}

/* The next fetch: at the start of the next epoch, or sooner (a periodic check). */
static long
ticketkeys_next_ms(double redis_now)
{
	long poll = (long)ticketkeys_rotate_s * 1000 / 4, until;
	double next;

	if (poll > TK_POLL_MAX_MS)
		poll = TK_POLL_MAX_MS;
	if (poll < TK_POLL_MIN_MS)
		poll = TK_POLL_MIN_MS;
	next = (double)(ticketkeys_epoch(redis_now, ticketkeys_rotate_s) + 1) *
	    ticketkeys_rotate_s;
	until = (long)((next - redis_now) * 1000) + TK_BOUNDARY_MS;
	return until < poll ? until : poll;
}

/* Drops the keys held once none is alive any more (Redis unreachable too long). */
static void
ticketkeys_expire_held(void)
{
	struct ticketkeys_key k;
	int any;

	any = ticketkeys_pick(NULL, &k, NULL) >= 0;
	OPENSSL_cleanse(&k, sizeof(k));
	pthread_mutex_lock(&ticketkeys_mtx);
	any = any || ticketkeys_cur == NULL;
	pthread_mutex_unlock(&ticketkeys_mtx);
	if (!any) {
		log_warn("cluster: the shared TLS ticket keys held aged out and Redis could not "
		    "give new ones: no session tickets until it does (full handshakes)");
		ticketkeys_publish(NULL);
	}
}

static void
ticketkeys_fetch_failed(const char *why)
{
	atomic_fetch_add(&ticketkeys_n_fetch_fail, 1);
	if (!ticketkeys_st.logged_fail) {
		log_warn("cluster: cannot fetch the shared TLS ticket keys: %s (keeping the keys "
		    "held while they are valid)", why);
		ticketkeys_st.logged_fail = 1;
	}
	ticketkeys_expire_held();
	ticketkeys_arm(TK_RETRY_MS);
}

static int
ticketkeys_parse_key(const redisReply *r, long long epoch, struct ticketkeys_key *k)
{
	if (r->type != REDIS_REPLY_STRING || r->len != TK_BLOB_LEN)
		return -1;
	k->epoch = epoch;
	memcpy(k->name, r->str, TK_NAME_LEN);
	memcpy(k->aes, r->str + TK_NAME_LEN, TK_AES_LEN);
	memcpy(k->hmac, r->str + TK_NAME_LEN + TK_AES_LEN, TK_HMAC_LEN);
	return 0;
}

static void
ticketkeys_reply(void *arg, redisReply *r)
{
	struct ticketkeys_set *s = NULL;
	long long e;

	ticketkeys_st.op = NULL;
	if (r == NULL) {
		ticketkeys_fetch_failed("no answer");
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[2]->type != REDIS_REPLY_INTEGER) {
		ticketkeys_fetch_failed(r->type == REDIS_REPLY_ERROR ? r->str : "unexpected answer");
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		ticketkeys_fetch_failed("out of memory");
		return;
	}
	e = r->element[0]->integer;
	s->redis_now = (double)r->element[1]->integer + r->element[2]->integer / 1e6;
	s->mono = ticketkeys_mono();
	if (ticketkeys_parse_key(r->element[3], e, &s->k[0]) == -1) {
		ticketkeys_set_free(s);
		ticketkeys_fetch_failed("the current key is malformed");
		return;
	}
	s->n = 1;
	if (ticketkeys_parse_key(r->element[4], e - 1, &s->k[1]) == 0)
		s->n = 2;
	if (ticketkeys_st.logged_fail)
		log_info("cluster: shared TLS ticket keys fetched again");
	ticketkeys_st.logged_fail = 0;
	if (e != ticketkeys_st.last_epoch) {
		atomic_fetch_add(&ticketkeys_n_rotations, 1);
		log_info("cluster: TLS ticket key of epoch %lld in use (rotation every %d s)", e,
		    ticketkeys_rotate_s);
		ticketkeys_st.last_epoch = e;
	}
	ticketkeys_arm(ticketkeys_next_ms(s->redis_now));
	ticketkeys_publish(s);
}

static void
ticketkeys_fetch(void)
{
	const char *argv[6 + 2 * 2];    /* EVAL, script, 1, prefix, rotation, fresh, 2 held */
	size_t lens[6 + 2 * 2];
	char rot[16], ep[2][24];
	unsigned char fresh[TK_BLOB_LEN], held[2][TK_BLOB_LEN];
	int argc = 0, i, n = 0;

	snprintf(rot, sizeof(rot), "%d", ticketkeys_rotate_s);
	if (RAND_bytes(fresh, sizeof(fresh)) != 1) {
		ticketkeys_fetch_failed("no random bytes");
		return;
	}
	pthread_mutex_lock(&ticketkeys_mtx);
	if (ticketkeys_cur != NULL) {
		n = ticketkeys_cur->n;
		for (i = 0; i < n; i++) {
			snprintf(ep[i], sizeof(ep[i]), "%lld", ticketkeys_cur->k[i].epoch);
			memcpy(held[i], ticketkeys_cur->k[i].name, TK_NAME_LEN);
			memcpy(held[i] + TK_NAME_LEN, ticketkeys_cur->k[i].aes, TK_AES_LEN);
			memcpy(held[i] + TK_NAME_LEN + TK_AES_LEN, ticketkeys_cur->k[i].hmac, TK_HMAC_LEN);
		}
	}
	pthread_mutex_unlock(&ticketkeys_mtx);
	argv[argc] = "EVAL", lens[argc++] = 4;
	argv[argc] = ticketkeys_lua, lens[argc++] = sizeof(ticketkeys_lua) - 1;
	argv[argc] = "1", lens[argc++] = 1;
	argv[argc] = TK_PREFIX, lens[argc++] = sizeof(TK_PREFIX) - 1;
	argv[argc] = rot, lens[argc++] = strlen(rot);
	argv[argc] = (const char *)fresh, lens[argc++] = sizeof(fresh);
	for (i = 0; i < n; i++) {
		argv[argc] = ep[i], lens[argc++] = strlen(ep[i]);
		argv[argc] = (const char *)held[i], lens[argc++] = TK_BLOB_LEN;
	}
	/* hiredis copies the command into its output buffer. */
	if (rconn_command_argv(ticketkeys_st.rc, ticketkeys_reply, NULL, &ticketkeys_st.op, argc,
	    argv, lens) == -1)
		ticketkeys_fetch_failed("Redis unreachable");
	OPENSSL_cleanse(fresh, sizeof(fresh));
	OPENSSL_cleanse(held, sizeof(held));
}

static void
ticketkeys_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	if (ticketkeys_st.op == NULL)
		ticketkeys_fetch();
}

static void
ticketkeys_up(struct rconn *rc, void *arg)
{
	if (ticketkeys_st.op == NULL) {
		evtimer_del(ticketkeys_st.timer);
		ticketkeys_fetch();
	}
}

int
ticketkeys_start(struct event_base *base, const struct config *cfg)
{
	if (cfg->cluster.redis == NULL || !cfg->tls.session_tickets)
		return 0;
	pthread_once(&ticketkeys_once, ticketkeys_metrics_init);
	memset(&ticketkeys_st, 0, sizeof(ticketkeys_st));
	ticketkeys_st.cfg = cfg;
	ticketkeys_st.last_epoch = -1;
	ticketkeys_rotate_s = cfg->cluster.ticket_rotate_s;
	if ((ticketkeys_st.timer = evtimer_new(base, ticketkeys_timer_cb, NULL)) == NULL ||
	    (ticketkeys_st.rc = rconn_new(base, &cfg->cluster, "the ticket keys", ticketkeys_up,
	    NULL)) == NULL) {
		log_err("cluster: out of memory");
		ticketkeys_stop();
		return -1;
	}
	/* Until Redis answers, a connection that fails still retries through the timer. */
	ticketkeys_arm(TK_RETRY_MS);
	return 0;
}

void
ticketkeys_stop(void)
{
	rconn_cancel(ticketkeys_st.op);
	rconn_free(ticketkeys_st.rc);
	if (ticketkeys_st.timer != NULL)
		event_free(ticketkeys_st.timer);
	memset(&ticketkeys_st, 0, sizeof(ticketkeys_st));
	ticketkeys_publish(NULL);
}
