/* Process-wide metrics rendered in the Prometheus text exposition format.
 * Plain counters, status counts and the latency histogram are lock-free atomics
 * (hot paths touch them per request); only the labelled denial family takes a
 * mutex, and only on denials. */
#include "metrics.h"

#include "hash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_STATUS_MAX	600
#define METRICS_DENY_MAX	10000
#define METRICS_DENY_BUCKETS	1024

static atomic_long metrics_ctr[M_METRIC_COUNT];
static atomic_long metrics_status_ctr[METRICS_STATUS_MAX];

static struct metrics_hist metrics_upstream = METRICS_HIST("upstream_latency_seconds",
    "Upstream time to response headers.", 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1, 2.5, 5, 10);

struct deny_ent {
	char *agent;
	char *reason;
	long count;
	struct deny_ent *next;
};
static pthread_mutex_t metrics_deny_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct deny_ent *metrics_deny_tab[METRICS_DENY_BUCKETS];
static size_t metrics_deny_n;

static pthread_mutex_t metrics_rend_mtx = PTHREAD_MUTEX_INITIALIZER;
static metrics_render_fn metrics_rend[METRICS_RENDERERS];
static size_t metrics_nrend;

void
metrics_inc(enum metric_id id)
{
	if ((unsigned)id < M_METRIC_COUNT)
		atomic_fetch_add_explicit(&metrics_ctr[id], 1, memory_order_relaxed);
}

void
metrics_dec(enum metric_id id)
{
	if ((unsigned)id < M_METRIC_COUNT)
		atomic_fetch_sub_explicit(&metrics_ctr[id], 1, memory_order_relaxed);
}

long
metrics_get(enum metric_id id)
{
	if ((unsigned)id >= M_METRIC_COUNT)
		return 0;
	return atomic_load_explicit(&metrics_ctr[id], memory_order_relaxed);
}

void
metrics_status(int status)
{
	if (status >= 100 && status < METRICS_STATUS_MAX)
		atomic_fetch_add_explicit(&metrics_status_ctr[status], 1, memory_order_relaxed);
}

void
metrics_hist_observe(struct metrics_hist *h, double seconds)
{
	size_t i;

	if (!(seconds >= 0))	/* also catches NaN */
		seconds = 0;
	for (i = 0; i < h->n; i++)
		if (seconds <= h->bounds[i])
			break;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	if (seconds > 1e9)
		seconds = 1e9;
	atomic_fetch_add_explicit(&h->sum_us, (long long)(seconds * 1e6 + 0.5),
	    memory_order_relaxed);
}

void
metrics_hist_render(FILE *f, struct metrics_hist *h)
{
	long cum = 0;
	long long sum;
	size_t i;

	metrics_put_head(f, h->name, "histogram", h->help);
	for (i = 0; i <= h->n; i++) {
		cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		if (i < h->n)
			fprintf(f, "certgate_%s_bucket{le=\"%g\"} %ld\n", h->name, h->bounds[i],
			    cum);
		else
			fprintf(f, "certgate_%s_bucket{le=\"+Inf\"} %ld\n", h->name, cum);
	}
	sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
	fprintf(f, "certgate_%s_sum %lld.%06lld\n", h->name, sum / 1000000, sum % 1000000);
	/* _count equals the +Inf bucket by definition; use it so the two never disagree. */
	fprintf(f, "certgate_%s_count %ld\n", h->name, cum);
}

void
metrics_upstream_latency(double seconds)
{
	metrics_hist_observe(&metrics_upstream, seconds);
}

static unsigned
metrics_deny_hash(const char *a, const char *b)
{
	uint32_t h = hash_fnv1a(HASH_FNV_INIT, a, strlen(a) + 1);	/* NUL separates */

	return hash_fnv1a(h, b, strlen(b)) % METRICS_DENY_BUCKETS;
}

static struct deny_ent *
metrics_deny_find(const char *agent, const char *reason, unsigned h)
{
	struct deny_ent *e;

	for (e = metrics_deny_tab[h]; e != NULL; e = e->next)
		if (strcmp(e->agent, agent) == 0 && strcmp(e->reason, reason) == 0)
			return e;
	return NULL;
}

