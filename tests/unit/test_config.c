/* config: a full valid file, defaults, relative paths, the JSON path -> line
 * tokenizer, and every error class reported with the right path and line. */
#include <limits.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "p11.h"

static char tmpdir[] = "/tmp/certgate-config-XXXXXX";
static char dir[1024];	/* realpath of tmpdir */

static void
touch(const char *rel)
{
	char p[PATH_MAX], *slash;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	for (slash = strchr(p + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(p, 0700);
		*slash = '/';
	}
	f = fopen(p, "w");
	if (f) {
		fputs("x\n", f);
		fclose(f);
	}
}

static char *
join(const char *const *lines, size_t n)
{
	size_t len = 0, i;
	char *s;

	for (i = 0; i < n; i++)
		len += strlen(lines[i]) + 1;
	s = calloc(1, len + 1);
	for (i = 0; i < n; i++) {
		strcat(s, lines[i]);
		strcat(s, "\n");
	}
	return s;
}

/* The minimal valid config; tests replace single lines (1-based). */
static const char *const base[] = {
	/*  1 */ "{",
	/*  2 */ "  \"listen\": \"127.0.0.1:8443\",",
	/*  3 */ "  \"upstream\": \"http://127.0.0.1:3000/mcp\",",
	/*  4 */ "  \"tls\": {",
	/*  5 */ "    \"cert\": \"server/cert.pem\",",
	/*  6 */ "    \"key\": \"server/key.pem\",",
	/*  7 */ "    \"ca\": \"ca/ca.pem\",",
	/*  8 */ "    \"crl\": \"ca/crl.pem\"",
	/*  9 */ "  },",
	/* 10 */ "  \"identity_map\": \"agents.json\"",
	/* 11 */ "}",
};
#define NBASE (sizeof(base) / sizeof(base[0]))

/* base with pairs of (line, replacement) ..., terminated by 0 */
static char *
variant(int line, ...)
{
	const char *l[NBASE];
	va_list ap;

	memcpy(l, base, sizeof(l));
	va_start(ap, line);
	while (line > 0) {
		l[line - 1] = va_arg(ap, const char *);
		line = va_arg(ap, int);
	}
	va_end(ap);
	return join(l, NBASE);
}

static int
run(const char *text, int flags, struct config **cfg, struct strlist *errs)
{
	return config_parse(text, strlen(text), "t.json", dir, flags, cfg, errs);
}

static void
dump(const struct strlist *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		fprintf(stderr, "    | %s\n", e->v[i]);
}

/* 1 when some error starts with "t.json:LINE: PATH: " and contains msg. */
static int
has_err(const struct strlist *e, int line, const char *path, const char *msg)
{
	char pre[512];
	size_t i;

	snprintf(pre, sizeof(pre), "t.json:%d: %s: ", line, path);
	for (i = 0; i < e->n; i++)
		if (strncmp(e->v[i], pre, strlen(pre)) == 0 && strstr(e->v[i], msg))
			return 1;
	fprintf(stderr, "  expected \"%s...%s\" in:\n", pre, msg);
	dump(e);
	return 0;
}

/* Expects failure with exactly one error at line/path containing msg. */
static void
expect_one(char *text, int flags, int line, const char *path, const char *msg)
{
	struct strlist e = { 0 };
	struct config *cfg = (struct config *)1;

	CHECK(run(text, flags, &cfg, &e) == -1);
	CHECK(cfg == NULL);
	CHECK(has_err(&e, line, path, msg));
	if (e.n != 1) {
		fprintf(stderr, "  expected 1 error, got %zu:\n", e.n);
		dump(&e);
	}
	CHECK(e.n == 1);
	strlist_free(&e);
	free(text);
}

static struct config *
expect_ok(char *text, int flags)
{
	struct strlist e = { 0 };
	struct config *cfg = NULL;

	CHECK(run(text, flags, &cfg, &e) == 0);
	CHECK(cfg != NULL);
	if (e.n)
		dump(&e);
	CHECK(e.n == 0);
	strlist_free(&e);
	free(text);
	return cfg;
}

static char *
abs_of(const char *rel)
{
	static char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return p;
}

static const char *const full[] = {
	"{",
	"  \"listen\": \"[::1]:9443\",",
	"  \"admin\": \"127.0.0.1:9090\",",
	"  \"workers\": 4,",
	"  \"upstream\": { \"url\": \"https://mcp.example.com/base/mcp\", \"ca\": \"upstream-ca.pem\", \"pool_size\": 8 },",
	"  \"pkcs11\": {",
	"    \"module\": \"lib/module.so\",",
	"    \"token\": \"certgate\",",
	"    \"pin_file\": \"token/user.pin\",",
	"    \"softhsm2_conf\": \"./token/softhsm2.conf\"",
	"  },",
	"  \"tls\": {",
	"    \"cert\": \"server/cert.pem\",",
	"    \"key\": \"pkcs11:token=certgate;object=certgate-server;type=private\",",
	"    \"ca\": \"ca/ca.pem\",",
	"    \"crl\": \"ca/crl.pem\",",
	"    \"crl_check\": true,",
	"    \"allow_extractable_key\": false,",
	"    \"session_tickets\": false,",
	"    \"min_version\": \"1.3\"",
	"  },",
	"  \"ca\": {",
	"    \"key\": \"pkcs11:token=certgate;object=certgate-ca;type=private\",",
	"    \"cert\": \"ca/ca.pem\",",
	"    \"db\": \"ca/index.txt\",",
	"    \"certs_dir\": \"ca/certs\",",
	"    \"crl\": \"ca/crl.pem\",",
	"    \"agents_dir\": \"agents\",",
	"    \"audit\": \"/var/log/ca-audit.jsonl\",",
	"    \"trust_domain\": \"example.org\",",
	"    \"crl_hours\": 48,",
	"    \"default_hours\": 12,",
	"    \"server_days\": 30,",
	"    \"ca_days\": 365",
	"  },",
	"  \"identity_map\": \"agents.json\",",
	"  \"audit\": { \"file\": \"audit.jsonl\", \"on_failure\": \"serve\" },",
	"  \"rate\": { \"per_second\": 2.5, \"burst\": 10 },",
	"  \"limits\": {",
	"    \"handshake_timeout_ms\": 1000,",
	"    \"header_timeout_ms\": 2000,",
	"    \"body_timeout_ms\": 3000,",
	"    \"idle_timeout_ms\": 4000,",
	"    \"upstream_connect_timeout_ms\": 5000,",
	"    \"upstream_response_timeout_ms\": 6000,",
	"    \"stream_idle_timeout_ms\": 7000,",
	"    \"grace_ms\": 8000,",
	"    \"max_connections\": 9000,",
	"    \"max_connections_per_ip\": 90,",
	"    \"max_header_bytes\": 8192,",
	"    \"max_header_count\": 50,",
	"    \"max_body_bytes\": 8589934592",
	"  },",
	"  \"hsts_max_age\": 600",
	"}",
};

static void
test_full(void)
{
	char path[PATH_MAX], *text = join(full, sizeof(full) / sizeof(full[0]));
	struct strlist e = { 0 };
	struct config *cfg = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/certgate.json", dir);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	free(text);
	CHECK(config_load(path, CONFIG_CHECK_FILES, &cfg, &e) == 0);
	dump(&e);
	CHECK(e.n == 0);
	strlist_free(&e);
	if (cfg == NULL)
		return;
	CHECK_STR(cfg->path, path);
	CHECK_STR(cfg->dir, dir);
	CHECK_STR(cfg->listen_host, "::1");
	CHECK(cfg->listen_port == 9443);
	CHECK_STR(cfg->admin_host, "127.0.0.1");
	CHECK(cfg->admin_port == 9090);
	CHECK(cfg->workers == 4);
	CHECK_STR(cfg->upstream.url, "https://mcp.example.com/base/mcp");
	CHECK(cfg->upstream.tls == 1);
	CHECK_STR(cfg->upstream.host, "mcp.example.com");
	CHECK(cfg->upstream.port == 443);
	CHECK_STR(cfg->upstream.path, "/base/mcp");
	CHECK_STR(cfg->upstream.ca, abs_of("upstream-ca.pem"));
	CHECK(cfg->upstream.pool_size == 8);
	CHECK_STR(cfg->pkcs11.module, abs_of("lib/module.so"));
	CHECK_STR(cfg->pkcs11.token, "certgate");
	CHECK_STR(cfg->pkcs11.pin_file, abs_of("token/user.pin"));
	CHECK(cfg->pkcs11.pin_env == NULL);
	CHECK_STR(cfg->pkcs11.softhsm2_conf, abs_of("token/softhsm2.conf"));
	CHECK_STR(cfg->tls.cert, abs_of("server/cert.pem"));
	CHECK_STR(cfg->tls.key, "pkcs11:token=certgate;object=certgate-server;type=private");
	CHECK_STR(cfg->tls.ca, abs_of("ca/ca.pem"));
	CHECK_STR(cfg->tls.crl, abs_of("ca/crl.pem"));
	CHECK(cfg->tls.crl_check == 1);
	CHECK(cfg->tls.allow_extractable_key == 0);
	CHECK(cfg->tls.session_tickets == 0);
	CHECK(cfg->tls.min_version == TLS1_3_VERSION);
	CHECK_STR(cfg->ca.key, "pkcs11:token=certgate;object=certgate-ca;type=private");
	CHECK_STR(cfg->ca.cert, abs_of("ca/ca.pem"));
	CHECK_STR(cfg->ca.db, abs_of("ca/index.txt"));
	CHECK_STR(cfg->ca.certs_dir, abs_of("ca/certs"));
	CHECK_STR(cfg->ca.crl, abs_of("ca/crl.pem"));
	CHECK_STR(cfg->ca.agents_dir, abs_of("agents"));
	CHECK_STR(cfg->ca.audit, "/var/log/ca-audit.jsonl");
	CHECK_STR(cfg->ca.trust_domain, "example.org");
	CHECK(cfg->ca.crl_hours == 48 && cfg->ca.default_hours == 12);
	CHECK(cfg->ca.server_days == 30 && cfg->ca.ca_days == 365);
	CHECK_STR(cfg->identity_map, abs_of("agents.json"));
	CHECK_STR(cfg->audit_file, abs_of("audit.jsonl"));
	CHECK(cfg->audit_fail_open == 1);
	CHECK(cfg->rate_per_second == 2.5 && cfg->rate_burst == 10);
	CHECK(cfg->limits.handshake_timeout_ms == 1000);
	CHECK(cfg->limits.header_timeout_ms == 2000);
	CHECK(cfg->limits.body_timeout_ms == 3000);
	CHECK(cfg->limits.idle_timeout_ms == 4000);
	CHECK(cfg->limits.upstream_connect_timeout_ms == 5000);
	CHECK(cfg->limits.upstream_response_timeout_ms == 6000);
	CHECK(cfg->limits.stream_idle_timeout_ms == 7000);
	CHECK(cfg->limits.grace_ms == 8000);
	CHECK(cfg->limits.max_connections == 9000);
	CHECK(cfg->limits.max_connections_per_ip == 90);
	CHECK(cfg->limits.max_header_bytes == 8192);
	CHECK(cfg->limits.max_header_count == 50);
	CHECK(cfg->limits.max_body_bytes == 8589934592L);
	CHECK(cfg->hsts_max_age == 600);
	config_free(cfg);

	/* a relative config path still yields an absolute dir */
	{
		char cwd[PATH_MAX];
		CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
		CHECK(chdir(dir) == 0);
		cfg = NULL;
		CHECK(config_load("certgate.json", CONFIG_CHECK_FILES, &cfg, &e) == 0);
		if (cfg) {
			CHECK_STR(cfg->dir, dir);
			CHECK_STR(cfg->tls.cert, abs_of("server/cert.pem"));
			CHECK_STR(cfg->path, path);
		}
		config_free(cfg);
		CHECK(chdir(cwd) == 0);
	}
	/* missing file */
	cfg = (struct config *)1;
	CHECK(config_load("/nonexistent/certgate.json", 0, &cfg, &e) == -1);
	CHECK(cfg == NULL);
	CHECK(e.n == 1 && strncmp(e.v[0], "/nonexistent/certgate.json:0: $: cannot read", 44) == 0);
	strlist_free(&e);
}

static void
test_defaults(void)
{
	struct config *cfg;

	cfg = expect_ok(variant(2, "  \"workers\": 0,",
	    3, "  \"upstream\": { \"url\": \"http://localhost\" },", 0), CONFIG_CHECK_FILES);
	if (cfg == NULL)
		return;
	CHECK_STR(cfg->listen_host, "127.0.0.1");
	CHECK(cfg->listen_port == 8443);
	CHECK(cfg->admin_host == NULL);
	CHECK(cfg->workers == 0);
	CHECK(cfg->upstream.tls == 0);
	CHECK_STR(cfg->upstream.host, "localhost");
	CHECK(cfg->upstream.port == 80);
	CHECK_STR(cfg->upstream.path, "/");
	CHECK(cfg->upstream.ca == NULL);
	CHECK(cfg->upstream.pool_size == 16);
	CHECK_STR(cfg->tls.key, abs_of("server/key.pem"));
	CHECK(cfg->tls.crl_check == 1);
	CHECK(cfg->tls.allow_extractable_key == 0);
	CHECK(cfg->tls.session_tickets == 1);
	CHECK(cfg->tls.min_version == TLS1_2_VERSION);
	CHECK(cfg->pkcs11.module == NULL && cfg->pkcs11.token == NULL);
	CHECK(cfg->ca.key == NULL);
	CHECK_STR(cfg->ca.cert, abs_of("ca/ca.pem"));
	CHECK_STR(cfg->ca.db, abs_of("ca/index.txt"));
	CHECK_STR(cfg->ca.certs_dir, abs_of("ca/certs"));
	CHECK_STR(cfg->ca.crl, abs_of("ca/crl.pem"));
	CHECK_STR(cfg->ca.agents_dir, abs_of("agents"));
	CHECK_STR(cfg->ca.audit, abs_of("ca-audit.jsonl"));
	CHECK_STR(cfg->ca.trust_domain, "certgate.local");
	CHECK(cfg->ca.crl_hours == 168 && cfg->ca.default_hours == 24);
	CHECK(cfg->ca.server_days == 365 && cfg->ca.ca_days == 3650);
	CHECK(cfg->limits.handshake_timeout_ms == 10000);
	CHECK(cfg->limits.header_timeout_ms == 10000);
	CHECK(cfg->limits.body_timeout_ms == 30000);
	CHECK(cfg->limits.idle_timeout_ms == 60000);
	CHECK(cfg->limits.upstream_connect_timeout_ms == 5000);
	CHECK(cfg->limits.upstream_response_timeout_ms == 60000);
	CHECK(cfg->limits.stream_idle_timeout_ms == 300000);
	CHECK(cfg->limits.grace_ms == 10000);
	CHECK(cfg->limits.max_connections == 0);     /* not set: daemon.c decides */
	CHECK(cfg->limits.max_connections_per_ip == 1000);
	CHECK(cfg->limits.max_header_bytes == 16384);
	CHECK(cfg->limits.max_header_count == 100);
	CHECK(cfg->limits.max_body_bytes == 4194304);
	CHECK(cfg->audit_file == NULL);
	CHECK(cfg->audit_fail_open == 0);
	CHECK(cfg->rate_per_second == 50 && cfg->rate_burst == 100);
	CHECK(cfg->hsts_max_age == 31536000);
	config_free(cfg);

	/* accepted variants */
	cfg = expect_ok(variant(2, "  \"listen\": \"[::]:1\", \"admin\": null, \"audit\": {\"file\": \"-\"},",
	    3, "  \"upstream\": \"HTTPS://[fd00::1]:8443\",", 0), 0);
	if (cfg) {
		CHECK_STR(cfg->listen_host, "::");
		CHECK(cfg->listen_port == 1);
		CHECK(cfg->admin_host == NULL);
		CHECK(cfg->audit_file == NULL);
		CHECK(cfg->upstream.tls == 1);
		CHECK_STR(cfg->upstream.host, "fd00::1");
		CHECK(cfg->upstream.port == 8443);
		CHECK_STR(cfg->upstream.path, "/");
	}
	config_free(cfg);
	cfg = expect_ok(variant(2, "  \"listen\": \"localhost:65535\", \"admin\": \"\",",
	    6, "    \"key\": \"/abs/key.pem\",", 8, "    \"crl_check\": false", 0), 0);
	if (cfg) {
		CHECK_STR(cfg->listen_host, "localhost");
		CHECK(cfg->listen_port == 65535);
		CHECK(cfg->admin_host == NULL);
		CHECK_STR(cfg->tls.key, "/abs/key.pem");
		CHECK(cfg->tls.crl_check == 0);
		CHECK(cfg->tls.crl == NULL);
		CHECK_STR(cfg->ca.crl, abs_of("ca/crl.pem"));
	}
	config_free(cfg);
	cfg = expect_ok(variant(8, "    \"crl\": \"x/other.pem\"", 0), 0);
	if (cfg)
		CHECK_STR(cfg->ca.crl, abs_of("x/other.pem"));
	config_free(cfg);
}

static void
test_linemap(void)
{
	const char *t =
	    "{\"a\": 1,\n"					/* 1 */
	    " \"s\": \"x{\\\"[,}\\n\\\\\",\n"			/* 2: string with escapes */
	    " \"arr\": [\n"					/* 3 */
	    "   1,\n"					/* 4 */
	    "   {\"k\": [\n"					/* 5 */
	    "     true, null]},\n"				/* 6 */
	    "   \"two\\nlines\"\n"				/* 7 */
	    " ],\n"						/* 8 */
	    " \"we ird\\\"\": {\"\\u0041b\": \n"		/* 9 */
	    "   2}\n"					/* 10 */
	    "}\n";

	CHECK(config_line_of(t, strlen(t), "$") == 1);
	CHECK(config_line_of(t, strlen(t), "$.a") == 1);
	CHECK(config_line_of(t, strlen(t), "$.s") == 2);
	CHECK(config_line_of(t, strlen(t), "$.arr") == 3);
	CHECK(config_line_of(t, strlen(t), "$.arr[0]") == 4);
	CHECK(config_line_of(t, strlen(t), "$.arr[1]") == 5);
	CHECK(config_line_of(t, strlen(t), "$.arr[1].k") == 5);
	CHECK(config_line_of(t, strlen(t), "$.arr[1].k[0]") == 6);
	CHECK(config_line_of(t, strlen(t), "$.arr[1].k[1]") == 6);
	CHECK(config_line_of(t, strlen(t), "$.arr[2]") == 7);
	CHECK(config_line_of(t, strlen(t), "$[\"we ird\\\"\"]") == 9);
	CHECK(config_line_of(t, strlen(t), "$[\"we ird\\\"\"].Ab") == 10);
	/* absent paths fall back to the nearest ancestor */
	CHECK(config_line_of(t, strlen(t), "$.arr[1].missing") == 5);
	CHECK(config_line_of(t, strlen(t), "$[\"we ird\\\"\"].x.y") == 9);
	CHECK(config_line_of(t, strlen(t), "$.nope") == 1);
	CHECK(config_line_of("\n\n  [1]", 7, "$[0]") == 3);
	CHECK(config_line_of("", 0, "$") == 0);
	CHECK(config_line_of("{\"a\": [", 7, "$.a") == 1);	/* truncated: no crash */
}

static void
test_errors(void)
{
	struct strlist e = { 0 };
	struct config *cfg = NULL;
	char *t;

	/* unknown key, with a suggestion; exact format */
	t = variant(2, "  \"listn\": \"127.0.0.1:8443\",", 0);
	CHECK(run(t, 0, &cfg, &e) == -1);
	CHECK(e.n == 1);
	if (e.n == 1)
		CHECK_STR(e.v[0], "t.json:2: $.listn: unknown key (did you mean \"listen\"?)");
	strlist_free(&e);
	free(t);
	expect_one(variant(8, "    \"crl\": \"ca/crl.pem\", \"crl_chek\": true", 0), 0,
	    8, "$.tls.crl_chek", "did you mean \"crl_check\"");
	expect_one(variant(10, "  \"identity_map\": \"agents.json\", \"zzz\": {\"a\": [1, 2]}", 0), 0,
	    10, "$.zzz", "unknown key");

	/* wrong types */
	expect_one(variant(8, "    \"crl\": 5", 0), 0, 8, "$.tls.crl", "must be a string");
	expect_one(variant(8, "    \"crl\": \"ca/crl.pem\", \"crl_check\": \"yes\"", 0), 0,
	    8, "$.tls.crl_check", "must be true or false");
	expect_one(variant(2, "  \"workers\": 1.5,", 0), 0, 2, "$.workers", "must be an integer");
	expect_one(variant(2, "  \"rate\": [],", 0), 0, 2, "$.rate", "must be an object");
	expect_one(variant(3, "  \"upstream\": 80,", 0), 0, 3, "$.upstream",
	    "must be a URL string or an object");
	expect_one(variant(2, "  \"rate\": {\"per_second\": 0},", 0), 0, 2, "$.rate.per_second",
	    "greater than 0");
	expect_one(variant(10, "  \"identity_map\": \"\"", 0), 0, 10, "$.identity_map",
	    "must not be empty");

	/* ranges */
	expect_one(variant(2, "  \"listen\": \"127.0.0.1:70000\",", 0), 0, 2, "$.listen",
	    "between 1 and 65535");
	expect_one(variant(2, "  \"listen\": \"127.0.0.1:0\",", 0), 0, 2, "$.listen",
	    "between 1 and 65535");
	expect_one(variant(2, "  \"workers\": 257,", 0), 0, 2, "$.workers", "between 0 and 256");
	expect_one(variant(2, "  \"limits\": {",
	    3, "    \"idle_timeout_ms\": 0 }, \"upstream\": \"http://h\",", 0), 0,
	    3, "$.limits.idle_timeout_ms", "at least 1");
	expect_one(variant(3, "  \"upstream\": {\"url\": \"http://h\", \"pool_size\": -1},", 0), 0,
	    3, "$.upstream.pool_size", "between 0 and 4096");

	/* bad listen / admin */
	expect_one(variant(2, "  \"listen\": \"localhost\",", 0), 0, 2, "$.listen", "HOST:PORT");
	expect_one(variant(2, "  \"listen\": \"::1:8443\",", 0), 0, 2, "$.listen", "brackets");
	expect_one(variant(2, "  \"listen\": \"[::zz]:8443\",", 0), 0, 2, "$.listen", "IPv6");
	expect_one(variant(2, "  \"listen\": \":8443\",", 0), 0, 2, "$.listen", "missing host");
	expect_one(variant(2, "  \"listen\": \"h:8443\", \"admin\": \"bad host:1\",", 0), 0,
	    2, "$.admin", "invalid host");

	/* upstream URL */
	expect_one(variant(3, "  \"upstream\": \"ftp://127.0.0.1/\",", 0), 0, 3, "$.upstream",
	    "http:// or https://");
	expect_one(variant(3, "  \"upstream\": {\n    \"url\": \"127.0.0.1:3000\"},", 0), 0,
	    4, "$.upstream.url", "http:// or https://");
	expect_one(variant(3, "  \"upstream\": \"http://h:99999/\",", 0), 0, 3, "$.upstream",
	    "port");
	expect_one(variant(3, "  \"upstream\": \"http:///mcp\",", 0), 0, 3, "$.upstream",
	    "missing host");
	expect_one(variant(3, "  \"upstream\": \"http://u:p@h/\",", 0), 0, 3, "$.upstream",
	    "user info");

	/* enums */
	expect_one(variant(8, "    \"crl\": \"c\", \"min_version\": \"1.1\"", 0), 0, 8,
	    "$.tls.min_version", "\"1.2\" or \"1.3\"");
	expect_one(variant(2, "  \"audit\": {\"on_failure\": \"ignore\"},", 0), 0, 2,
	    "$.audit.on_failure", "\"refuse\" or \"serve\"");

	/* missing required fields: reported at the object that should hold them */
	expect_one(variant(9, "  }", 10, "", 0), 0, 1, "$.identity_map", "required field is missing");
	expect_one(variant(5, "", 0), 0, 4, "$.tls.cert", "required field is missing");
	expect_one(variant(7, "", 0), 0, 4, "$.tls.ca", "required field is missing");
	expect_one(variant(6, "", 0), 0, 4, "$.tls.key", "required field is missing");
	expect_one(variant(3, "", 0), 0, 1, "$.upstream", "required field is missing");
	expect_one(variant(3, "  \"upstream\": {\n  \"pool_size\": 1},", 0), 0, 3, "$.upstream.url",
	    "required field is missing");

	/* cross-field: crl_check without crl */
	expect_one(variant(8, "    \"crl_check\": true", 0), 0, 4, "$.tls.crl", "crl_check");
}

static void
test_files(void)
{
	struct config *cfg;
	char p[PATH_MAX];

	/* without CONFIG_CHECK_FILES nothing needs to exist */
	cfg = expect_ok(variant(5, "    \"cert\": \"nope/cert.pem\",",
	    6, "    \"key\": \"nope/key.pem\",", 0), 0);
	config_free(cfg);
	expect_one(variant(5, "    \"cert\": \"nope/cert.pem\",", 0), CONFIG_CHECK_FILES, 5,
	    "$.tls.cert", "cannot read");
	expect_one(variant(6, "    \"key\": \"nope/key.pem\",", 0), CONFIG_CHECK_FILES, 6,
	    "$.tls.key", "not a pkcs11: URI or readable PEM file");
	expect_one(variant(10, "  \"identity_map\": \"nope.json\"", 0), CONFIG_CHECK_FILES, 10,
	    "$.identity_map", "No such file");
	expect_one(variant(8, "    \"crl\": \"ca\"", 0), CONFIG_CHECK_FILES, 8,
	    "$.tls.crl", "is a directory");
	/* crl not needed when crl_check is off */
	cfg = expect_ok(variant(8, "    \"crl\": \"nope.pem\", \"crl_check\": false", 0),
	    CONFIG_CHECK_FILES);
	config_free(cfg);
	/* an unreadable file (skip as root: root reads everything) */
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/ca/ca.pem", dir);
		chmod(p, 0);
		expect_one(variant(0), CONFIG_CHECK_FILES, 7, "$.tls.ca", "Permission denied");
		chmod(p, 0600);
	}
}

