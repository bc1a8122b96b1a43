/* The per-request HTTP rules (decide.h). */
#include "decide.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "identity.h"
#include "mcp.h"
#include "path.h"
#include "rate.h"
#include "session.h"
#include "state.h"

/* 1 when a header the gateway checks appears twice, or spelt with '_' for '-'. */
static int
decide_dup_header(const struct http_msg *m)
{
	static const char *const once[] = { "Mcp-Session-Id", "Mcp-Method", "Mcp-Name",
	    "MCP-Protocol-Version", "Content-Type", NULL };
	size_t i, j, n;

	for (i = 0; once[i] != NULL; i++) {
		for (j = 0, n = 0; j < m->nh; j++) {
			if (!http_name_eq(m->h[j].name, once[i]))
				continue;
			if (strcasecmp(m->h[j].name, once[i]) != 0 || ++n > 1)
				return 1;
		}
	}
	return 0;
}

static int
decide_refuse(struct decide_http *out, int status, const char *reason, const char *extra)
{
	out->status = status;
	out->reason = reason;
	out->extra = extra;
	return 0;
}

int
decide_http_request(const struct http_msg *m, const char *prefix, struct decide_http *out)
{
	const char *why, *v;
	char *norm = NULL;
	size_t n, cap;

	memset(out, 0, sizeof(*out));
	if (m->method != HTTP_POST && m->method != HTTP_GET && m->method != HTTP_DELETE)
		return decide_refuse(out, 405, "method not allowed",
		    "Allow: GET, POST, DELETE\r\n");
	if (m->method != HTTP_POST && (m->content_length > 0 || m->chunked))
		return decide_refuse(out, 400, "body not allowed on this method", NULL);
	n = strlen(m->url) + 1;
	if ((norm = malloc(n)) == NULL)
		return -1;
	if (path_target_normalize(m->url, norm, n, &why) == -1) {
		free(norm);
		return decide_refuse(out, 400, why, NULL);
	}
	if (decide_dup_header(m)) {
		free(norm);
		return decide_refuse(out, 400, "duplicate MCP header", NULL);
	}
	if ((v = http_msg_get(m, "MCP-Protocol-Version")) != NULL &&
	    !mcp_protocol_version_known(v)) {
		free(norm);
		return decide_refuse(out, 400, "unsupported MCP-Protocol-Version", NULL);
	}
	cap = strlen(norm) + (prefix != NULL ? strlen(prefix) : 0) + 1;
	if ((out->target = malloc(cap)) == NULL) {
		free(norm);
		return -1;
	}
	if (path_under_prefix(prefix, norm, out->target, cap) < 0) {
		free(norm);
		free(out->target);
		out->target = NULL;
		return -1;
	}
	free(norm);
	return 0;
}

/* The first refusal wins: later checks only fill in what they find. */
static void
decide_deny(struct decide_out *out, int status, const char *reason, const char *extra)
{
	if (out->status != 0)
		return;
	out->status = status;
	out->reason = reason;
	out->extra = extra;
}

int
decide_request(const struct decide_ctx *x, const struct http_msg *m,
    struct decide_out *out)
{
	const struct identity_agent *a;
	struct decide_http dh;
	double per, burst, retry = 1;
	const char *v;

	memset(out, 0, sizeof(*out));
	if (x->st == NULL) {
		decide_deny(out, 503, "gateway state unavailable", NULL);
		return 0;
	}
	if (state_is_revoked(x->st, x->peer->issuer, x->peer->serial)) {
		decide_deny(out, DECIDE_CLOSE, "revoked", NULL);
		return 0;
	}
	if (x->st->map == NULL ||
	    (a = out->agent = identity_lookup(x->st->map, x->peer)) == NULL) {
		decide_deny(out, 403, MCP_REASON_UNMAPPED, NULL);
		return 0;
	}
	per = a->rate_per_second > 0 ? a->rate_per_second : x->rate_per_second;
	burst = a->rate_burst > 0 ? a->rate_burst : x->rate_burst;
	if (!rate_take(x->rates, a->id, per, burst, x->now, &retry)) {
		snprintf(out->retry, sizeof(out->retry), "Retry-After: %.0f\r\n",
		    retry < 1 ? 1 : ceil(retry));
		decide_deny(out, 429, "rate limited", out->retry);
	}
	if (decide_http_request(m, x->prefix, &dh) == -1)
		goto oom;
	out->target = dh.target;
	if (dh.status != 0)
		decide_deny(out, dh.status, dh.reason, dh.extra);
	if ((v = http_msg_get(m, "Mcp-Session-Id")) != NULL) {
		if ((out->session = strdup(v)) == NULL)
			goto oom;
		/* An id the gateway did not bind (restart, eviction, ended) could be another
		 * agent's live session: 404 makes the client initialize a new one (MCP). */
		switch (session_check(x->sessions, v, a->id)) {
		case 0:
			decide_deny(out, 403, "session belongs to another agent", NULL);
			break;
		case -1:
			decide_deny(out, 404, "unknown session", NULL);
			out->session_unknown = out->status == 404;
			break;
		}
	}
	return 0;
oom:
	decide_out_free(out);
	return -1;
}

void
decide_out_free(struct decide_out *out)
{
	free(out->target);
	free(out->session);
	out->target = out->session = NULL;
}
