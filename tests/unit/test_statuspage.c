/* statuspage: HTML escaping (table of hostile strings) and a rendered page whose
 * every outside value is hostile: no markup gets through, the figures are there,
 * the page refreshes itself and has no script. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "statuspage.h"

static void
test_escape(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "", "" },
		{ "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;" },
		{ "a&b", "a&amp;b" },
		{ "&amp;", "&amp;amp;" },
		{ "\"quoted\" 'single'", "&quot;quoted&quot; &#39;single&#39;" },
		{ "\" onmouseover=\"x", "&quot; onmouseover=&quot;x" },
		{ "line\nbreak\r\x01\x7f", "linebreak" },
		{ "tab\there", "tab here" },
		{ "caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x94\x91", "caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x94\x91" },
		{ "bad \xff\xfe end", "bad \xef\xbf\xbd\xef\xbf\xbd end" },
		{ "overlong \xc0\xbc", "overlong \xef\xbf\xbd\xef\xbf\xbd" },      /* "<" in 2 bytes */
		{ "surrogate \xed\xa0\x80", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "cut \xe6\x97", "cut \xef\xbf\xbd\xef\xbf\xbd" },
		{ "CN=a,O=<b>&\"c\"", "CN=a,O=&lt;b&gt;&amp;&quot;c&quot;" },
	};
	struct buf b;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_init(&b);
		CHECK(statuspage_escape(&b, cases[i].in) == 0);
		CHECK_STR(buf_str(&b), cases[i].out);
		buf_free(&b);
	}
	buf_init(&b);
	CHECK(statuspage_escape(&b, NULL) == 0);
	CHECK_STR(buf_str(&b), "");
	buf_free(&b);
}

#define EVIL "<img src=x onerror=alert(1)>\"'&"

static void
test_render(void)
{
	struct statuspage_agent agents[2];
	struct activity_denial den[1];
	struct state_reload_ev rel[2];
	struct statuspage_data d;
	struct buf b;
	const char *html;

	memset(&d, 0, sizeof(d));
	memset(agents, 0, sizeof(agents));
	memset(den, 0, sizeof(den));
	memset(rel, 0, sizeof(rel));
	d.now = 1800000000;
	d.started = d.now - 3700;
	d.version = "0.1.0" EVIL;
	d.listen = "127.0.0.1:8443";
	d.upstream = "http://up/" EVIL;
	d.refresh_s = 10;
	d.token = 0;
	d.token_label = EVIL;
	d.module = "/usr/lib/" EVIL;
	d.generation = 7;
	d.crl_next_update = d.now + 1800;       /* within the hour: a problem */
	d.ca_not_after = d.now + 3650 * 86400LL;
	d.server_not_after = d.now - 10;        /* expired */
	d.nca = 1;
	d.nrevoked = 3;
	d.connections = 5;
	d.requests = 1234;
	d.denied = 12;
	agents[0].id = "bot" EVIL;
	agents[0].roles = "member, " EVIL;
	agents[0].cert_not_after = d.now + 3 * 3600;
	agents[0].connections = 2;
	agents[0].requests = 99;
	agents[0].denials = 4;
	agents[0].last_seen = d.now - 5;
	agents[0].last_peer = "10.0.0.1" EVIL;
	agents[0].new_addresses = 1;
	agents[1].id = "gone";
	agents[1].roles = NULL;                 /* seen, no longer in the map */
	d.agents = agents;
	d.nagents = 2;
	den[0].when = d.now - 1;
	snprintf(den[0].agent, sizeof(den[0].agent), "%s", "bot" EVIL);
	snprintf(den[0].peer, sizeof(den[0].peer), "%s", "10.0.0.1:5" EVIL);
	snprintf(den[0].reason, sizeof(den[0].reason), "%s", "missing scope" EVIL);
	snprintf(den[0].what, sizeof(den[0].what), "%s", "tools/call <script>x</script>");
	d.denials = den;
	d.ndenials = 1;
	rel[0].when = d.now - 60;
	rel[0].ok = 0;
	rel[0].generation = 7;
	snprintf(rel[0].what, sizeof(rel[0].what), "%s", "SIGHUP: certgate.json rejected: " EVIL);
	rel[1].when = d.now - 3600;
	rel[1].ok = 1;
	rel[1].generation = 7;
	snprintf(rel[1].what, sizeof(rel[1].what), "%s", "start-up: reloaded");
	d.reloads = rel;
	d.nreloads = 2;

	buf_init(&b);
	CHECK(statuspage_render(&d, &b) == 0);
	html = buf_str(&b);
	/* nothing from outside becomes markup */
	CHECK(strstr(html, "<img") == NULL);
	CHECK(strstr(html, "<script") == NULL);
	CHECK(strstr(html, "onerror=alert(1)>") == NULL);
	CHECK(strstr(html, "&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;") != NULL);
	CHECK(strstr(html, "tools/call &lt;script&gt;x&lt;/script&gt;") != NULL);
	/* a page of its own: doctype, refresh, style, no script at all */
	CHECK(strncmp(html, "<!DOCTYPE html>", 15) == 0);
	CHECK(strstr(html, "<meta http-equiv=\"refresh\" content=\"10\">") != NULL);
	CHECK(strstr(html, "<style>") != NULL);
	CHECK(strstr(html, "</html>\n") != NULL);
	/* the figures */
	CHECK(strstr(html, "<td class=\"num\">1234 / 12</td>") != NULL);
	CHECK(strstr(html, "down (signatures fail; see the log)") != NULL);
	CHECK(strstr(html, "expired 10 s ago") != NULL);
	CHECK(strstr(html, "in 30 min") != NULL);
	CHECK(strstr(html, "in 3650 d 0 h") != NULL);
	CHECK(strstr(html, "Agents (2)") != NULL);
	CHECK(strstr(html, "not in the identity map") != NULL);
	CHECK(strstr(html, "<td class=\"bad\">failed</td>") != NULL);
	CHECK(strstr(html, "up 1 h 1 min") != NULL);
	buf_free(&b);

	/* empty sections say so */
	memset(&d, 0, sizeof(d));
	d.now = 1800000000;
	d.token = -1;
	buf_init(&b);
	CHECK(statuspage_render(&d, &b) == 0);
	html = buf_str(&b);
	CHECK(strstr(html, "No agent in the identity map.") != NULL);
	CHECK(strstr(html, "None since start-up.") != NULL);
	CHECK(strstr(html, "No reload yet.") != NULL);
	CHECK(strstr(html, "http-equiv=\"refresh\"") == NULL);
	CHECK(strstr(html, "not a token key") != NULL);
	buf_free(&b);
}

int
main(void)
{
	test_escape();
	test_render();
	CHECK_DONE();
}