static void
test_pkcs11(void)
{
	struct config *cfg;
	const char *key = "    \"key\": \"pkcs11:token=certgate;object=certgate-server;type=private\",";
	struct strlist e = { 0 };
	char *t;

	/* pkcs11 key without module/token/pin */
	t = variant(6, "    \"key\": \"pkcs11:object=certgate-server;type=private\",", 0);
	CHECK(run(t, 0, &cfg, &e) == -1);
	CHECK(has_err(&e, 1, "$.pkcs11.module", "required"));
	CHECK(has_err(&e, 1, "$.pkcs11.token", "required"));
	CHECK(has_err(&e, 1, "$.pkcs11.pin_file", "pin_file or pin_env"));
	CHECK(e.n == 3);
	strlist_free(&e);
	free(t);

	/* the pkcs11 object present but incomplete: errors point at it */
	expect_one(variant(6, key, 2, "  \"pkcs11\": {\"token\": \"certgate\", \"pin_env\": \"PIN\"},", 0),
	    0, 2, "$.pkcs11.module", "required");
	expect_one(variant(6, key, 2, "  \"pkcs11\": {\"module\": \"m.so\", \"token\": \"t\"},", 0),
	    0, 2, "$.pkcs11.pin_file", "pin_file or pin_env");
	expect_one(variant(6, key, 2, "  \"pkcs11\": {\"module\": \"m.so\", \"token\": \"t\", "
	    "\"pin_env\": \"1X\"},", 0), 0, 2, "$.pkcs11.pin_env", "environment variable");

	/* everything in the URI */
	cfg = expect_ok(variant(6, "    \"key\": \"pkcs11:token=certgate;object=srv"
	    "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/x/pin\",", 0), 0);
	if (cfg)
		CHECK(cfg->pkcs11.module == NULL);
	config_free(cfg);
	/* module/token from the pkcs11 object, PIN from the environment */
	cfg = expect_ok(variant(6, key, 2, "  \"pkcs11\": {\"module\": \"/m.so\", \"token\": \"t\", "
	    "\"pin_env\": \"CERTGATE_PIN\"},", 0), 0);
	if (cfg) {
		CHECK_STR(cfg->pkcs11.pin_env, "CERTGATE_PIN");
		CHECK_STR(cfg->pkcs11.module, "/m.so");
	}
	config_free(cfg);

	/* malformed URIs */
	expect_one(variant(6, "    \"key\": \"pkcs11:token=t;bogus=1\",", 2,
	    "  \"pkcs11\": {\"module\": \"/m.so\", \"token\": \"t\", \"pin_env\": \"P\"},", 0), 0,
	    6, "$.tls.key", "invalid pkcs11: URI");
	expect_one(variant(2, "  \"ca\": {\"key\": \"ca/key.pem\"},", 0), 0, 2, "$.ca.key",
	    "must be a pkcs11: URI");
	expect_one(variant(2, "  \"ca\": {\"key\": \"pkcs11:object=a;object=b\"},", 0), 0, 2,
	    "$.ca.key", "invalid pkcs11: URI");
	expect_one(variant(2, "  \"ca\": {\"trust_domain\": \"@TRUST_DOMAIN@\"},", 0), 0, 2,
	    "$.ca.trust_domain", "SPIFFE");
	/* missing module with CONFIG_CHECK_FILES */
	expect_one(variant(6, key, 2, "  \"pkcs11\": {\"module\": \"/nonexistent/m.so\", "
	    "\"token\": \"t\", \"pin_file\": \"token/user.pin\"},", 0), CONFIG_CHECK_FILES,
	    2, "$.pkcs11.module", "cannot read /nonexistent/m.so");
}

