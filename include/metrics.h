/* Process-wide counters for /metrics (Prometheus text format). Lock-free atomics for
 * plain counters; labelled families take a short mutex. */
#ifndef CERTGATE_METRICS_H
#define CERTGATE_METRICS_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

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
	M_TLS_VERIFY_HIT,       /* client certificates verified from tlsvcache */
	M_TLS_VERIFY_MISS,      /* ... verified by X509_verify_cert */
	M_METRIC_COUNT
};

void metrics_inc(enum metric_id id);
void metrics_dec(enum metric_id id);
long metrics_get(enum metric_id id);

/* Requests by HTTP status (any 100..599). */
void metrics_status(int status);
/* Upstream time to response headers, seconds (histogram). */
void metrics_upstream_latency(double seconds);
/* The label value for a refusal reason: a short snake_case name ("missing scope" ->
 * "missing_scope", "certificate is not mapped to an agent" -> "unmapped"); a reason
 * not in the table is lower-cased with every other run of characters made one '_',
 * cut to 32 characters, into buf (len bytes). Returns a static string or buf. Pure. */
const char *metrics_reason_label(const char *reason, char *buf, size_t len);

/* Denials by agent and reason (agent may be NULL -> "-", reason NULL -> "unknown";
 * the reason is turned into its label with metrics_reason_label).
 * Also counts M_REQ_DENIED: callers do not metrics_inc(M_REQ_DENIED) themselves.
 * At most 10000 (agent, reason) pairs are kept; later agents count as "_other". */
void metrics_deny(const char *agent, const char *reason);

/* The one histogram type: fixed bucket bounds in seconds (Prometheus base unit),
 * lock-free observations. Declare with METRICS_HIST("name_seconds", "help",
 * bounds...) at file scope; observe from any thread; render with metrics_hist_render
 * from a renderer (below). At most METRICS_HIST_MAX bounds. */
#define METRICS_HIST_MAX 16
struct metrics_hist {
	const char *name;               /* without "certgate_", ends in _seconds */
	const char *help;
	double bounds[METRICS_HIST_MAX];
	size_t n;
	atomic_long bucket[METRICS_HIST_MAX + 1];       /* not cumulative; last: +Inf */
	atomic_llong sum_us;            /* integer microseconds: no atomic double */
};
#define METRICS_HIST(name_, help_, ...) { .name = (name_), .help = (help_), \
	.bounds = { __VA_ARGS__ }, \
	.n = sizeof((double[]){ __VA_ARGS__ }) / sizeof(double) }
void metrics_hist_observe(struct metrics_hist *h, double seconds);
void metrics_hist_render(FILE *f, struct metrics_hist *h);

/* Other modules add families of their own (the signer pool, the connection layer)
 * with a renderer that writes complete Prometheus lines to f. Renderers run on the
 * thread that renders, in registration order, and must not block. Adding one twice
 * is a no-op. Returns 0, or -1 when METRICS_RENDERERS are registered already. */
#define METRICS_RENDERERS 16
typedef void (*metrics_render_fn)(FILE *f);
int metrics_add_renderer(metrics_render_fn fn);
void metrics_remove_renderer(metrics_render_fn fn);
/* "# HELP certgate_NAME help" and "# TYPE certgate_NAME type" lines. */
void metrics_put_head(FILE *f, const char *name, const char *type, const char *help);
/* A label value, escaped per the text format (backslash, double quote, newline). */
void metrics_put_label(FILE *f, const char *value);

/* Renders every metric; malloc'd string the caller frees. NULL on ENOMEM. */
char *metrics_render(void);

#endif
