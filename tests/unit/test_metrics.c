/* metrics: counters, gauges, status counts, cumulative histogram buckets, label
 * escaping, the denial cap, the extra-lines hook and the rendered text. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"

static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return 1;
		p++;
	}
	return 0;
}

static void
extra_lines(FILE *f)
{
	fputs("# HELP certgate_token_up Token health.\n"
	    "# TYPE certgate_token_up gauge\ncertgate_token_up 1\n", f);
}

static void *
hammer(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < 10000; i++) {
		metrics_inc(M_REQ_TOTAL);
		metrics_status(200);
		metrics_upstream_latency(0.003);
	}
	return NULL;
}

static void
test_counters(void)
{
	pthread_t t[4];
	int i;

	metrics_inc(M_CONN_ACCEPTED);
	metrics_inc(M_CONN_ACCEPTED);
	CHECK(metrics_get(M_CONN_ACCEPTED) == 2);
	metrics_inc(M_CONN_ACTIVE);
	metrics_inc(M_CONN_ACTIVE);
	metrics_dec(M_CONN_ACTIVE);
	CHECK(metrics_get(M_CONN_ACTIVE) == 1);
	metrics_inc(M_METRIC_COUNT);	/* out of range: ignored, no crash */
	CHECK(metrics_get(M_METRIC_COUNT) == 0);
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(metrics_get(M_REQ_TOTAL) == 40000);
}