static void
test_json_errors(void)
{
	struct strlist e = { 0 };
	struct config *cfg = (struct config *)1;
	char *t;

	/* missing comma at the end of line 5: jansson notices on line 6 */
	expect_one(variant(5, "    \"cert\": \"server/cert.pem\"", 0), 0, 6, "$", "invalid JSON");
	/* duplicate key */
	expect_one(variant(7, "    \"cert\": \"ca/ca.pem\",", 0), 0, 7, "$.tls.cert", "duplicate key");
	expect_one(strdup("[1, 2]"), 0, 1, "$", "must be a JSON object");
	expect_one(strdup(""), 0, 1, "$", "invalid JSON");
	expect_one(strdup("{\n\n \"a\": tru }"), 0, 3, "$", "invalid JSON");

	/* several errors in one file: all reported, in line order */
	t = variant(2, "  \"listen\": \"127.0.0.1\", \"workers\": -1,",
	    3, "  \"upstream\": \"gopher://x\",",
	    5, "    \"cert\": 7, \"typo\": 1,",
	    8, "    \"crl_check\": 1",
	    10, "  \"identity_map\": \"nope.json\", \"limits\": {\"grace_ms\": 0}", 0);
	CHECK(run(t, CONFIG_CHECK_FILES, &cfg, &e) == -1);
	CHECK(cfg == NULL);
	CHECK(has_err(&e, 2, "$.listen", "HOST:PORT"));
	CHECK(has_err(&e, 2, "$.workers", "between 0 and 256"));
	CHECK(has_err(&e, 3, "$.upstream", "http://"));
	CHECK(has_err(&e, 5, "$.tls.cert", "must be a string"));
	CHECK(has_err(&e, 5, "$.tls.typo", "unknown key"));
	CHECK(has_err(&e, 8, "$.tls.crl_check", "true or false"));
	CHECK(has_err(&e, 10, "$.identity_map", "cannot read"));
	CHECK(has_err(&e, 10, "$.limits.grace_ms", "at least 1"));
	CHECK(e.n == 8);
	if (e.n == 8) {
		size_t i;
		int sorted = 1;
		for (i = 1; i < e.n; i++)
			if (atoi(e.v[i] + 7) < atoi(e.v[i - 1] + 7))
				sorted = 0;
		CHECK(sorted);
	}
	strlist_free(&e);
	free(t);
}

