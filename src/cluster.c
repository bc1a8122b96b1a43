/* Session bindings and rate budgets shared through Redis (cluster.h). */
#include "cluster.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "rconn.h"

/* A worker's lease of an agent's shared budget (cluster.h, "Leases"). */
#define CLUSTER_LEASES          256     /* per worker, direct-mapped by agent */
#define CLUSTER_LEASE_S         0.5     /* a lease's tokens are usable this long */
#define CLUSTER_LEASE_MAX       16

struct cluster_lease {
	char *agent;            /* NULL: empty slot */
	int tokens;             /* taken from Redis, not used yet */
	int size;               /* tokens the next round trip asks for */
	double burst;           /* the agent's, for giving tokens back */
	double expires;         /* monotonic seconds */
};

struct cluster_worker {
	struct rconn *rc;
	const struct config *cfg;
	struct cluster_lease lease[CLUSTER_LEASES];
};

/* The caller's side of a pending operation. The rconn op always answers (a reply,
 * or NULL on timeout, disconnect or shutdown) and frees it; a cancelled one answers
 * nobody. */
struct cluster_op {
	cluster_session_fn sfn;
	cluster_rate_fn rfn;
	void *arg;
	struct cluster_worker *cw;      /* rate: where the lease goes */
	int cancelled;
	char agent[];
};

static atomic_long cluster_lookup[4];        /* by -answer + 1: mine, other, unknown, down */
static atomic_long cluster_refused_unavail, cluster_bind_lost, cluster_rate_global_refused,
    cluster_rate_fallback, cluster_rate_local, cluster_rate_returned;
static pthread_once_t cluster_once = PTHREAD_ONCE_INIT;

/* One token bucket on Redis's clock: refill by elapsed time, take up to ARGV[3]
 * whole tokens when there is at least one. Returns {granted, 0} or {0, ms until a
 * token}. The key expires once the bucket would be full again (plus a second), so
 * idle agents cost nothing. */
static const char cluster_rate_lua[] =
	"local k=KEYS[1] local rate=tonumber(ARGV[1]) local burst=tonumber(ARGV[2]) "
	"local n=tonumber(ARGV[3]) "
	"local t=redis.call('TIME') local now=tonumber(t[1])+tonumber(t[2])/1e6 "
	"local v=redis.call('HMGET',k,'t','ts') "
	"local tok=tonumber(v[1]) or burst local ts=tonumber(v[2]) or now "
	"if now>ts then tok=math.min(burst,tok+(now-ts)*rate) end "
	"local g=0 local wait=0 "
	"if tok>=1 then g=math.min(n,math.floor(tok)) tok=tok-g "
	"else wait=math.ceil((1-tok)/rate*1000) end "
	"redis.call('HSET',k,'t',tostring(tok),'ts',tostring(now)) "
	"redis.call('PEXPIRE',k,math.ceil(burst/rate*1000)+1000) "
	"return {g,wait}";

/* Tokens of a lease that ran out unused go back (never above the burst). */
static const char cluster_rate_give_lua[] =
	"local k=KEYS[1] local burst=tonumber(ARGV[1]) local n=tonumber(ARGV[2]) "
	"local tok=tonumber(redis.call('HGET',k,'t')) "
	"if tok then redis.call('HSET',k,'t',tostring(math.min(burst,tok+n))) end "
	"return 0";

static void
cluster_metrics(FILE *f)
{
	static const char *names[4] = { "mine", "other_agent", "unknown", "unavailable" };
	int i;

	rconn_metrics(f);
	metrics_put_head(f, "cluster_session_lookups_total", "counter",
	    "Session ids not held here, looked up in Redis, by answer.");
	for (i = 0; i < 4; i++)
		fprintf(f, "certgate_cluster_session_lookups_total{result=\"%s\"} %ld\n",
		    names[i],
		    atomic_load(&cluster_lookup[i]));
	metrics_put_head(f, "cluster_refused_unavailable_total", "counter",
	    "Requests refused (503) because Redis could not answer for their session.");
	fprintf(f, "certgate_cluster_refused_unavailable_total %ld\n",
	    atomic_load(&cluster_refused_unavail));
	metrics_put_head(f, "cluster_session_bind_lost_total", "counter",
	    "Session bindings kept locally only because Redis was unreachable.");
	fprintf(f, "certgate_cluster_session_bind_lost_total %ld\n",
	    atomic_load(&cluster_bind_lost));
	metrics_put_head(f, "cluster_rate_refused_total", "counter",
	    "Requests over an agent's budget shared by every instance.");
	fprintf(f, "certgate_cluster_rate_refused_total %ld\n",
	    atomic_load(&cluster_rate_global_refused));
	metrics_put_head(f, "cluster_rate_fallback_total", "counter",
	    "Rate checks decided by this instance's bucket alone because Redis could not "
	    "answer.");
	fprintf(f, "certgate_cluster_rate_fallback_total %ld\n",
	    atomic_load(&cluster_rate_fallback));
	metrics_put_head(f, "cluster_rate_local_total", "counter",
	    "Requests allowed from tokens this instance had already taken from the shared "
	    "budget (a lease), without a Redis round trip.");
	fprintf(f, "certgate_cluster_rate_local_total %ld\n", atomic_load(&cluster_rate_local));
	metrics_put_head(f, "cluster_rate_returned_total", "counter",
	    "Leased tokens given back to the shared budget unused.");
	fprintf(f, "certgate_cluster_rate_returned_total %ld\n",
	    atomic_load(&cluster_rate_returned));
}