static void
test_render(void)
{
	char *r;
	int i;

	metrics_inc(M_HS_OK);
	metrics_inc(M_HS_RESUMED);
	metrics_inc(M_HS_RESUMED);
	metrics_inc(M_HS_FAIL);
	metrics_inc(M_HS_TIMEOUT);
	metrics_inc(M_RELOAD_OK);
	metrics_inc(M_RELOAD_FAIL);
	metrics_inc(M_REVOKED_REFUSED);
	metrics_inc(M_AUDIT_WRITE_FAIL);
	metrics_inc(M_UPSTREAM_ERRORS);
	metrics_inc(M_UPSTREAM_TIMEOUTS);
	metrics_inc(M_CONN_REJECTED_LIMIT);
	metrics_status(403);
	metrics_status(403);
	metrics_status(99);	/* ignored */
	metrics_status(600);	/* ignored */
	/* 40000 samples of 3 ms from test_counters, plus these */
	metrics_upstream_latency(0.0005);
	metrics_upstream_latency(0.001);	/* le is inclusive */
	metrics_upstream_latency(0.007);
	metrics_upstream_latency(20);
	metrics_deny("bot", "scope");
	metrics_deny("bot", "scope");
	metrics_deny("we\"ird\\na\nme", "rate");
	metrics_deny(NULL, "unmapped");
	CHECK(metrics_get(M_REQ_DENIED) == 4);
	CHECK(metrics_add_renderer(extra_lines) == 0);
	CHECK(metrics_add_renderer(extra_lines) == 0);   /* twice: once */

	r = metrics_render();
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK(has_line(r, "# TYPE certgate_connections_accepted_total counter"));
	CHECK(strstr(r, "# HELP certgate_connections_accepted_total ") != NULL);
	CHECK(has_line(r, "certgate_connections_accepted_total 2"));
	CHECK(has_line(r, "# TYPE certgate_connections_active gauge"));
	CHECK(has_line(r, "certgate_connections_active 1"));
	CHECK(has_line(r, "certgate_connections_rejected_total 1"));
	CHECK(has_line(r, "certgate_handshakes_total{result=\"ok\"} 1"));
	CHECK(has_line(r, "certgate_handshakes_total{result=\"resumed\"} 2"));
	CHECK(has_line(r, "certgate_handshakes_total{result=\"failed\"} 1"));
	CHECK(has_line(r, "certgate_handshakes_total{result=\"timeout\"} 1"));
	CHECK(has_line(r, "certgate_requests_total{code=\"200\"} 40000"));
	CHECK(has_line(r, "certgate_requests_total{code=\"403\"} 2"));
	CHECK(strstr(r, "code=\"99\"") == NULL && strstr(r, "code=\"600\"") == NULL);
	CHECK(has_line(r, "certgate_requests_denied_total{agent=\"bot\",reason=\"scope\"} 2"));
	CHECK(has_line(r, "certgate_requests_denied_total{agent=\"we\\\"ird\\\\na\\nme\","
	    "reason=\"rate\"} 1"));
	CHECK(has_line(r, "certgate_requests_denied_total{agent=\"-\",reason=\"unmapped\"} 1"));
	CHECK(has_line(r, "certgate_upstream_errors_total 1"));
	CHECK(has_line(r, "certgate_upstream_timeouts_total 1"));
	CHECK(has_line(r, "certgate_reloads_total{result=\"ok\"} 1"));
	CHECK(has_line(r, "certgate_reloads_total{result=\"failed\"} 1"));
	CHECK(has_line(r, "certgate_revoked_refused_total 1"));
	CHECK(has_line(r, "certgate_audit_write_failures_total 1"));
	CHECK(has_line(r, "# TYPE certgate_upstream_latency_seconds histogram"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_bucket{le=\"0.001\"} 2"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_bucket{le=\"0.002\"} 2"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_bucket{le=\"0.005\"} 40002"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_bucket{le=\"0.01\"} 40003"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_bucket{le=\"10\"} 40003"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_bucket{le=\"+Inf\"} 40004"));
	CHECK(has_line(r, "certgate_upstream_latency_seconds_count 40004"));
	/* 40000*0.003 + 0.0005 + 0.001 + 0.007 + 20 (microsecond sums) */
	CHECK(has_line(r, "certgate_upstream_latency_seconds_sum 140.008500"));
	CHECK(has_line(r, "certgate_token_up 1"));
	CHECK(r[strlen(r) - 1] == '\n');
	/* every family has HELP and TYPE; every sample line names a certgate_ metric */
	{
		char *copy = strdup(r), *save = NULL, *line;
		int bad = 0, types = 0;
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "# TYPE ", 7) == 0)
				types++;
			else if (line[0] != '#' && strncmp(line, "certgate_", 9) != 0)
				bad++;
		}
		CHECK(bad == 0);
		CHECK(types >= 14);
		free(copy);
	}
	free(r);

	/* Cap: beyond 10000 pairs new agents fold into "_other". */
	for (i = 0; i < 10100; i++) {
		char a[32];
		snprintf(a, sizeof(a), "agent-%d", i);
		metrics_deny(a, "scope");
	}
	metrics_deny("bot", "scope");	/* existing pairs keep counting */
	metrics_remove_renderer(extra_lines);
	r = metrics_render();
	CHECK(r != NULL);
	if (r == NULL)
		return;
	CHECK(has_line(r, "certgate_requests_denied_total{agent=\"bot\",reason=\"scope\"} 3"));
	CHECK(has_line(r, "certgate_requests_denied_total{agent=\"_other\",reason=\"scope\"} 103"));
	CHECK(strstr(r, "agent=\"agent-10099\"") == NULL);
	CHECK(strstr(r, "certgate_token_up") == NULL);
	free(r);
}

/* Label values are short snake_case: the known reasons by table, anything else made
 * snake_case and cut, never empty. */
static void
test_reason_labels(void)
{
	static const struct {
		const char *reason, *label;
	} cases[] = {
		{ "missing scope", "missing_scope" },
		{ "certificate is not mapped to an agent", "unmapped" },
		{ "rate limited", "rate_limited" },
		{ "session belongs to another agent", "foreign_session" },
		{ "unsupported MCP-Protocol-Version", "bad_protocol_version" },
		{ "encoded '/', '\\', '.' or NUL in request path", "bad_path" },
		{ "request body too large", "body_too_large" },
		{ "argument rule", "argument_rule" },
		{ "client_closed", "client_closed" },           /* close reasons pass as is */
		{ "Bare CR in header section", "bare_cr_in_header_section" },
		{ "  --weird!!  Reason--  ", "weird_reason" },
		{ "a very long reason that goes on and on beyond the limit", "a_very_long_reason_that_goes_on" },
		{ "\xc3\xa9t\xc3\xa9", "t" },
		{ "!!!", "unknown" },
		{ "", "unknown" },
		{ NULL, "unknown" },
	};
	char buf[64];
	const char *l;
	size_t i, k;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		l = metrics_reason_label(cases[i].reason, buf, sizeof(buf));
		CHECK_STR(l, cases[i].label);
		CHECK(strlen(l) <= 32);
		for (k = 0; l[k]; k++)
			CHECK((l[k] >= 'a' && l[k] <= 'z') || (l[k] >= '0' && l[k] <= '9') || l[k] == '_');
	}
	/* a small buffer is respected */
	l = metrics_reason_label("abc def ghi", buf, 5);
	CHECK_STR(l, "abc");
}

int
main(void)
{
	test_counters();
	test_render();
	test_reason_labels();
	CHECK_DONE();
}