/* signer: defaults, a full section, ranges and unknown keys. */
static void
test_signer(void)
{
	struct config *cfg;

	cfg = expect_ok(variant(0), 0);
	if (cfg) {
		CHECK(cfg->signer.async == 1);
		CHECK(cfg->signer.threads == 8);
		CHECK(cfg->signer.queue == 256);
		CHECK(cfg->signer.timeout_ms == 5000);
	}
	config_free(cfg);
	cfg = expect_ok(variant(2, "  \"listen\": \"127.0.0.1:8443\", \"signer\": { \"async\": false, "
	    "\"threads\": 2, \"queue\": 0, \"timeout_ms\": 250 },", 0), 0);
	if (cfg) {
		CHECK(cfg->signer.async == 0);
		CHECK(cfg->signer.threads == 2);
		CHECK(cfg->signer.queue == 0);
		CHECK(cfg->signer.timeout_ms == 250);
	}
	config_free(cfg);
	expect_one(variant(2, "  \"signer\": { \"threads\": 0 },", 0), 0, 2,
	    "$.signer.threads", "between 1 and 256");
	expect_one(variant(2, "  \"signer\": { \"queue\": -1 },", 0), 0, 2,
	    "$.signer.queue", "between 0 and 1000000");
	expect_one(variant(2, "  \"signer\": { \"timeout_ms\": 0 },", 0), 0, 2,
	    "$.signer.timeout_ms", "between 1 and 600000");
	expect_one(variant(2, "  \"signer\": { \"async\": 1 },", 0), 0, 2,
	    "$.signer.async", "must be true or false");
	expect_one(variant(2, "  \"signer\": { \"thread\": 4 },", 0), 0, 2,
	    "$.signer.thread", "did you mean \"threads\"");
	expect_one(variant(2, "  \"signer\": 8,", 0), 0, 2, "$.signer", "must be an object");
}