/* The refusal reasons the request path gives (audit "reason") and their label. Short
 * snake_case, a closed set: a reason that is not here is turned into snake_case by
 * metrics_reason_label, so a new reason still gets a valid, bounded label. */
static const struct {
	const char *reason, *label;
} metrics_reasons[] = {
	{ "missing scope", "missing_scope" },
	{ "certificate is not mapped to an agent", "unmapped" },
	{ "rate limited", "rate_limited" },
	{ "revoked", "revoked" },
	{ "session belongs to another agent", "foreign_session" },
	{ "unknown session", "unknown_session" },
	{ "gateway state unavailable", "unavailable" },
	{ "method not allowed", "method_not_allowed" },
	{ "body not allowed on this method", "body_not_allowed" },
	{ "duplicate MCP header", "duplicate_header" },
	{ "unsupported MCP-Protocol-Version", "bad_protocol_version" },
	{ "Mcp-Method header mismatch", "header_mismatch" },
	{ "Mcp-Name header mismatch", "header_mismatch" },
	{ "invalid request", "invalid_request" },
	{ "empty batch", "invalid_request" },
	{ "invalid json", "invalid_json" },
	{ "argument rule", "argument_rule" },
	{ "tool never listed", "tool_not_listed" },
	{ "unusable inputSchema", "bad_input_schema" },
	{ "invalid arguments", "invalid_arguments" },
	{ "out of memory", "out_of_memory" },
	{ "audit log unavailable", "audit_unavailable" },
	{ "upstream unavailable", "upstream_unreachable" },
	{ "upstream unreachable", "upstream_unreachable" },
	{ "header timeout", "header_timeout" },
	{ "body timeout", "body_timeout" },
	{ "request body too large", "body_too_large" },
	{ "header section too large", "headers_too_large" },
	{ "too many header fields", "headers_too_large" },
	{ "request line too long", "headers_too_large" },
	{ "request target too long", "bad_path" },
	{ "request target must be a path", "bad_path" },
	{ "fragment in request target", "bad_path" },
	{ "backslash in request path", "bad_path" },
	{ "empty segment in request path", "bad_path" },
	{ "malformed percent-encoding in request path", "bad_path" },
	{ "encoded '/', '\\', '.' or NUL in request path", "bad_path" },
};

#define METRICS_LABEL_MAX	32

const char *
metrics_reason_label(const char *reason, char *buf, size_t len)
{
	size_t i, o = 0;
	int sep = 0;

	if (reason == NULL || *reason == '\0')
		return "unknown";
	for (i = 0; i < sizeof(metrics_reasons) / sizeof(metrics_reasons[0]); i++)
		if (strcmp(metrics_reasons[i].reason, reason) == 0)
			return metrics_reasons[i].label;
	if (len == 0)
		return "unknown";
	if (len > METRICS_LABEL_MAX + 1)
		len = METRICS_LABEL_MAX + 1;
	/* Lower-case letters and digits, one '_' for every other run, at most 32. */
	for (; *reason && o + 1 < len; reason++) {
		unsigned char ch = (unsigned char)*reason;

		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    (ch >= 'A' && ch <= 'Z')) {
			if (sep && o > 0) {
				if (o + 2 >= len)
					break;  /* no room for '_' and a letter: cut here */
				buf[o++] = '_';
			}
			sep = 0;
			buf[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
		} else
			sep = 1;
	}
	buf[o] = '\0';
	return o > 0 ? buf : "unknown";
}

void
metrics_deny(const char *agent, const char *reason)
{
	struct deny_ent *e;
	char lb[METRICS_LABEL_MAX + 1];
	unsigned h;

	metrics_inc(M_REQ_DENIED);
	if (agent == NULL)
		agent = "-";
	reason = metrics_reason_label(reason, lb, sizeof(lb));
	pthread_mutex_lock(&metrics_deny_mtx);
	h = metrics_deny_hash(agent, reason);
	e = metrics_deny_find(agent, reason, h);
	if (e == NULL && metrics_deny_n >= METRICS_DENY_MAX) {
		/* Bound memory and label cardinality: unseen agents share one series. */
		agent = "_other";
		h = metrics_deny_hash(agent, reason);
		e = metrics_deny_find(agent, reason, h);
	}
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL || (e->agent = strdup(agent)) == NULL ||
		    (e->reason = strdup(reason)) == NULL) {
			if (e != NULL) {
				free(e->agent);
				free(e);
			}
			pthread_mutex_unlock(&metrics_deny_mtx);
			return;
		}
		e->next = metrics_deny_tab[h];
		metrics_deny_tab[h] = e;
		metrics_deny_n++;
	}
	e->count++;
	pthread_mutex_unlock(&metrics_deny_mtx);
}

