/* Process-wide counters for /metrics (Prometheus text format). Lock-free atomics for
 * plain counters; labelled families take a short mutex. */
#ifndef CERTGATE_METRICS_H
#define CERTGATE_METRICS_H
#include <stddef.h>

enum metric_id {
	M_CONN_ACCEPTED,        /* counter */
	M_CONN_ACTIVE,          /* gauge (inc/dec) */
	M_CONN_REJECTED_LIMIT,  /* over max_connections / per-ip */
	M_HS_OK,                /* full handshakes completed */
	M_HS_RESUMED,           /* resumed handshakes completed */
	M_HS_FAIL,              /* handshakes failed (any reason) */
	M_HS_TIMEOUT,
	M_REQ_TOTAL,
	M_REQ_DENIED,
	M_UPSTREAM_ERRORS,
	M_UPSTREAM_TIMEOUTS,
	M_RELOAD_OK,
	M_RELOAD_FAIL,
	M_REVOKED_REFUSED,      /* requests/handshakes refused because revoked */
	M_AUDIT_WRITE_FAIL,
	M_TLS_CACHE_SESSIONS,   /* gauge: resumable sessions held in the TLS cache */
	M_METRIC_COUNT
};

void metrics_inc(enum metric_id id);
void metrics_dec(enum metric_id id);
void metrics_add(enum metric_id id, long n);
long metrics_get(enum metric_id id);
/* Sets a gauge (e.g. M_CONN_ACTIVE) to an absolute value. */
void metrics_set(enum metric_id id, long v);

/* Requests by HTTP status (any 100..599). */
void metrics_status(int status);
/* Upstream time to response headers, milliseconds (histogram). */
void metrics_upstream_latency(double ms);
/* Denials by agent and reason (agent may be NULL -> "-", reason NULL -> "unknown").
 * Also counts M_REQ_DENIED: callers do not metrics_inc(M_REQ_DENIED) themselves.
 * At most 10000 (agent, reason) pairs are kept; later agents count as "_other". */
void metrics_deny(const char *agent, const char *reason);

/* Registers fn, whose malloc'd result (Prometheus text, complete lines, or NULL) is
 * appended to every metrics_render() output and freed there. fn runs on the thread
 * that renders; NULL unregisters. */
void metrics_set_extra(char *(*fn)(void));

/* Renders every metric; malloc'd string the caller frees. NULL on ENOMEM. */
char *metrics_render(void);

#endif