static void
cluster_init(void)
{
	(void)metrics_add_renderer(cluster_metrics);
}

struct cluster_worker *
cluster_worker_new(struct event_base *base, const struct config *cfg, int *err)
{
	struct cluster_worker *cw;

	*err = 0;
	if (cfg->cluster.redis == NULL)
		return NULL;
	pthread_once(&cluster_once, cluster_init);
	if ((cw = calloc(1, sizeof(*cw))) == NULL ||
	    (cw->rc = rconn_new(base, &cfg->cluster, "a worker", NULL, NULL)) == NULL) {
		free(cw);
		*err = 1;
		return NULL;
	}
	cw->cfg = cfg;
	return cw;
}

void
cluster_worker_free(struct cluster_worker *cw)
{
	int i;

	if (cw == NULL)
		return;
	rconn_free(cw->rc);
	for (i = 0; i < CLUSTER_LEASES; i++)
		free(cw->lease[i].agent);
	free(cw);
}

static double
cluster_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The most tokens one round trip takes for an agent: what it may use in
 * CLUSTER_LEASE_S at its rate, at most a quarter of its burst (other instances
 * keep their share) and CLUSTER_LEASE_MAX. An agent slower than two requests per
 * lease period gets 1: one round trip per request, as without leases. */
static int
cluster_lease_cap(double per_second, double burst)
{
	double c = per_second * CLUSTER_LEASE_S;

	if (burst / 4 < c)
		c = burst / 4;
	if (c > CLUSTER_LEASE_MAX)
		c = CLUSTER_LEASE_MAX;
	return c < 2 ? 1 : (int)c;
}

static struct cluster_lease *
cluster_lease_slot(struct cluster_worker *cw, const char *agent)
{
	return &cw->lease[hash_str(agent) % CLUSTER_LEASES];
}

/* l's unused tokens go back to its agent's bucket (sent without waiting: tokens
 * that do not arrive are only a shortfall, never an excess). */
static void
cluster_lease_give(struct cluster_worker *cw, struct cluster_lease *l)
{
	char cap[32], n[16];

	snprintf(cap, sizeof(cap), "%.6g", l->burst < 1 ? 1 : l->burst);
	snprintf(n, sizeof(n), "%d", l->tokens);
	if (rconn_send(cw->rc, "EVAL %s 1 certgate:r:%s %s %s", cluster_rate_give_lua,
	    l->agent, cap, n) == 0)
		atomic_fetch_add(&cluster_rate_returned, l->tokens);
	l->tokens = 0;
}

static struct cluster_op *
cluster_op_new(const char *agent, void *arg)
{
	size_t n = strlen(agent);
	struct cluster_op *op;

	if ((op = calloc(1, sizeof(*op) + n + 1)) == NULL)
		return NULL;
	op->arg = arg;
	memcpy(op->agent, agent, n + 1);
	return op;
}

static void
cluster_session_reply(void *arg, redisReply *r)
{
	struct cluster_op *op = arg;
	enum cluster_session a;

	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		a = CLUSTER_SESSION_DOWN;
	else if (r->type == REDIS_REPLY_NIL)
		a = CLUSTER_SESSION_UNKNOWN;
	else if (r->type == REDIS_REPLY_STRING && r->len == strlen(op->agent) &&
	    memcmp(r->str, op->agent, r->len) == 0)
		a = CLUSTER_SESSION_MINE;
	else
		a = CLUSTER_SESSION_OTHER;
	atomic_fetch_add(&cluster_lookup[1 - (int)a], 1);
	if (!op->cancelled)
		op->sfn(op->arg, a);
	free(op);
}

int
cluster_session_lookup(struct cluster_worker *cw, const char *sid, const char *agent,
    cluster_session_fn fn, void *arg, struct cluster_op **opp)
{
	struct cluster_op *op;

	*opp = NULL;
	if (!rconn_is_up(cw->rc) || (op = cluster_op_new(agent, arg)) == NULL) {
		atomic_fetch_add(&cluster_lookup[3], 1);
		return -1;
	}
	op->sfn = fn;
	if (rconn_command(cw->rc, cluster_session_reply, op, NULL, "GET certgate:s:%s",
	    sid) == -1) {
		free(op);
		atomic_fetch_add(&cluster_lookup[3], 1);
		return -1;
	}
	*opp = op;
	return 0;
}