int
metrics_add_renderer(metrics_render_fn fn)
{
	size_t i;
	int rc = -1;

	pthread_mutex_lock(&metrics_rend_mtx);
	for (i = 0; i < metrics_nrend; i++)
		if (metrics_rend[i] == fn)
			break;
	if (i < metrics_nrend)
		rc = 0;
	else if (metrics_nrend < METRICS_RENDERERS) {
		metrics_rend[metrics_nrend++] = fn;
		rc = 0;
	}
	pthread_mutex_unlock(&metrics_rend_mtx);
	return rc;
}

void
metrics_remove_renderer(metrics_render_fn fn)
{
	size_t i;

	pthread_mutex_lock(&metrics_rend_mtx);
	for (i = 0; i < metrics_nrend; i++)
		if (metrics_rend[i] == fn) {
			memmove(&metrics_rend[i], &metrics_rend[i + 1],
			    (metrics_nrend - i - 1) * sizeof(metrics_rend[0]));
			metrics_nrend--;
			break;
		}
	pthread_mutex_unlock(&metrics_rend_mtx);
}

void
metrics_put_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

void
metrics_put_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP certgate_%s %s\n# TYPE certgate_%s %s\n", name, help, name, type);
}

static void
metrics_put_simple(FILE *f, const char *name, const char *type, const char *help,
    enum metric_id id)
{
	metrics_put_head(f, name, type, help);
	fprintf(f, "certgate_%s %ld\n", name, metrics_get(id));
}

struct deny_row {
	const char *agent;	/* entries live until exit: pointers stay valid */
	const char *reason;
	long count;
};

static int
metrics_deny_cmp(const void *a, const void *b)
{
	const struct deny_row *x = a, *y = b;
	int c = strcmp(x->agent, y->agent);

	return c ? c : strcmp(x->reason, y->reason);
}

/* Snapshots the family under the lock, then sorts and prints outside it. */
static int
metrics_render_deny(FILE *f)
{
	struct deny_row *v = NULL;
	struct deny_ent *e;
	size_t n = 0, i;

	metrics_put_head(f, "requests_denied_total", "counter",
	    "Requests refused, by agent and reason.");
	pthread_mutex_lock(&metrics_deny_mtx);
	if (metrics_deny_n > 0 && (v = calloc(metrics_deny_n, sizeof(*v))) == NULL) {
		pthread_mutex_unlock(&metrics_deny_mtx);
		return -1;
	}
	for (i = 0; v != NULL && i < METRICS_DENY_BUCKETS; i++)
		for (e = metrics_deny_tab[i]; e != NULL; e = e->next) {
			v[n].agent = e->agent;
			v[n].reason = e->reason;
			v[n++].count = e->count;
		}
	pthread_mutex_unlock(&metrics_deny_mtx);
	if (n > 1)
		qsort(v, n, sizeof(*v), metrics_deny_cmp);
	for (i = 0; i < n; i++) {
		fputs("certgate_requests_denied_total{agent=\"", f);
		metrics_put_label(f, v[i].agent);
		fputs("\",reason=\"", f);
		metrics_put_label(f, v[i].reason);
		fprintf(f, "\"} %ld\n", v[i].count);
	}
	free(v);
	return 0;
}

