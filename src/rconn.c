/* An asynchronous Redis connection with reconnect and command deadlines (rconn.h). */
#include "rconn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "file.h"
#include "log.h"
#include "metrics.h"

#define RCONN_BACKOFF_MIN_MS 100
#define RCONN_BACKOFF_MAX_MS 5000

/* RC_AUTH: connected, AUTH sent, not usable until Redis accepted it. */
enum rconn_state { RC_DOWN, RC_CONNECTING, RC_AUTH, RC_UP };

/* The Redis password (cluster.password_file / password_env), read once at start by
 * the main thread before any rconn exists, then only read; wiped at exit. */
#define RCONN_SECRET_MAX 512
static char rconn_secret[RCONN_SECRET_MAX];
static size_t rconn_secret_len;

struct rconn {
	struct event_base *base;
	const struct config_cluster *cc;
	char what[48];
	rconn_up_fn on_up;
	void *arg;
	redisAsyncContext *ac;          /* NULL while down */
	enum rconn_state state;
	int backoff_ms;
	int was_up;                     /* for logging transitions once */
	int logged_down;
	struct event *retry;            /* reconnect timer */
	struct event *deadline;         /* connect deadline */
};

struct rconn_op {
	struct rconn *rc;
	rconn_reply_fn fn;
	void *arg;
	struct event *timer;
	int answered;
	int cancelled;
};

static atomic_long rconn_n_up, rconn_n_lost, rconn_n_timeouts;

static void rconn_connect(struct rconn *rc);

static void
rconn_schedule(struct rconn *rc)
{
	struct timeval tv;

	rc->state = RC_DOWN;
	tv.tv_sec = rc->backoff_ms / 1000;
	tv.tv_usec = (rc->backoff_ms % 1000) * 1000;
	evtimer_add(rc->retry, &tv);
	rc->backoff_ms *= 2;
	if (rc->backoff_ms > RCONN_BACKOFF_MAX_MS)
		rc->backoff_ms = RCONN_BACKOFF_MAX_MS;
}

static void
rconn_went_down(struct rconn *rc, const char *why)
{
	if (rc->state == RC_UP) {
		atomic_fetch_sub(&rconn_n_up, 1);
		atomic_fetch_add(&rconn_n_lost, 1);
	}
	if (!rc->logged_down) {
		log_warn("cluster: Redis at %s:%d unreachable from %s: %s (retrying)",
		    rc->cc->redis_host, rc->cc->redis_port, rc->what, why);
		rc->logged_down = 1;
	}
	rc->ac = NULL;
	evtimer_del(rc->deadline);
	rconn_schedule(rc);
}

/* Drops the context now (a command missed its deadline, the connect took too long):
 * every pending reply callback runs with NULL during redisAsyncFree. */
static void
rconn_drop(struct rconn *rc, const char *why)
{
	redisAsyncContext *ac = rc->ac;

	if (ac == NULL)
		return;
	ac->data = NULL;        /* our connect/disconnect callbacks ignore it now */
	rconn_went_down(rc, why);
	redisAsyncFree(ac);
}

/* Connected (and authenticated when a password is set): usable from now on. */
static void
rconn_up(struct rconn *rc)
{
	evtimer_del(rc->deadline);
	rc->state = RC_UP;
	rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
	atomic_fetch_add(&rconn_n_up, 1);
	if (rc->logged_down || !rc->was_up)
		log_info("cluster: %s connected to Redis at %s:%d", rc->what, rc->cc->redis_host,
		    rc->cc->redis_port);
	rc->logged_down = 0;
	rc->was_up = 1;
	if (rc->cc->redis_db != 0)
		(void)redisAsyncCommand(rc->ac, NULL, NULL, "SELECT %d", rc->cc->redis_db);
	if (rc->on_up != NULL)
		rc->on_up(rc, rc->arg);
}

static void
rconn_on_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn *rc = privdata;
	redisReply *r = reply;
	char why[256];

	/* NULL: the connection went away first (its own callbacks say so). */
	if (r == NULL || ac->data != rc || rc->state != RC_AUTH)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		/* A wrong password fails closed like an unreachable Redis: the connection
		 * is dropped and retried with back-off (the password is not re-read). */
		snprintf(why, sizeof(why), "AUTH refused: %.*s", (int)(r->len < 200 ? r->len : 200),
		    r->str);
		rconn_drop(rc, why);
		return;
	}
	rconn_up(rc);
}

