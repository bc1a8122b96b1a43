/* The status page (statuspage.h): data in, HTML out. Every string that comes from
 * outside goes through statuspage_escape; numbers are formatted here. */
#include "statuspage.h"
#include "text.h"

#include <stdio.h>
#include <string.h>

/* How close an expiry is shown as a warning, and as a problem: the thresholds of
 * monitoring/certgate-alerts.yml (agent certificates live a day by default and are
 * renewed at two thirds of it, so only their last hours are worth a colour). */
#define SP_DAY	86400LL
static const struct statuspage_limits {
	long long warn, bad;
} statuspage_crl = { 2 * SP_DAY, 3600 }, statuspage_server = { 14 * SP_DAY, 2 * SP_DAY },
  statuspage_ca = { 90 * SP_DAY, 14 * SP_DAY }, statuspage_agent = { 2 * 3600, 600 };

int
statuspage_escape(struct buf *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t k;

	if (s == NULL)
		return buf_failed(out) ? -1 : 0;
	while (*s) {
		switch (*s) {
		case '&': buf_adds(out, "&amp;"); s++; continue;
		case '<': buf_adds(out, "&lt;"); s++; continue;
		case '>': buf_adds(out, "&gt;"); s++; continue;
		case '"': buf_adds(out, "&quot;"); s++; continue;
		case '\'': buf_adds(out, "&#39;"); s++; continue;
		}
		if (*s < 0x20 || *s == 0x7f) {
			if (*s == '\t')
				buf_addc(out, ' ');
			s++;
			continue;
		}
		if ((k = text_utf8_seq(s, 4, NULL)) == 0) {
			buf_adds(out, "\xef\xbf\xbd");
			s++;
			continue;
		}
		buf_add(out, s, k);
		s += k;
	}
	return buf_failed(out) ? -1 : 0;
}

/* ---- formatting ---- */

