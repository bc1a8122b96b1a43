/* What the instances of a cluster share through Redis on the request path
 * (README "Running several instances"): session bindings and per-agent rate budgets. The push of
 * revocations and identity-map changes is clusterpush.h.
 *
 * Keys (cluster.redis's database):
 *   certgate:s:SESSION-ID  -> agent id, TTL cluster.session_ttl_s, refreshed on use
 *   certgate:r:AGENT       -> hash {t: tokens, ts: seconds}, a token bucket kept by a
 *                             Lua script on Redis's clock (one clock for every instance)
 *
 * Leases: a round trip for a busy agent takes several tokens at once (up to what its
 * rate allows in 0.5 s, a quarter of its burst, 16); the worker spends them on the
 * agent's next requests within 0.5 s without asking Redis, and gives back what is left
 * when the period ends. Tokens are taken from the shared bucket before they are used,
 * so the shared budget is never exceeded; the price is that tokens one worker holds
 * are not available to the others for up to 0.5 s. A lease grows (doubles) while it
 * is used up within its period and shrinks (halves) when tokens are left over; an
 * agent slower than two requests per period gets none (one round trip per request).
 *
 * Failure semantics (README "Running several instances"): a session id this instance
 * does not hold is looked up; when Redis cannot answer, the request is refused (503,
 * never forwarded). A global rate check Redis cannot answer falls back to this
 * instance's own bucket (already taken by decide.h), so the budget is at worst N
 * times the agent's rate with N instances, for as long as Redis is down.
 *
 * Threading: a cluster_worker belongs to one worker thread and its event base; every
 * function taking one runs on that thread. The counters are atomic. */
#ifndef CERTGATE_CLUSTER_H
#define CERTGATE_CLUSTER_H
#include <event2/event.h>
#include <stdio.h>

#include "config.h"

struct cluster_worker;
struct cluster_op;

/* NULL when cfg has no cluster.redis, or out of memory (*err set to 1 then). */
struct cluster_worker *cluster_worker_new(struct event_base *base, const struct config *cfg,
    int *err);
void cluster_worker_free(struct cluster_worker *cw);

enum cluster_session {
	CLUSTER_SESSION_MINE = 1,       /* bound to the agent asked about */
	CLUSTER_SESSION_OTHER = 0,      /* bound to another agent */
	CLUSTER_SESSION_UNKNOWN = -1,   /* bound to nobody */
	CLUSTER_SESSION_DOWN = -2       /* Redis did not answer */
};
typedef void (*cluster_session_fn)(void *arg, enum cluster_session answer);

/* Looks sid up for agent. Returns 0 (fn runs later, once, unless the op is
 * cancelled) or -1 when Redis is unreachable now (fn not called: CLUSTER_SESSION_DOWN). */
int cluster_session_lookup(struct cluster_worker *cw, const char *sid, const char *agent,
    cluster_session_fn fn, void *arg, struct cluster_op **op);
/* A new binding (SET NX with the TTL), a use (the TTL refreshed), an end (DEL); sent
 * without waiting. A binding Redis cannot take stays local (counted). */
void cluster_session_bind(struct cluster_worker *cw, const char *sid, const char *agent);
void cluster_session_touch(struct cluster_worker *cw, const char *sid);
void cluster_session_forget(struct cluster_worker *cw, const char *sid);

/* 1: allowed, 0: over the shared budget (retry_after in seconds), -1: Redis did
 * not answer (the caller keeps the local decision). */
typedef void (*cluster_rate_fn)(void *arg, int allowed, double retry_after);
/* Takes one token of agent's shared bucket (per_second > 0, burst >= 1). Returns 1
 * when a token of this worker's lease allows it now (fn not called), 0 (fn runs
 * later) or -1 when Redis is unreachable now (fn not called). */
int cluster_rate_take(struct cluster_worker *cw, const char *agent, double per_second,
    double burst, cluster_rate_fn fn, void *arg, struct cluster_op **op);

/* fn of op will not run. NULL is a no-op. */
void cluster_cancel(struct cluster_op *op);

/* Counts a session refused because Redis could not answer, and a rate check that
 * fell back to the local bucket (for /metrics). */
void cluster_count_refused_unavailable(void);

#endif