static void
rconn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;
	int r;

	if (rc == NULL)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees ac after this callback */
		((redisAsyncContext *)ac)->data = NULL;
		rconn_went_down(rc, ac->errstr[0] ? ac->errstr : "connect failed");
		return;
	}
	if (rconn_secret_len == 0) {
		rconn_up(rc);
		return;
	}
	/* The connect deadline keeps running until Redis answered AUTH. */
	rc->state = RC_AUTH;
	if (rc->cc->user != NULL)
		r = redisAsyncCommand(rc->ac, rconn_on_auth, rc, "AUTH %s %b", rc->cc->user,
		    rconn_secret, rconn_secret_len);
	else
		r = redisAsyncCommand(rc->ac, rconn_on_auth, rc, "AUTH %b", rconn_secret,
		    rconn_secret_len);
	if (r != REDIS_OK)
		rconn_drop(rc, "cannot send AUTH");
}

int
rconn_secret_load(const struct config_cluster *cc, char *err, size_t errlen)
{
	const char *v = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	rconn_secret_wipe();
	if (cc->password_env != NULL) {
		if ((v = getenv(cc->password_env)) == NULL || *v == '\0') {
			snprintf(err, errlen, "environment variable %s (cluster.password_env) is "
			    "not set or empty", cc->password_env);
			return -1;
		}
		len = strlen(v);
	} else if (cc->password_file != NULL) {
		if (file_read(cc->password_file, RCONN_SECRET_MAX, &buf, &len) == -1) {
			snprintf(err, errlen, "cannot read cluster.password_file %s: %s",
			    cc->password_file, strerror(errno));
			return -1;
		}
		v = buf;
		while (len > 0 && (v[len - 1] == '\n' || v[len - 1] == '\r'))
			len--;
		if (len == 0) {
			snprintf(err, errlen, "cluster.password_file %s is empty", cc->password_file);
			goto out;
		}
	} else
		return 0;
	if (len >= RCONN_SECRET_MAX) {
		snprintf(err, errlen, "the Redis password is longer than %d bytes",
		    RCONN_SECRET_MAX - 1);
		goto out;
	}
	memcpy(rconn_secret, v, len);
	rconn_secret_len = len;
	rc = 0;
out:
	if (buf != NULL) {
		explicit_bzero(buf, len);
		free(buf);
	}
	return rc;
}

void
rconn_secret_wipe(void)
{
	explicit_bzero(rconn_secret, sizeof(rconn_secret));
	rconn_secret_len = 0;
}

static void
rconn_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;

	if (rc == NULL)
		return;
	rconn_went_down(rc, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void
rconn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *rc = arg;

	if (rc->state == RC_CONNECTING)
		rconn_drop(rc, "connect timed out");
	else if (rc->state == RC_AUTH)
		rconn_drop(rc, "no answer to AUTH in time");
}

static void
rconn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	rconn_connect(arg);
}

static void
rconn_connect(struct rconn *rc)
{
	redisAsyncContext *ac;
	struct timeval tv;
	int ms = rc->cc->timeout_ms * 5;

	if ((ac = redisAsyncConnect(rc->cc->redis_host, rc->cc->redis_port)) == NULL) {
		rconn_went_down(rc, "out of memory");
		return;
	}
	if (ac->err) {
		rconn_went_down(rc, ac->errstr);
		redisAsyncFree(ac);
		return;
	}
	ac->data = rc;
	if (redisLibeventAttach(ac, rc->base) != REDIS_OK) {
		redisAsyncFree(ac);
		rconn_went_down(rc, "cannot attach to the event loop");
		return;
	}
	(void)redisAsyncSetConnectCallback(ac, rconn_on_connect);
	(void)redisAsyncSetDisconnectCallback(ac, rconn_on_disconnect);
	rc->ac = ac;
	rc->state = RC_CONNECTING;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(rc->deadline, &tv);
}

struct rconn *
rconn_new(struct event_base *base, const struct config_cluster *cc, const char *what,
    rconn_up_fn on_up, void *arg)
{
	struct rconn *rc;

	if ((rc = calloc(1, sizeof(*rc))) == NULL)
		return NULL;
	rc->base = base;
	rc->cc = cc;
	snprintf(rc->what, sizeof(rc->what), "%s", what);
	rc->on_up = on_up;
	rc->arg = arg;
	rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
	if ((rc->retry = evtimer_new(base, rconn_retry_cb, rc)) == NULL ||
	    (rc->deadline = evtimer_new(base, rconn_deadline_cb, rc)) == NULL) {
		if (rc->retry)
			event_free(rc->retry);
		free(rc);
		return NULL;
	}
	rconn_connect(rc);
	return rc;
}

void
rconn_free(struct rconn *rc)
{
	redisAsyncContext *ac;

	if (rc == NULL)
		return;
	if ((ac = rc->ac) != NULL) {
		ac->data = NULL;
		if (rc->state == RC_UP)
			atomic_fetch_sub(&rconn_n_up, 1);
		rc->ac = NULL;
		redisAsyncFree(ac);
	}
	event_free(rc->retry);
	event_free(rc->deadline);
	free(rc);
}

int
rconn_is_up(const struct rconn *rc)
{
	return rc != NULL && rc->state == RC_UP && rc->ac != NULL;
}