void
cluster_session_bind(struct cluster_worker *cw, const char *sid, const char *agent)
{
	if (rconn_send(cw->rc, "SET certgate:s:%s %s NX EX %d", sid, agent,
	    cw->cfg->cluster.session_ttl_s) == -1) {
		atomic_fetch_add(&cluster_bind_lost, 1);
		log_warn("cluster: Redis unreachable: a new session is known to this instance "
		    "only");
	}
}

void
cluster_session_touch(struct cluster_worker *cw, const char *sid)
{
	(void)rconn_send(cw->rc, "EXPIRE certgate:s:%s %d", sid, cw->cfg->cluster.session_ttl_s);
}

void
cluster_session_forget(struct cluster_worker *cw, const char *sid)
{
	(void)rconn_send(cw->rc, "DEL certgate:s:%s", sid);
}

/* The rest of a grant becomes the worker's lease of op->agent's budget, when the
 * slot is still the agent's (cluster_rate_take claimed it). */
static void
cluster_lease_store(struct cluster_op *op, long long granted)
{
	struct cluster_lease *l = cluster_lease_slot(op->cw, op->agent);

	if (l->agent == NULL || strcmp(l->agent, op->agent) != 0)
		return;
	/* Two requests of the agent may have asked at once: both grants are real. */
	if (granted > 1)
		l->tokens += (int)(granted - 1);
	l->expires = cluster_mono() + CLUSTER_LEASE_S;
}

static void
cluster_rate_reply(void *arg, redisReply *r)
{
	struct cluster_op *op = arg;
	int allowed = -1;
	double retry = 1;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[1]->type == REDIS_REPLY_INTEGER) {
		allowed = r->element[0]->integer >= 1;
		retry = (double)r->element[1]->integer / 1000.0;
		/* Only while the owner waits: a cancelled request's tokens are not used. */
		if (allowed == 1 && !op->cancelled)
			cluster_lease_store(op, r->element[0]->integer);
	}
	if (allowed == -1)
		atomic_fetch_add(&cluster_rate_fallback, 1);
	else if (allowed == 0)
		atomic_fetch_add(&cluster_rate_global_refused, 1);
	if (!op->cancelled)
		op->rfn(op->arg, allowed, retry);
	free(op);
}

int
cluster_rate_take(struct cluster_worker *cw, const char *agent, double per_second,
    double burst, cluster_rate_fn fn, void *arg, struct cluster_op **opp)
{
	struct cluster_lease *l = cluster_lease_slot(cw, agent);
	struct cluster_op *op;
	char rate[32], cap[32], want[16];
	double now = cluster_mono();
	int mine = l->agent != NULL && strcmp(l->agent, agent) == 0, max;
	char *id;

	*opp = NULL;
	max = cluster_lease_cap(per_second, burst);
	/* A slot whose lease is spent or over is taken by the next agent that hashes
	 * there; a live lease of another agent is left alone (this one goes without). */
	if (!mine && max > 1 && (l->agent == NULL || l->tokens == 0 || now >= l->expires) &&
	    (id = strdup(agent)) != NULL) {
		if (l->agent != NULL && l->tokens > 0)
			cluster_lease_give(cw, l);
		l->agent = id;
		l->tokens = 0;
		l->size = 1;
		l->expires = 0;
		mine = 1;
	}
	if (mine) {
		if (l->tokens > 0 && now < l->expires) {
			l->tokens--;
			atomic_fetch_add(&cluster_rate_local, 1);
			return 1;
		}
		l->burst = burst;
		if (l->tokens > 0) {
			/* Ran out unused: give them back, ask for fewer next time. */
			cluster_lease_give(cw, l);
			l->size = l->size > 1 ? l->size / 2 : 1;
		} else if (now < l->expires && l->size < CLUSTER_LEASE_MAX)
			l->size *= 2;   /* used up within its period: a busy agent */
	}
	if (!rconn_is_up(cw->rc) || (op = cluster_op_new(agent, arg)) == NULL) {
		atomic_fetch_add(&cluster_rate_fallback, 1);
		return -1;
	}
	op->rfn = fn;
	op->cw = cw;
	snprintf(rate, sizeof(rate), "%.6g", per_second);
	snprintf(cap, sizeof(cap), "%.6g", burst < 1 ? 1 : burst);
	snprintf(want, sizeof(want), "%d", mine ? (l->size < max ? l->size : max) : 1);
	if (rconn_command(cw->rc, cluster_rate_reply, op, NULL,
	    "EVAL %s 1 certgate:r:%s %s %s %s", cluster_rate_lua, agent, rate, cap, want) == -1) {
		free(op);
		atomic_fetch_add(&cluster_rate_fallback, 1);
		return -1;
	}
	*opp = op;
	return 0;
}

void
cluster_cancel(struct cluster_op *op)
{
	/* The reply (or its absence) still arrives and frees op. */
	if (op != NULL)
		op->cancelled = 1;
}

void
cluster_count_refused_unavailable(void)
{
	atomic_fetch_add(&cluster_refused_unavail, 1);
}
