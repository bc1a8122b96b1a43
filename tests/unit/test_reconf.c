/* reconf: which keys apply at run time, the key-by-key diff of two configuration
 * documents (table of cases), and applying the live values. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "reconf.h"

static void
test_kinds(void)
{
	static const struct {
		const char *path;
		enum reconf_kind kind;
	} cases[] = {
		{ "rate.per_second", RECONF_LIVE },
		{ "rate.burst", RECONF_LIVE },
		{ "limits.idle_timeout_ms", RECONF_LIVE },
		{ "limits.max_body_bytes", RECONF_LIVE },
		{ "limits.max_connections_per_ip", RECONF_LIVE },
		{ "audit.on_failure", RECONF_LIVE },
		{ "hsts_max_age", RECONF_LIVE },
		{ "tls.min_version", RECONF_LIVE },
		{ "limits.max_connections", RECONF_RESTART },
		{ "listen", RECONF_RESTART },
		{ "admin", RECONF_RESTART },
		{ "workers", RECONF_RESTART },
		{ "upstream.url", RECONF_RESTART },
		{ "pkcs11.pin_file", RECONF_RESTART },
		{ "tls.key", RECONF_RESTART },
		{ "audit.file", RECONF_RESTART },
		{ "signer.threads", RECONF_RESTART },
		{ "ca.some_key_added_later", RECONF_RESTART },
		{ "rate", RECONF_RESTART },
		{ "rate.per_second.x", RECONF_RESTART },
		{ "", RECONF_RESTART },
		{ NULL, RECONF_RESTART },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(reconf_key_kind(cases[i].path) == cases[i].kind);
}

static char *
join(const struct strlist *l)
{
	size_t i, n = 1;
	char *s;

	for (i = 0; i < l->n; i++)
		n += strlen(l->v[i]) + 1;
	if ((s = calloc(1, n)) == NULL)
		return NULL;
	for (i = 0; i < l->n; i++) {
		if (i)
			strcat(s, " ");
		strcat(s, l->v[i]);
	}
	return s;
}

static void
test_diff(void)
{
	static const struct {
		const char *a, *b;
		const char *live, *restart;     /* space-separated, in order */
	} cases[] = {
		{ "{}", "{}", "", "" },
		{ "{\"rate\":{\"per_second\":50}}", "{\"rate\":{\"per_second\":50.0}}", "", "" },
		{ "{\"rate\":{\"per_second\":50}}", "{\"rate\":{\"per_second\":5}}", "rate.per_second", "" },
		/* "rate" removed: both of its leaves revert to their defaults */
		{ "{\"rate\":{\"per_second\":5,\"burst\":9}}", "{}", "rate.per_second rate.burst", "" },
		/* "rate" added */
		{ "{}", "{\"rate\":{\"burst\":9}}", "rate.burst", "" },
		{ "{\"listen\":\"127.0.0.1:1\",\"rate\":{\"burst\":1}}",
		  "{\"listen\":\"127.0.0.1:2\",\"rate\":{\"burst\":2}}", "rate.burst", "listen" },
		{ "{\"limits\":{\"max_connections\":10,\"idle_timeout_ms\":1000}}",
		  "{\"limits\":{\"max_connections\":20,\"idle_timeout_ms\":2000}}",
		  "limits.idle_timeout_ms", "limits.max_connections" },
		{ "{\"upstream\":{\"url\":\"http://a/\"}}", "{\"upstream\":{\"command\":[\"x\"]}}",
		  "", "upstream.url upstream.command" },
		{ "{\"upstream\":{\"command\":[\"x\",\"a\"]}}", "{\"upstream\":{\"command\":[\"x\",\"b\"]}}",
		  "", "upstream.command" },
		/* an object replaced by a scalar is one leaf */
		{ "{\"admin\":\"127.0.0.1:9\"}", "{\"admin\":null}", "", "admin" },
		{ "{\"tls\":{\"min_version\":\"1.2\"}}", "{\"tls\":\"x\"}", "", "tls" },
		{ "{\"new_key\":{\"deep\":{\"er\":1}}}", "{\"new_key\":{\"deep\":{\"er\":2}}}", "",
		  "new_key.deep.er" },
		{ "{\"audit\":{\"file\":\"a\",\"on_failure\":\"refuse\"}}",
		  "{\"audit\":{\"file\":\"b\",\"on_failure\":\"serve\"}}", "audit.on_failure", "audit.file" },
	};
	struct strlist live, restart;
	json_t *a, *b;
	char *l, *r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&live, 0, sizeof(live));
		memset(&restart, 0, sizeof(restart));
		a = json_loads(cases[i].a, 0, NULL);
		b = json_loads(cases[i].b, 0, NULL);
		CHECK(a != NULL && b != NULL);
		CHECK(reconf_diff(a, b, &live, &restart) == 0);
		l = join(&live);
		r = join(&restart);
		CHECK_STR(l, cases[i].live);
		CHECK_STR(r, cases[i].restart);
		free(l);
		free(r);
		strlist_free(&live);
		strlist_free(&restart);
		json_decref(a);
		json_decref(b);
	}
}

static void
test_apply(void)
{
	struct config dst, src;
	struct strlist paths = { 0 };

	memset(&dst, 0, sizeof(dst));
	memset(&src, 0, sizeof(src));
	dst.rate_per_second = 50;
	dst.rate_burst = 100;
	dst.limits.idle_timeout_ms = 60000;
	dst.limits.max_connections = 10;
	dst.limits.max_body_bytes = 1;
	dst.listen_port = 1;
	src.rate_per_second = 3;
	src.rate_burst = 6;
	src.limits.idle_timeout_ms = 5;
	src.limits.max_connections = 20;
	src.limits.max_body_bytes = 1L << 40;
	src.listen_port = 2;
	CHECK(strlist_addf(&paths, "rate.per_second") == 0);
	CHECK(strlist_addf(&paths, "limits.max_body_bytes") == 0);
	CHECK(strlist_addf(&paths, "limits.max_connections") == 0);   /* not live: ignored */
	CHECK(strlist_addf(&paths, "listen") == 0);                   /* not live: ignored */
	reconf_apply(&dst, &src, &paths);
	CHECK(dst.rate_per_second == 3);
	CHECK(dst.rate_burst == 100);
	CHECK(dst.limits.max_body_bytes == 1L << 40);
	CHECK(dst.limits.idle_timeout_ms == 60000);
	CHECK(dst.limits.max_connections == 10);
	CHECK(dst.listen_port == 1);
	strlist_free(&paths);
}

int
main(void)
{
	test_kinds();
	test_diff();
	test_apply();
	CHECK_DONE();
}