struct redisAsyncContext *
rconn_context(struct rconn *rc)
{
	return rconn_is_up(rc) ? rc->ac : NULL;
}

/* ---- commands ---- */

static void
rconn_op_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn_op *op = privdata;

	if (!op->answered && !op->cancelled) {
		op->answered = 1;
		op->fn(op->arg, reply);
	}
	event_free(op->timer);
	free(op);
}

static void
rconn_op_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rconn_op *op = arg;
	struct rconn *rc = op->rc;

	atomic_fetch_add(&rconn_n_timeouts, 1);
	if (!op->answered && !op->cancelled) {
		op->answered = 1;
		op->fn(op->arg, NULL);
	}
	/* Redis did not answer in time: stop queueing behind it. The op is freed by
	 * its reply callback, which redisAsyncFree runs (with NULL). */
	rconn_drop(rc, "no answer within cluster.timeout_ms");
}

static struct rconn_op *
rconn_op_new(struct rconn *rc, rconn_reply_fn fn, void *arg)
{
	struct rconn_op *op;

	if ((op = calloc(1, sizeof(*op))) == NULL)
		return NULL;
	op->rc = rc;
	op->fn = fn;
	op->arg = arg;
	if ((op->timer = evtimer_new(rc->base, rconn_op_timeout, op)) == NULL) {
		free(op);
		return NULL;
	}
	return op;
}

static void
rconn_op_arm(struct rconn_op *op)
{
	struct timeval tv;
	int ms = op->rc->cc->timeout_ms;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(op->timer, &tv);
}

static void
rconn_op_discard(struct rconn_op *op)
{
	event_free(op->timer);
	free(op);
}

int
rconn_command(struct rconn *rc, rconn_reply_fn fn, void *arg, struct rconn_op **opp,
    const char *fmt, ...)
{
	struct rconn_op *op;
	va_list ap;
	int rv;

	if (opp != NULL)
		*opp = NULL;
	if (!rconn_is_up(rc) || (op = rconn_op_new(rc, fn, arg)) == NULL)
		return -1;
	va_start(ap, fmt);
	rv = redisvAsyncCommand(rc->ac, rconn_op_reply, op, fmt, ap);
	va_end(ap);
	if (rv != REDIS_OK) {
		rconn_op_discard(op);
		return -1;
	}
	rconn_op_arm(op);
	if (opp != NULL)
		*opp = op;
	return 0;
}

int
rconn_command_argv(struct rconn *rc, rconn_reply_fn fn, void *arg, struct rconn_op **opp,
    int argc, const char **argv, const size_t *argvlen)
{
	struct rconn_op *op;

	if (opp != NULL)
		*opp = NULL;
	if (!rconn_is_up(rc) || (op = rconn_op_new(rc, fn, arg)) == NULL)
		return -1;
	if (redisAsyncCommandArgv(rc->ac, rconn_op_reply, op, argc, argv, argvlen) != REDIS_OK) {
		rconn_op_discard(op);
		return -1;
	}
	rconn_op_arm(op);
	if (opp != NULL)
		*opp = op;
	return 0;
}

void
rconn_cancel(struct rconn_op *op)
{
	if (op != NULL)
		op->cancelled = 1;
}

int
rconn_send(struct rconn *rc, const char *fmt, ...)
{
	va_list ap;
	int rv;

	if (!rconn_is_up(rc))
		return -1;
	va_start(ap, fmt);
	rv = redisvAsyncCommand(rc->ac, NULL, NULL, fmt, ap);
	va_end(ap);
	return rv == REDIS_OK ? 0 : -1;
}

int
rconn_send_argv(struct rconn *rc, int argc, const char **argv, const size_t *argvlen)
{
	if (!rconn_is_up(rc))
		return -1;
	return redisAsyncCommandArgv(rc->ac, NULL, NULL, argc, argv, argvlen) == REDIS_OK ?
	    0 : -1;
}

void
rconn_metrics(FILE *f)
{
	metrics_put_head(f, "cluster_redis_connections", "gauge",
	    "Connections to the cluster's Redis that are up (one per worker, three for "
	    "the main loop).");
	fprintf(f, "certgate_cluster_redis_connections %ld\n", atomic_load(&rconn_n_up));
	metrics_put_head(f, "cluster_redis_disconnects_total", "counter",
	    "Connections to Redis lost (closed, refused, or dropped after a missed deadline).");
	fprintf(f, "certgate_cluster_redis_disconnects_total %ld\n", atomic_load(&rconn_n_lost));
	metrics_put_head(f, "cluster_redis_timeouts_total", "counter",
	    "Redis commands that got no answer within cluster.timeout_ms.");
	fprintf(f, "certgate_cluster_redis_timeouts_total %ld\n", atomic_load(&rconn_n_timeouts));
}