static void
statuspage_time(struct buf *b, time_t t)
{
	char s[32];
	struct tm tm;

	if (t == 0) {
		buf_adds(b, "&mdash;");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%SZ", &tm);
	buf_adds(b, s);
}

/* "3 d 4 h", "5 h 2 min", "40 s". */
static void
statuspage_span(struct buf *b, long long s)
{
	if (s < 0)
		s = -s;
	if (s >= 86400)
		buf_addf(b, "%lld d %lld h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		buf_addf(b, "%lld h %lld min", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		buf_addf(b, "%lld min", s / 60);
	else
		buf_addf(b, "%lld s", s);
}

/* A table cell with an expiry time, its distance from now, and a class saying how
 * close it is. */
static void
statuspage_expiry_cell(struct buf *b, time_t now, long long t, const struct statuspage_limits *l)
{
	const char *cls = t == 0 ? "" : t <= now ? "bad" : t - now < l->bad ? "bad" :
	    t - now < l->warn ? "warn" : "ok";

	buf_addf(b, "<td class=\"%s\">", cls);
	if (t == 0) {
		buf_adds(b, "&mdash;</td>");
		return;
	}
	statuspage_time(b, (time_t)t);
	buf_adds(b, " <small>(");
	if (t <= now) {
		buf_adds(b, "expired ");
		statuspage_span(b, now - t);
		buf_adds(b, " ago");
	} else {
		buf_adds(b, "in ");
		statuspage_span(b, t - now);
	}
	buf_adds(b, ")</small></td>");
}

static void
statuspage_cell(struct buf *b, const char *s)
{
	buf_adds(b, "<td>");
	if (s == NULL || *s == '\0')
		buf_adds(b, "&mdash;");
	else
		statuspage_escape(b, s);
	buf_adds(b, "</td>");
}

static void
statuspage_num_cell(struct buf *b, long long v, const char *cls)
{
	buf_addf(b, "<td class=\"num%s%s\">%lld</td>", cls ? " " : "", cls ? cls : "", v);
}

static void
statuspage_row(struct buf *b, const char *label, const char *value, const char *cls)
{
	buf_addf(b, "<tr><th>%s</th><td class=\"%s\">", label, cls ? cls : "");
	statuspage_escape(b, value);
	buf_adds(b, "</td></tr>\n");
}

static const char statuspage_css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}"
    "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}"
    "table{border-collapse:collapse;background:#fff;margin-bottom:.5em}"
    "th,td{border:1px solid #d6d6d6;padding:.25em .6em;text-align:left;vertical-align:top}"
    "thead th{background:#eceff3}tbody th{background:#f5f6f8;font-weight:600}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}"
    ".ok{background:#e7f6e7}.warn{background:#fff4d6}.bad{background:#fbe0e0}"
    ".meta{color:#555}small{color:#555}.empty{color:#777;font-style:italic}"
    ".grid{display:flex;flex-wrap:wrap;gap:1.5em}";

/* ---- sections ---- */

static void
statuspage_overview(struct buf *b, const struct statuspage_data *d)
{
	buf_adds(b, "<div class=\"grid\"><section><h2>Gateway</h2><table>\n");
	statuspage_row(b, "listening on", d->listen, NULL);
	statuspage_row(b, "upstream", d->upstream, NULL);
	buf_addf(b, "<tr><th>configuration generation</th><td class=\"num\">%llu</td></tr>\n",
	    (unsigned long long)d->generation);
	buf_addf(b, "<tr><th>connections open</th><td class=\"num\">%ld</td></tr>\n",
	    d->connections);
	buf_addf(b, "<tr><th>requests / denied</th><td class=\"num\">%lld / %lld</td></tr>\n",
	    d->requests, d->denied);
	buf_addf(b, "<tr><th>handshakes ok / failed</th><td class=\"num\">%lld / %lld</td>"
	    "</tr>\n", d->handshakes_ok, d->handshakes_failed);
	buf_adds(b, "</table></section>\n");

	buf_adds(b, "<section><h2>Signer and HSM</h2><table>\n");
	statuspage_row(b, "token", d->token == 1 ? "ok" : d->token == 0 ?
	    "down (signatures fail; see the log)" : "not a token key (software key)",
	    d->token == 1 ? "ok" : d->token == 0 ? "bad" : "warn");
	statuspage_row(b, "token label", d->token_label, NULL);
	statuspage_row(b, "PKCS#11 module", d->module, NULL);
	buf_addf(b, "<tr><th>health-check logins</th><td class=\"num\">%lld</td></tr>\n",
	    d->token_logins);
	buf_addf(b, "<tr><th>signer threads / busy / queued</th><td class=\"num\">"
	    "%ld / %ld / %ld</td></tr>\n", d->signer_threads, d->signer_busy, d->signer_queued);
	buf_addf(b, "<tr><th>signatures ok / failed / timed out / refused</th>"
	    "<td class=\"num%s\">%ld / %ld / %ld / %ld</td></tr>\n",
	    d->signs_error || d->signs_timeout || d->signs_refused ? " warn" : "",
	    d->signs_ok, d->signs_error, d->signs_timeout, d->signs_refused);
	buf_adds(b, "</table></section>\n");

	buf_adds(b, "<section><h2>Certificates and CRL</h2><table>\n");
	buf_adds(b, "<tr><th>CRL next update</th>");
	statuspage_expiry_cell(b, d->now, (long long)d->crl_next_update, &statuspage_crl);
	buf_addf(b, "</tr>\n<tr><th>CA certificate%s expire%s</th>", d->nca > 1 ? "s (earliest)" :
	    "", d->nca > 1 ? "" : "s");
	statuspage_expiry_cell(b, d->now, (long long)d->ca_not_after, &statuspage_ca);
	buf_adds(b, "</tr>\n<tr><th>server certificate expires</th>");
	statuspage_expiry_cell(b, d->now, (long long)d->server_not_after, &statuspage_server);
	buf_addf(b, "</tr>\n<tr><th>revoked serials</th><td class=\"num\">%zu</td></tr>\n",
	    d->nrevoked);
	buf_adds(b, "</table></section></div>\n");
}

static void
statuspage_agents(struct buf *b, const struct statuspage_data *d)
{
	const struct statuspage_agent *a;
	size_t i;

	buf_addf(b, "<h2 id=\"agents\">Agents (%zu)</h2>\n", d->nagents);
	if (d->nagents == 0) {
		buf_adds(b, "<p class=\"empty\">No agent in the identity map.</p>\n");
		return;
	}
	buf_adds(b, "<table><thead><tr><th>agent</th><th>roles</th>"
	    "<th>certificate expires</th><th>connections</th><th>requests</th>"
	    "<th>denied</th><th>last seen</th><th>from</th><th>new addresses</th></tr>"
	    "</thead><tbody>\n");
	for (i = 0; i < d->nagents; i++) {
		a = &d->agents[i];
		buf_adds(b, "<tr>");
		statuspage_cell(b, a->id);
		if (a->roles == NULL)
			buf_adds(b, "<td class=\"warn\">not in the identity map</td>");
		else
			statuspage_cell(b, a->roles);
		statuspage_expiry_cell(b, d->now, a->cert_not_after, &statuspage_agent);
		statuspage_num_cell(b, a->connections, NULL);
		statuspage_num_cell(b, a->requests, NULL);
		statuspage_num_cell(b, a->denials, a->denials ? "warn" : NULL);
		buf_adds(b, "<td>");
		statuspage_time(b, a->last_seen);
		buf_adds(b, "</td>");
		statuspage_cell(b, a->last_peer);
		statuspage_num_cell(b, a->new_addresses, a->new_addresses ? "warn" : NULL);
		buf_adds(b, "</tr>\n");
	}
	buf_adds(b, "</tbody></table>\n");
}

static void
statuspage_denials(struct buf *b, const struct statuspage_data *d)
{
	const struct activity_denial *x;
	size_t i;

	buf_adds(b, "<h2 id=\"denials\">Recent refusals</h2>\n");
	if (d->ndenials == 0) {
		buf_adds(b, "<p class=\"empty\">None since start-up.</p>\n");
		return;
	}
	buf_adds(b, "<table><thead><tr><th>time</th><th>agent</th><th>peer</th>"
	    "<th>reason</th><th>request</th></tr></thead><tbody>\n");
	for (i = 0; i < d->ndenials; i++) {
		x = &d->denials[i];
		buf_adds(b, "<tr><td>");
		statuspage_time(b, x->when);
		buf_adds(b, "</td>");
		statuspage_cell(b, x->agent[0] ? x->agent : "(unmapped)");
		statuspage_cell(b, x->peer);
		statuspage_cell(b, x->reason);
		statuspage_cell(b, x->what);
		buf_adds(b, "</tr>\n");
	}
	buf_adds(b, "</tbody></table>\n");
}

static void
statuspage_reloads(struct buf *b, const struct statuspage_data *d)
{
	const struct state_reload_ev *r;
	size_t i;

	buf_adds(b, "<h2 id=\"reloads\">Reload history</h2>\n");
	if (d->nreloads == 0) {
		buf_adds(b, "<p class=\"empty\">No reload yet.</p>\n");
		return;
	}
	buf_adds(b, "<table><thead><tr><th>time</th><th>result</th><th>generation</th>"
	    "<th>what</th></tr></thead><tbody>\n");
	for (i = 0; i < d->nreloads; i++) {
		r = &d->reloads[i];
		buf_adds(b, "<tr><td>");
		statuspage_time(b, r->when);
		buf_addf(b, "</td><td class=\"%s\">%s</td><td class=\"num\">%llu</td>",
		    r->ok ? "ok" : "bad", r->ok ? "ok" : "failed",
		    (unsigned long long)r->generation);
		statuspage_cell(b, r->what);
		buf_adds(b, "</tr>\n");
	}
	buf_adds(b, "</tbody></table>\n");
}

int
statuspage_render(const struct statuspage_data *d, struct buf *b)
{
	buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
	if (d->refresh_s > 0)
		buf_addf(b, "<meta http-equiv=\"refresh\" content=\"%d\">\n", d->refresh_s);
	buf_adds(b, "<meta name=\"viewport\" content=\"width=device-width\">\n"
	    "<title>certgate status</title>\n<style>");
	buf_adds(b, statuspage_css);
	buf_adds(b, "</style></head><body>\n<h1>certgate ");
	statuspage_escape(b, d->version);
	buf_adds(b, "</h1>\n<p class=\"meta\">");
	statuspage_time(b, d->now);
	if (d->started != 0) {
		buf_adds(b, " &middot; up ");
		statuspage_span(b, (long long)(d->now - d->started));
	}
	if (d->refresh_s > 0)
		buf_addf(b, " &middot; refreshes every %d s", d->refresh_s);
	buf_adds(b, " &middot; <a href=\"/metrics\">metrics</a> &middot; "
	    "<a href=\"/healthz\">healthz</a></p>\n");
	statuspage_overview(b, d);
	statuspage_agents(b, d);
	statuspage_denials(b, d);
	statuspage_reloads(b, d);
	buf_adds(b, "</body></html>\n");
	return buf_failed(b) ? -1 : 0;
}