/* upstream.command/env/max_processes/idle_timeout_ms and mcp.validate_arguments */
static void
test_stdio_upstream(void)
{
	struct config *cfg;

	cfg = expect_ok(variant(3, "  \"upstream\": { \"command\": [\"sh\", \"-c\", \"\", \"x y\"], "
	    "\"env\": { \"ROOT\": \"/srv\", \"EMPTY\": \"\" }, \"max_processes\": 4, "
	    "\"idle_timeout_ms\": 5000 }, \"mcp\": { \"validate_arguments\": true },", 0),
	    CONFIG_CHECK_FILES);
	if (cfg != NULL) {
		CHECK(cfg->upstream.url == NULL && cfg->upstream.host == NULL);
		CHECK(cfg->upstream.ncommand == 4);
		CHECK_STR(cfg->upstream.command[0], "sh");
		CHECK_STR(cfg->upstream.command[2], "");
		CHECK_STR(cfg->upstream.command[3], "x y");
		CHECK(cfg->upstream.command[4] == NULL);
		CHECK(cfg->upstream.nenv == 2);
		CHECK_STR(cfg->upstream.env[0], "ROOT=/srv");
		CHECK_STR(cfg->upstream.env[1], "EMPTY=");
		CHECK(cfg->upstream.env[2] == NULL);
		CHECK(cfg->upstream.max_processes == 4);
		CHECK(cfg->upstream.idle_timeout_ms == 5000);
		CHECK(cfg->mcp.validate_arguments == 1);
	}
	config_free(cfg);
	/* defaults; a relative program with a slash is resolved against the config dir */
	cfg = expect_ok(variant(3, "  \"upstream\": { \"command\": [\"bin/server\"] },", 0), 0);
	if (cfg != NULL) {
		CHECK_STR(cfg->upstream.command[0], abs_of("bin/server"));
		CHECK(cfg->upstream.env == NULL && cfg->upstream.nenv == 0);
		CHECK(cfg->upstream.max_processes == 32);
		CHECK(cfg->upstream.idle_timeout_ms == 300000);
		CHECK(cfg->mcp.validate_arguments == 0);
	}
	config_free(cfg);

	expect_one(variant(3, "  \"upstream\": { \"url\": \"http://h\", \"command\": [\"sh\"] },", 0), 0,
	    3, "$.upstream.command", "mutually exclusive");
	expect_one(variant(3, "  \"upstream\": { \"max_processes\": 3 },", 0), 0,
	    3, "$.upstream.url", "required field is missing (or \"command\"");
	expect_one(variant(3, "  \"upstream\": { \"command\": [] },", 0), 0,
	    3, "$.upstream.command", "non-empty array of strings");
	expect_one(variant(3, "  \"upstream\": { \"command\": \"sh -c x\" },", 0), 0,
	    3, "$.upstream.command", "non-empty array of strings");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"\"] },", 0), 0,
	    3, "$.upstream.command[0]", "non-empty string");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\", 5] },", 0), 0,
	    3, "$.upstream.command[1]", "must be a string");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"env\": [\"A=1\"] },", 0), 0,
	    3, "$.upstream.env", "must be an object of strings");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"env\": {\"A-B\": \"1\"} },", 0), 0,
	    3, "$.upstream.env.A-B", "\"A-B\" is not an environment variable name");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"env\": {\"1A\": \"1\"} },", 0), 0,
	    3, "$.upstream.env[\"1A\"]", "not an environment variable name");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"env\": {\"A\": 1} },", 0), 0,
	    3, "$.upstream.env.A", "must be a string without NUL");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"max_processes\": 0 },", 0), 0,
	    3, "$.upstream.max_processes", "between 1 and 100000");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"idle_timeout_ms\": 10 },", 0), 0,
	    3, "$.upstream.idle_timeout_ms", "at least 1000");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"pool_size\": 2 },", 0), 0,
	    3, "$.upstream.pool_size", "only valid with \"url\"");
	expect_one(variant(3, "  \"upstream\": { \"url\": \"http://h\", \"env\": {} },", 0), 0,
	    3, "$.upstream.env", "only valid with \"command\"");
	{
		struct strlist e = { 0 };
		char *t = variant(3, "  \"upstream\": { \"comand\": [\"sh\"] },", 0);

		cfg = (struct config *)1;
		CHECK(run(t, 0, &cfg, &e) == -1 && cfg == NULL);
		CHECK(has_err(&e, 3, "$.upstream.comand", "did you mean \"command\""));
		strlist_free(&e);
		free(t);
	}
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"] }, \"mcp\": { \"validate\": true },", 0), 0,
	    3, "$.mcp.validate", "unknown key");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"] }, \"mcp\": { \"validate_arguments\": 1 },", 0), 0,
	    3, "$.mcp.validate_arguments", "must be true or false");
	/* with file checks the program must exist */
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"certgate-no-such-program\"] },", 0),
	    CONFIG_CHECK_FILES, 3, "$.upstream.command[0]", "no executable of that name in PATH=");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"sh\"], \"env\": {\"PATH\": \"/nonexistent\"} },", 0),
	    CONFIG_CHECK_FILES, 3, "$.upstream.command[0]", "PATH=/nonexistent");
	expect_one(variant(3, "  \"upstream\": { \"command\": [\"./missing\"] },", 0),
	    CONFIG_CHECK_FILES, 3, "$.upstream.command[0]", "No such file");
}