static void
metrics_render_counters(FILE *f)
{
	int s;

	fprintf(f, "# HELP certgate_build_info Build information.\n"
	    "# TYPE certgate_build_info gauge\n"
	    "certgate_build_info{version=\"%s\"} 1\n",
#ifdef CERTGATE_VERSION
	    CERTGATE_VERSION
#else
	    "unknown"
#endif
	    );
	metrics_put_simple(f, "connections_accepted_total", "counter",
	    "TCP connections accepted.",
	    M_CONN_ACCEPTED);
	metrics_put_simple(f, "connections_active", "gauge", "Client connections currently open.",
	    M_CONN_ACTIVE);
	metrics_put_simple(f, "connections_rejected_total", "counter",
	    "Connections refused by max_connections or max_connections_per_ip.",
	    M_CONN_REJECTED_LIMIT);
	metrics_put_head(f, "handshakes_total", "counter", "TLS handshakes by result.");
	fprintf(f, "certgate_handshakes_total{result=\"ok\"} %ld\n", metrics_get(M_HS_OK));
	fprintf(f, "certgate_handshakes_total{result=\"resumed\"} %ld\n",
	    metrics_get(M_HS_RESUMED));
	fprintf(f, "certgate_handshakes_total{result=\"failed\"} %ld\n", metrics_get(M_HS_FAIL));
	fprintf(f, "certgate_handshakes_total{result=\"timeout\"} %ld\n",
	    metrics_get(M_HS_TIMEOUT));
	metrics_put_simple(f, "requests_received_total", "counter", "HTTP requests received.",
	    M_REQ_TOTAL);
	/* "code", as the Prometheus client libraries label HTTP status codes. */
	metrics_put_head(f, "requests_total", "counter", "HTTP responses by status code.");
	for (s = 100; s < METRICS_STATUS_MAX; s++) {
		long v = atomic_load_explicit(&metrics_status_ctr[s], memory_order_relaxed);
		if (v)
			fprintf(f, "certgate_requests_total{code=\"%d\"} %ld\n", s, v);
	}
	metrics_put_simple(f, "upstream_errors_total", "counter",
	    "Upstream connection or protocol errors.",
	    M_UPSTREAM_ERRORS);
	metrics_put_simple(f, "upstream_timeouts_total", "counter", "Upstream timeouts.",
	    M_UPSTREAM_TIMEOUTS);
	metrics_put_head(f, "reloads_total", "counter",
	    "Configuration and identity map reloads.");
	fprintf(f, "certgate_reloads_total{result=\"ok\"} %ld\n", metrics_get(M_RELOAD_OK));
	fprintf(f, "certgate_reloads_total{result=\"failed\"} %ld\n", metrics_get(M_RELOAD_FAIL));
	metrics_put_simple(f, "revoked_refused_total", "counter",
	    "Handshakes or requests refused because the certificate is revoked.",
	    M_REVOKED_REFUSED);
	metrics_put_simple(f, "audit_write_failures_total", "counter",
	    "Audit log writes that failed.",
	    M_AUDIT_WRITE_FAIL);
	metrics_put_simple(f, "tls_session_cache_sessions", "gauge",
	    "Resumable TLS sessions held in the session cache.", M_TLS_CACHE_SESSIONS);
	metrics_put_head(f, "tls_verify_cache_total", "counter",
	    "Client certificates of full handshakes by how they were verified: the chain "
	    "verified earlier under the same trust store and CRLs (hit) or verified now (miss).");
	fprintf(f, "certgate_tls_verify_cache_total{result=\"hit\"} %ld\n",
	    metrics_get(M_TLS_VERIFY_HIT));
	fprintf(f, "certgate_tls_verify_cache_total{result=\"miss\"} %ld\n",
	    metrics_get(M_TLS_VERIFY_MISS));
}

char *
metrics_render(void)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f;
	int rc;

	f = open_memstream(&buf, &len);
	if (f == NULL)
		return NULL;
	metrics_render_counters(f);
	rc = metrics_render_deny(f);
	metrics_hist_render(f, &metrics_upstream);
	/* Renderers are static functions of modules that live as long as the process:
	 * the lock only keeps the list consistent while it is walked. */
	pthread_mutex_lock(&metrics_rend_mtx);
	for (i = 0; i < metrics_nrend; i++)
		metrics_rend[i](f);
	pthread_mutex_unlock(&metrics_rend_mtx);
	if (ferror(f))
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	if (rc == -1) {
		free(buf);
		return NULL;
	}
	return buf;
}