/* The CA's own token (ca.pkcs11), the refusal of a shared token for the gateway, and
 * the CA service and enrollment keys. */
static char *
ca_cfg(const char *tls_token, const char *ca_extra, const char *tls_extra, const char *top_extra)
{
	char *t = NULL;

	if (asprintf(&t,
	    "{\n"
	    "  \"upstream\": \"http://127.0.0.1:3000/mcp\",\n"
	    "  \"pkcs11\": { \"module\": \"/m.so\", \"token\": \"certgate\", \"pin_file\": \"token/user.pin\" },\n"
	    "  \"tls\": { \"cert\": \"c.pem\", \"ca\": \"ca.pem\", \"crl\": \"crl.pem\",\n"
	    "    \"key\": \"pkcs11:token=%s;object=certgate-server\"%s },\n"
	    "  \"ca\": { %s },\n"
	    "  \"identity_map\": \"agents.json\"%s\n"
	    "}\n", tls_token, tls_extra, ca_extra, top_extra) < 0)
		return NULL;
	return t;
}

static void
test_ca_keys(void)
{
	struct p11_defaults d;
	struct config *cfg;
	char *sep = "\"key\": \"pkcs11:token=ca-certgate;object=certgate-ca\", "
	    "\"pkcs11\": { \"token\": \"ca-certgate\", \"pin_file\": \"token/ca.pin\" }";

	/* Separate tokens: fine for the gateway. */
	cfg = expect_ok(ca_cfg("certgate", sep, "", ""), CONFIG_GATEWAY);
	if (cfg) {
		CHECK(cfg->ca.has_pkcs11);
		config_ca_p11(cfg, &d);
		CHECK_STR(d.token, "ca-certgate");
		CHECK_STR(d.module, "/m.so");	/* falls back to pkcs11 */
		CHECK(d.pin_file && strstr(d.pin_file, "/token/ca.pin"));
		config_tls_p11(cfg, &d);
		CHECK(d.pin_file && strstr(d.pin_file, "/token/user.pin"));
		CHECK(cfg->ca.socket && strstr(cfg->ca.socket, "/ca/ca.sock"));
		CHECK(cfg->ca.tokens_dir && strstr(cfg->ca.tokens_dir, "/ca/tokens"));
		CHECK(cfg->ca.renew_per_hour == 60 && cfg->ca.renew_burst == 10);
		CHECK(!cfg->ca.service_external && cfg->ca.ocsp_url == NULL);
		CHECK(cfg->enroll.listen_host == NULL);
		config_free(cfg);
	}
	/* The old one-token layout: refused for the gateway only, naming both keys. */
	expect_one(ca_cfg("certgate", "\"key\": \"pkcs11:token=certgate;object=certgate-ca\"", "",
	    ""), CONFIG_GATEWAY, 6, "$.ca.key", "same token as the server key (tls.key), token \"certgate\"");
	config_free(expect_ok(ca_cfg("certgate", "\"key\": \"pkcs11:object=certgate-ca\"", "", ""), 0));
	expect_one(ca_cfg("certgate", "\"key\": \"pkcs11:object=certgate-ca\"", "", ""),
	    CONFIG_GATEWAY, 6, "$.ca.key", "allow_shared_token");
	config_free(expect_ok(ca_cfg("certgate", "\"key\": \"pkcs11:token=certgate;object=certgate-ca\"",
	    ", \"allow_shared_token\": true", ""), CONFIG_GATEWAY));
	/* Same label in another module is another token. */
	config_free(expect_ok(ca_cfg("certgate", "\"key\": \"pkcs11:token=certgate;object=c?module-path=/other.so\"",
	    "", ""), CONFIG_GATEWAY));
	/* The CA token's PIN is its own. */
	expect_one(ca_cfg("certgate", "\"key\": \"pkcs11:token=x;object=c\", \"pkcs11\": { \"token\": \"x\" }",
	    "", ""), 0, 6, "$.ca.pkcs11", "pin_file or pin_env");
	expect_one(ca_cfg("certgate", "\"key\": \"pkcs11:token=x;object=c\", \"pkcs11\": { \"pin\": \"1\", \"pin_file\": \"p\" }",
	    "", ""), 0, 6, "$.ca.pkcs11.pin", "unknown key");
	expect_one(ca_cfg("certgate", "\"pkcs11\": { \"token\": \"x\", \"pin_env\": \"9X\" }", "", ""), 0, 6,
	    "$.ca.pkcs11.pin_env", "environment variable");
	expect_one(ca_cfg("certgate", "\"service\": \"maybe\"", "", ""), 0, 6, "$.ca.service", "spawn");
	expect_one(ca_cfg("certgate", "\"ocsp_url\": \"ftp://x\"", "", ""), 0, 6, "$.ca.ocsp_url", "http://");
	expect_one(ca_cfg("certgate", "\"ocsp_url\": \"http://a,b\"", "", ""), 0, 6, "$.ca.ocsp_url", "commas");
	expect_one(ca_cfg("certgate", "\"renew_burst\": 0", "", ""), 0, 6, "$.ca.renew_burst", "between");
	expect_one(ca_cfg("certgate", "\"sockett\": \"s\"", "", ""), 0, 6, "$.ca.sockett", "did you mean \"socket\"");
	cfg = expect_ok(ca_cfg("certgate", "\"service\": \"external\", \"socket\": \"/run/ca.sock\", "
	    "\"ocsp_url\": \"https://gw.example/ocsp\"", "", ",\n  \"enroll\": { \"listen\": \"[::1]:8444\" }"), 0);
	if (cfg) {
		CHECK(cfg->ca.service_external);
		CHECK_STR(cfg->ca.socket, "/run/ca.sock");
		CHECK_STR(cfg->ca.ocsp_url, "https://gw.example/ocsp");
		CHECK_STR(cfg->enroll.listen_host, "::1");
		CHECK(cfg->enroll.listen_port == 8444);
		config_free(cfg);
	}
	config_free(expect_ok(ca_cfg("certgate", "", "", ",\n  \"enroll\": { \"listen\": null }"), 0));
	expect_one(ca_cfg("certgate", "", "", ",\n  \"enroll\": { \"listen\": \"nope\" }"), 0, 8,
	    "$.enroll.listen", "HOST:PORT");
	expect_one(ca_cfg("certgate", "", "", ",\n  \"enroll\": { \"rate\": 1 }"), 0, 8,
	    "$.enroll.rate", "unknown key");
}

int
main(void)
{
	char *real;

	if (mkdtemp(tmpdir) == NULL || (real = realpath(tmpdir, NULL)) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s", real);
	free(real);
	touch("server/cert.pem");
	touch("server/key.pem");
	touch("ca/ca.pem");
	touch("ca/crl.pem");
	touch("agents.json");
	touch("token/user.pin");
	touch("token/softhsm2.conf");
	touch("lib/module.so");
	touch("upstream-ca.pem");

	test_linemap();
	test_full();
	test_defaults();
	test_errors();
	test_files();
	test_pkcs11();
	test_json_errors();
	test_signer();
	test_stdio_upstream();
	test_ca_keys();
	{
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		(void)!system(cmd);
	}
	CHECK_DONE();
}
