/* identity.c: map parsing and validation, effective scopes, lookups, peers from a real
 * certificate, XFCC formatting. */
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "argrule.h"
#include "check.h"
#include "identity.h"

/* The agent with id, or NULL (the map's list, in file order). */
static const struct identity_agent *
find_id(const struct identity_map *m, const char *id)
{
	size_t i;

	for (i = 0; id != NULL && i < m->nagents; i++)
		if (strcmp(m->agents[i].id, id) == 0)
			return &m->agents[i];
	return NULL;
}

static const char example[] =
    "{\n"
    "  \"roles\": {\n"
    "    \"admin\":  [\"*\"],\n"
    "    \"member\": [\"mcp:*\", \"tools:*\", \"resources:*\", \"prompts:*\"],\n"
    "    \"guest\":  [\"mcp:tools/list\", \"mcp:resources/list\", \"mcp:prompts/list\"]\n"
    "  },\n"
    "  \"agents\": [\n"
    "    { \"id\": \"research-bot\", \"uri\": \"spiffe://certgate.local/agent/research-bot\",\n"
    "      \"roles\": [\"guest\"], \"scopes\": [\"tools:search_*\"],\n"
    "      \"rate\": { \"per_second\": 20, \"burst\": 40 } },\n"
    "    { \"id\": \"ops\", \"subject\": \"CN=ops,O=certgate\", \"roles\": [\"admin\", \"member\"] },\n"
    "    { \"id\": \"both\", \"uri\": \"spiffe://certgate.local/agent/both\",\n"
    "      \"subject\": \"CN=both,O=certgate\", \"scopes\": [\"mcp:ping\", \"mcp:ping\"],\n"
    "      \"roles\": [\"guest\", \"guest\"], \"rate\": { \"per_second\": 0.5 } }\n"
    "  ]\n"
    "}\n";

static void
test_example(void)
{
	struct identity_map *m = NULL;
	const struct identity_agent *a;
	char err[256] = "";

	CHECK(identity_map_parse(example, strlen(example), &m, err, sizeof(err)) == 0);
	if (m == NULL) {
		fprintf(stderr, "parse: %s\n", err);
		return;
	}
	CHECK(m->nagents == 3);
	a = find_id(m, "research-bot");
	CHECK(a != NULL);
	if (a != NULL) {
		CHECK_STR(a->uri, "spiffe://certgate.local/agent/research-bot");
		CHECK(a->subject == NULL);
		CHECK(a->nroles == 1);
		CHECK_STR(a->roles[0], "guest");
		CHECK(a->nscopes == 4);
		CHECK_STR(a->scopes_str,
		    "tools:search_* mcp:tools/list mcp:resources/list mcp:prompts/list");
		CHECK(a->rate_per_second == 20 && a->rate_burst == 40);
	}
	a = find_id(m, "ops");
	CHECK(a != NULL);
	if (a != NULL) {
		CHECK(a->uri == NULL);
		CHECK_STR(a->subject, "CN=ops,O=certgate");
		CHECK_STR(a->scopes_str, "* mcp:* tools:* resources:* prompts:*");
		CHECK(a->nscopes == 5);
		CHECK(a->rate_per_second == 0);
	}
	a = find_id(m, "both");
	CHECK(a != NULL);
	if (a != NULL) {
		/* duplicates collapse, first occurrence keeps its place */
		CHECK_STR(a->scopes_str,
		    "mcp:ping mcp:tools/list mcp:resources/list mcp:prompts/list");
		CHECK(a->rate_per_second == 0.5 && a->rate_burst == 1);
	}
	CHECK(find_id(m, "nobody") == NULL);
	CHECK(find_id(m, NULL) == NULL);
	identity_map_free(m);
}

struct bad_case {
	const char *json;
	const char *needle;   /* must appear in the error message */
};

#define AG(x) "{\"roles\":{\"r\":[\"tools:*\"]},\"agents\":[" x "]}"

static const struct bad_case bad_cases[] = {
	{ "", "line" },
	{ "{", "line 1" },
	{ "{\"agents\": [}\n", "line 1" },
	{ "{\n\"agents\": []\n,}", "line 3" },
	{ "[]", "top level must be an object" },
	{ "{}", "\"agents\" must be an array" },
	{ "{\"agents\":{}}", "\"agents\" must be an array" },
	{ "{\"agents\":[],\"extra\":1}", "unknown key \"extra\"" },
	{ "{\"agents\":[],\"agents\":[]}", "duplicate" },
	{ "{\"roles\":[],\"agents\":[]}", "\"roles\" must be an object" },
	{ "{\"roles\":{\"r\":\"tools:*\"},\"agents\":[]}", "role \"r\": must be an array of scopes" },
	{ "{\"roles\":{\"r\":[1]},\"agents\":[]}", "role \"r\": scope 0 is not a string" },
	{ "{\"roles\":{\"r\":[\"tool:x\"]},\"agents\":[]}", "invalid scope \"tool:x\"" },
	{ "{\"roles\":{\"\":[]},\"agents\":[]}", "empty name" },
	{ AG("1"), "agents[0]: must be an object" },
	{ AG("{\"uri\":\"u:a\"}"), "agents[0]: \"id\"" },
	{ AG("{\"id\":\"\",\"uri\":\"u:a\"}"), "agents[0]: \"id\"" },
	{ AG("{\"id\":7,\"uri\":\"u:a\"}"), "agents[0]: \"id\"" },
	{ AG("{\"id\":\"a b\",\"uri\":\"u:a\"}"), "agents[0]: \"id\"" },
	{ AG("{\"id\":\"a/b\",\"uri\":\"u:a\"}"), "agents[0]: \"id\"" },
	{ AG("{\"id\":\"a\"}"), "agent \"a\": needs \"uri\" or \"subject\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"\"}"), "agent \"a\": \"uri\" must be" },
	{ AG("{\"id\":\"a\",\"uri\":5}"), "agent \"a\": \"uri\" must be" },
	{ AG("{\"id\":\"a\",\"subject\":[]}"), "agent \"a\": \"subject\" must be" },
	{ AG("{\"id\":\"a\",\"subject\":\"CN=a\\nO=b\"}"), "\"subject\" must be" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"color\":\"red\"}"), "agent \"a\": unknown key \"color\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"roles\":[\"nope\"]}"), "unknown role \"nope\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"roles\":\"r\"}"), "\"roles\" must be an array" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"roles\":[3]}"), "role 0 is not a string" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"scopes\":[\"tools:\"]}"), "invalid scope \"tools:\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"scopes\":[\"bogus\"]}"), "invalid scope \"bogus\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"scopes\":\"tools:*\"}"), "scopes must be an array" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"scopes\":[\"tools:a b\"]}"), "invalid scope" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\"},{\"id\":\"a\",\"uri\":\"u:b\"}"),
	    "agent \"a\": duplicate id" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\"},{\"id\":\"b\",\"uri\":\"u:a\"}"),
	    "agent \"b\": uri \"u:a\" already belongs to agent \"a\"" },
	{ AG("{\"id\":\"a\",\"subject\":\"CN=a\"},{\"id\":\"b\",\"subject\":\"CN=a\"}"),
	    "agent \"b\": subject \"CN=a\" already belongs to agent \"a\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":5}"), "\"rate\" must be an object" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{}}"), "rate.per_second\" must be a number > 0" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{\"per_second\":0}}"), "rate.per_second" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{\"per_second\":-1}}"), "rate.per_second" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{\"per_second\":\"5\"}}"), "rate.per_second" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{\"per_second\":5,\"burst\":0}}"),
	    "rate.burst\" must be a number >= 1" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{\"per_second\":5,\"burst\":0.5}}"),
	    "rate.burst" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"rate\":{\"per_second\":5,\"bust\":2}}"),
	    "unknown key \"rate.bust\"" },
	/* roles as objects, argument rules */
	{ "{\"roles\":{\"r\":{\"scope\":[]}},\"agents\":[]}", "role \"r\": unknown key \"scope\"" },
	{ "{\"roles\":{\"r\":{\"scopes\":\"tools:*\"}},\"agents\":[]}",
	    "role \"r\": must be an array of scopes or an object" },
	{ "{\"roles\":{\"r\":5},\"agents\":[]}", "role \"r\": must be an array of scopes" },
	{ "{\"roles\":{\"r\":{\"scopes\":[\"bad\"]}},\"agents\":[]}", "invalid scope \"bad\"" },
	{ "{\"roles\":{\"fs\":{\"arguments\":[]}},\"agents\":[]}",
	    "role \"fs\": arguments: must be an object of tool globs" },
	{ "{\"roles\":{\"fs\":{\"arguments\":{\"read_*\":{\"path\":{\"path_under\":\"srv\"}}}}},"
	  "\"agents\":[]}",
	    "role \"fs\": arguments: tool \"read_*\": argument \"path\": path_under: \"srv\" is not "
	    "an absolute directory" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"arguments\":{\"t\":{\"q\":{\"pattern\":\"(\"}}}}"),
	    "agent \"a\": arguments: tool \"t\": argument \"q\": pattern \"(\": missing closing "
	    "parenthesis" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"arguments\":{\"t\":{\"q\":{\"glob\":\"*\","
	     "\"colour\":1}}}}"),
	    "agent \"a\": arguments: tool \"t\": argument \"q\": unknown key \"colour\"" },
	{ AG("{\"id\":\"a\",\"uri\":\"u:a\",\"arguments\":{\"t\":{\"q\":{\"glob\":\"*\"},"
	     "\"q\":{\"glob\":\"*\"}}}}"), "duplicate" },
};

/* Roles as objects with argument rules; effective rule sets per agent. */
static const char rules_map[] =
    "{ \"roles\": {\n"
    "    \"guest\": [\"mcp:tools/list\"],\n"
    "    \"fs\": { \"scopes\": [\"tools:read_*\"],\n"
    "            \"arguments\": { \"read_*\": { \"path\": { \"path_under\": \"/srv/data\" } } } },\n"
    "    \"txt\": { \"arguments\": { \"*\": { \"path\": { \"glob\": \"*.txt\", \"optional\": true } } } }\n"
    "  },\n"
    "  \"agents\": [\n"
    "    { \"id\": \"plain\", \"uri\": \"u:plain\", \"roles\": [\"guest\"] },\n"
    "    { \"id\": \"reader\", \"uri\": \"u:reader\", \"roles\": [\"guest\", \"fs\", \"fs\", \"txt\"],\n"
    "      \"arguments\": { \"read_file\": { \"tail\": { \"enum\": [10, 20], \"optional\": true } } } },\n"
    "    { \"id\": \"fs-only\", \"uri\": \"u:fs\", \"roles\": [\"fs\"] }\n"
    "  ] }\n";

static void
test_rules(void)
{
	struct identity_map *m = NULL;
	const struct identity_agent *a, *b;
	struct argrule_result res;
	char err[512] = "";
	json_t *args;

	CHECK(identity_map_parse(rules_map, strlen(rules_map), &m, err, sizeof(err)) == 0);
	if (m == NULL) {
		fprintf(stderr, "rules map: %s\n", err);
		return;
	}
	a = find_id(m, "plain");
	CHECK(a != NULL && a->argrules == NULL && a->nargrules == 0);
	a = find_id(m, "reader");
	CHECK(a != NULL && a->nargrules == 3);   /* own, fs (once), txt */
	CHECK_STR(a->scopes_str, "mcp:tools/list tools:read_*");
	b = find_id(m, "fs-only");
	CHECK(b != NULL && b->nargrules == 1);
	if (a == NULL || b == NULL || a->nargrules != 3 || b->nargrules != 1)
		goto done;
	CHECK(a->argrules[1] == b->argrules[0]);   /* the role's set is shared */

	args = json_loads("{\"path\": \"/srv/data/a.txt\", \"tail\": 10}", 0, NULL);
	argrule_check(a->argrules, a->nargrules, "read_file", args, &res);
	CHECK(res.allow == 1);
	json_decref(args);
	args = json_loads("{\"path\": \"/srv/data/a.txt\", \"tail\": 11}", 0, NULL);
	argrule_check(a->argrules, a->nargrules, "read_file", args, &res);
	CHECK(res.allow == 0 && strcmp(res.owner, "agent \"reader\"") == 0);
	CHECK_STR(res.detail, "enum: arguments.tail: not one of the 2 allowed values");
	json_decref(args);
	args = json_loads("{\"path\": \"/srv/data/../../etc/passwd\"}", 0, NULL);
	argrule_check(a->argrules, a->nargrules, "read_file", args, &res);
	CHECK(res.allow == 0 && strcmp(res.owner, "role \"fs\"") == 0);
	CHECK_STR(res.detail, "path_under /srv/data: arguments.path: resolves outside the directory");
	argrule_check(b->argrules, b->nargrules, "read_text_file", args, &res);
	CHECK(res.allow == 0 && strcmp(res.rule, "path_under") == 0);
	json_decref(args);
	args = json_loads("{\"path\": \"/srv/data/a.md\"}", 0, NULL);
	argrule_check(a->argrules, a->nargrules, "read_file", args, &res);
	CHECK(res.allow == 0 && strcmp(res.owner, "role \"txt\"") == 0);
	argrule_check(b->argrules, b->nargrules, "read_file", args, &res);
	CHECK(res.allow == 1);
	json_decref(args);
done:
	identity_map_free(m);
}

static void
test_bad_maps(void)
{
	struct identity_map *m;
	char err[512];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		m = (struct identity_map *)1;
		err[0] = '\0';
		rc = identity_map_parse(bad_cases[i].json, strlen(bad_cases[i].json), &m, err,
		    sizeof(err));
		CHECK(rc == -1);
		CHECK(m == NULL);
		if (rc != -1 || strstr(err, bad_cases[i].needle) == NULL) {
			fprintf(stderr, "bad case %zu: rc %d err \"%s\" (want \"%s\")\n", i, rc,
			    err, bad_cases[i].needle);
			CHECK(0);
		}
		if (rc == 0)
			identity_map_free(m);
	}
}

static void
test_load(void)
{
	char path[] = "/tmp/test_identity_XXXXXX", err[512];
	struct identity_map *m = NULL;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	f = fdopen(fd, "w");
	fputs(example, f);
	fclose(f);
	CHECK(identity_map_load(path, &m, err, sizeof(err)) == 0);
	CHECK(m != NULL && m->nagents == 3);
	identity_map_free(m);
	f = fopen(path, "w");
	fputs("{\"agents\":[\n{\"id\":\"x\",\"uri\":\"u:x\",\"scopes\":[\"nope\"]}]}", f);
	fclose(f);
	CHECK(identity_map_load(path, &m, err, sizeof(err)) == -1);
	CHECK(strstr(err, path) != NULL && strstr(err, "invalid scope \"nope\"") != NULL);
	unlink(path);
	CHECK(identity_map_load(path, &m, err, sizeof(err)) == -1);
	CHECK(strstr(err, "No such file") != NULL);
	identity_map_free(NULL);
}

static void
test_lookup(void)
{
	struct identity_map *m = NULL;
	struct identity_peer p;
	const struct identity_agent *a;
	char *uris[3];
	char err[256];

	CHECK(identity_map_parse(example, strlen(example), &m, err, sizeof(err)) == 0);
	if (m == NULL)
		return;
	memset(&p, 0, sizeof(p));
	p.own_ca = 1;
	uris[0] = "spiffe://other/x";
	uris[1] = "spiffe://certgate.local/agent/research-bot";
	p.uris = uris;
	p.nuris = 2;
	p.subject = "CN=ops,O=certgate";
	/* URI wins over subject */
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "research-bot") == 0);
	p.nuris = 1;
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "ops") == 0);
	p.subject = "CN=OPS,O=certgate";   /* exact match only */
	CHECK(identity_lookup(m, &p) == NULL);
	p.subject = "O=certgate,CN=ops";
	CHECK(identity_lookup(m, &p) == NULL);
	p.subject = NULL;
	p.nuris = 0;
	CHECK(identity_lookup(m, &p) == NULL);
	uris[0] = "spiffe://certgate.local/agent/both";
	p.nuris = 1;
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "both") == 0);
	p.nuris = 0;
	p.subject = "CN=both,O=certgate";
	CHECK(identity_lookup(m, &p) == a);
	CHECK(identity_lookup(NULL, &p) == NULL);
	CHECK(identity_lookup(m, NULL) == NULL);
	identity_map_free(m);
}

/* Issuer binding: "issuer" agents match only that issuer, the others only certgate's
 * own CA; the same subject or URI may belong to one agent per issuer. */
static void
test_issuer(void)
{
	static const char map[] =
	    "{\"agents\": [\n"
	    " {\"id\": \"own\", \"uri\": \"spiffe://x/agent/bot\", \"subject\": \"CN=bot\"},\n"
	    " {\"id\": \"corp\", \"uri\": \"spiffe://x/agent/bot\", \"subject\": \"cn=bot\",\n"
	    "  \"issuer\": \"cn=Issuing CA,o=Corp\"},\n"
	    " {\"id\": \"corp2\", \"subject\": \"CN=M\u00fcller\", \"issuer\": \"CN=Other,O=Corp\"}\n"
	    "]}";
	struct identity_map *m = NULL;
	struct identity_peer p;
	const struct identity_agent *a;
	char *uris[1] = { "spiffe://x/agent/bot" }, err[512];

	CHECK(identity_map_parse(map, strlen(map), &m, err, sizeof(err)) == 0);
	if (m == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR(m->agents[1].issuer, "CN=Issuing CA,O=Corp");
	CHECK_STR(m->agents[1].subject, "CN=bot");
	CHECK_STR(m->agents[2].subject, "CN=M\\C3\\BCller");
	memset(&p, 0, sizeof(p));
	p.uris = uris;
	p.nuris = 1;
	p.subject = "CN=bot";
	/* neither certgate's CA nor a bound issuer: nobody */
	p.issuer = "CN=Evil CA";
	CHECK(identity_lookup(m, &p) == NULL);
	p.nuris = 0;
	CHECK(identity_lookup(m, &p) == NULL);
	p.nuris = 1;
	/* certgate's own CA */
	p.own_ca = 1;
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "own") == 0);
	/* the corporate issuer: its agent, by URI and by subject, never "own" */
	p.own_ca = 0;
	p.issuer = "CN=Issuing CA,O=Corp";
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "corp") == 0);
	p.nuris = 0;
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "corp") == 0);
	p.subject = "CN=M\\C3\\BCller";
	CHECK(identity_lookup(m, &p) == NULL);
	p.issuer = "CN=Other,O=Corp";
	a = identity_lookup(m, &p);
	CHECK(a != NULL && strcmp(a->id, "corp2") == 0);
	identity_map_free(m);
}

/* A subject or issuer not in RFC 4514 form is refused, naming the agent and line. */
static void
test_bad_dn(void)
{
	static const char *const bad[][2] = {
		{ "{\"agents\": [\n{\"id\": \"a\", \"uri\": \"u\"},\n{\"id\": \"slash\",\n"
		  "\"subject\": \"/O=y/CN=x\"}]}",
		  "line 4: agent \"slash\": \"subject\" \"/O=y/CN=x\" is not an RFC 4514 DN: "
		  "OpenSSL's" },
		{ "{\"agents\": [{\"id\": \"sp\",\n\"subject\": \"CN = x\"}]}",
		  "line 2: agent \"sp\": \"subject\"" },
		{ "{\"agents\": [{\"id\": \"iss\", \"subject\": \"CN=x\",\n\n\"issuer\": "
		  "\"CN=a, O=b\"}]}",
		  "line 3: agent \"iss\": \"issuer\" \"CN=a, O=b\" is not an RFC 4514 DN" },
		{ "{\"agents\": [{\"id\": \"e\", \"subject\": \"CN=x\", \"issuer\": 5}]}",
		  "agent \"e\": \"issuer\" must be a non-empty string" },
	};
	struct identity_map *m = NULL;
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK(identity_map_parse(bad[i][0], strlen(bad[i][0]), &m, err,
		    sizeof(err)) == -1);
		CHECK(m == NULL);
		if (strstr(err, bad[i][1]) == NULL)
			fprintf(stderr, "got: %s\nwant: %s\n", err, bad[i][1]);
		CHECK(strstr(err, bad[i][1]) != NULL);
	}
	/* an issuer-bound agent still needs uri or subject */
	{
		static const char noid[] = "{\"agents\":[{\"id\":\"x\",\"issuer\":\"CN=a\"}]}";

		CHECK(identity_map_parse(noid, strlen(noid), &m, err, sizeof(err)) == -1);
		CHECK(strstr(err, "needs \"uri\" or \"subject\"") != NULL);
	}
}

/* 10,000 agents: parse and look every one up (hash index, not a scan). */
static void
test_large(void)
{
	struct identity_map *m = NULL;
	struct identity_peer p;
	char *buf, err[256], uri[128], *uris[1];
	size_t cap = 10000 * 160 + 200, len = 0, i, found = 0;

	buf = malloc(cap);
	len += (size_t)snprintf(buf + len, cap - len, "{\"roles\":{\"g\":[\"mcp:tools/list\"]},"
	    "\"agents\":[");
	for (i = 0; i < 10000; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s{\"id\":\"a%zu\",\"uri\":"
		    "\"spiffe://t/agent/a%zu\",\"subject\":\"CN=a%zu\",\"roles\":[\"g\"]}",
		    i ? "," : "", i, i, i);
	len += (size_t)snprintf(buf + len, cap - len, "]}");
	CHECK(identity_map_parse(buf, len, &m, err, sizeof(err)) == 0);
	free(buf);
	if (m == NULL)
		return;
	memset(&p, 0, sizeof(p));
	p.own_ca = 1;
	p.uris = uris;
	p.nuris = 1;
	uris[0] = uri;
	for (i = 0; i < 10000; i++) {
		const struct identity_agent *a;

		snprintf(uri, sizeof(uri), "spiffe://t/agent/a%zu", i);
		a = identity_lookup(m, &p);
		found += a != NULL && a == &m->agents[i];
	}
	CHECK(found == 10000);
	identity_map_free(m);
}

/* A certificate like the ones agent-issue makes, self-signed for the test. */
static X509 *
make_cert(long serial, int with_san)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	X509_EXTENSION *ext;
	X509V3_CTX ctx;

	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_set_version(x, 2);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"y", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"x", -1, -1, 0);
	X509_set_issuer_name(x, n);
	ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
	ASN1_TIME_set(X509_getm_notAfter(x), 1800000000);
	X509_set_pubkey(x, key);
	if (with_san) {
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
		    "URI:spiffe://certgate.local/agent/x,DNS:x.example,URI:urn:second");
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	X509_sign(x, key, EVP_sha256());
	EVP_PKEY_free(key);
	return x;
}

static void
test_peer(void)
{
	struct identity_peer p;
	unsigned char *der = NULL, md[32];
	char hex[65];
	unsigned int mdlen = 0;
	int i, len;
	X509 *x;

	x = make_cert(0x0A1B2C, 1);
	CHECK(identity_peer_from_cert(x, &p) == 0);
	CHECK_STR(p.serial, "0A1B2C");
	CHECK_STR(p.subject, "CN=x,O=y");
	CHECK(p.nuris == 2);
	if (p.nuris == 2) {
		CHECK_STR(p.uris[0], "spiffe://certgate.local/agent/x");
		CHECK_STR(p.uris[1], "urn:second");
	}
	CHECK(p.not_after == 1800000000LL);
	len = i2d_X509(x, &der);
	EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	CHECK_STR(p.hash, hex);
	OPENSSL_free(der);
	identity_peer_clear(&p);
	CHECK(p.subject == NULL && p.uris == NULL && p.nuris == 0);
	X509_free(x);

	x = make_cert(255, 0);
	CHECK(identity_peer_from_cert(x, &p) == 0);
	CHECK_STR(p.serial, "FF");
	CHECK(p.nuris == 0);
	identity_peer_clear(&p);
	X509_free(x);
	CHECK(identity_peer_from_cert(NULL, &p) == -1);
}

static void
test_xfcc(void)
{
	struct identity_peer p;
	char *uris[3], *s;

	memset(&p, 0, sizeof(p));
	strcpy(p.hash, "ab01");
	p.subject = "CN=x,O=y";
	uris[0] = "spiffe://certgate.local/agent/x";
	uris[1] = "urn:a;b";
	uris[2] = "urn:q\"\\";
	p.uris = uris;
	p.nuris = 1;
	s = identity_xfcc(&p);
	CHECK_STR(s, "Hash=ab01;Subject=\"CN=x,O=y\";URI=spiffe://certgate.local/agent/x");
	free(s);
	p.nuris = 3;
	p.subject = "CN=a \\\"b\\\",O=c";   /* CN=a \"b\",O=c as RFC 4514 escapes it */
	s = identity_xfcc(&p);
	CHECK_STR(s, "Hash=ab01;Subject=\"CN=a \\\\\\\"b\\\\\\\",O=c\";"
	    "URI=spiffe://certgate.local/agent/x;URI=\"urn:a;b\";URI=\"urn:q\\\"\\\\\"");
	free(s);
	p.subject = NULL;
	p.nuris = 0;
	s = identity_xfcc(&p);
	CHECK_STR(s, "Hash=ab01");
	free(s);
	p.subject = "CN=evil\r\nX-Agent-Id: admin";
	CHECK(identity_xfcc(&p) == NULL);
	CHECK(identity_xfcc(NULL) == NULL);
}

/* The README's "Tool-argument rules" example map and worked-examples table. */
static const char readme_map[] =
    "{\n"
    "  \"roles\": {\n"
    "    \"guest\":     [\"mcp:tools/list\"],\n"
    "    \"fs-reader\": { \"scopes\": [\"tools:read_*\", \"tools:list_directory\", \"tools:read_multiple_files\"],\n"
    "                   \"arguments\": {\n"
    "                     \"read_*file\":          { \"path\":  { \"path_under\": \"/srv/data\" } },\n"
    "                     \"list_directory\":      { \"path\":  { \"path_under\": \"/srv/data\" } },\n"
    "                     \"read_multiple_files\": { \"paths\": { \"path_under\": \"/srv/data\" } } } }\n"
    "  },\n"
    "  \"agents\": [\n"
    "    { \"id\": \"docs-bot\", \"uri\": \"spiffe://certgate.local/agent/docs-bot\",\n"
    "      \"roles\": [\"guest\", \"fs-reader\"],\n"
    "      \"arguments\": {\n"
    "        \"read_text_file\": { \"head\": { \"enum\": [10, 50, 100], \"optional\": true } },\n"
    "        \"search_*\":       { \"query\": { \"max_length\": 200, \"pattern\": \"[\\\\p{L}\\\\p{N} ._-]+\" } } } }\n"
    "  ]\n"
    "}\n";

static const struct {
	const char *tool, *args, *detail;   /* detail NULL: allowed */
} readme_calls[] = {
	{ "read_text_file", "{\"path\": \"/srv/data/guide.md\"}", NULL },
	{ "read_text_file", "{\"path\": \"/srv/data/guide.md\", \"head\": 50}", NULL },
	{ "read_text_file", "{\"path\": \"/srv/data/guide.md\", \"head\": 51}",
	  "enum: arguments.head: not one of the 3 allowed values" },
	{ "read_text_file", "{\"path\": \"/srv/data/../../etc/shadow\"}",
	  "path_under /srv/data: arguments.path: resolves outside the directory" },
	{ "read_file", "{\"path\": \"/etc/passwd\"}",
	  "path_under /srv/data: arguments.path: resolves outside the directory" },
	{ "read_multiple_files", "{\"paths\": [\"/srv/data/a\", \"/srv/data/b\"]}", NULL },
	{ "read_multiple_files", "{\"paths\": [\"/srv/data/a\", \"/etc/passwd\"]}",
	  "path_under /srv/data: arguments.paths[1]: resolves outside the directory" },
	{ "search_files", "{\"query\": \"Grüße 2024.txt\"}", NULL },
	{ "search_files", "{\"query\": \"a;rm -rf\"}", "pattern [\\p{L}\\p{N} ._-]+: arguments.query: does not match" },
	{ "search_files", "{}", "max_length 200: arguments.query: missing (not optional)" },
};

static void
test_readme_example(void)
{
	struct identity_map *m = NULL;
	const struct identity_agent *a;
	struct argrule_result res;
	char err[512] = "";
	json_t *args;
	size_t i;

	CHECK(identity_map_parse(readme_map, strlen(readme_map), &m, err, sizeof(err)) == 0);
	if (m == NULL) {
		fprintf(stderr, "readme map: %s\n", err);
		return;
	}
	a = find_id(m, "docs-bot");
	CHECK(a != NULL && a->nargrules == 2);
	for (i = 0; a != NULL && i < sizeof(readme_calls) / sizeof(readme_calls[0]); i++) {
		args = json_loads(readme_calls[i].args, 0, NULL);
		argrule_check(a->argrules, a->nargrules, readme_calls[i].tool, args, &res);
		if (readme_calls[i].detail == NULL)
			CHECK(res.allow == 1);
		else
			CHECK_STR(res.detail, readme_calls[i].detail);
		if (res.allow != (readme_calls[i].detail == NULL))
			fprintf(stderr, "readme call %zu: %s\n", i, res.detail);
		json_decref(args);
	}
	identity_map_free(m);
}

/* A certificate named cn, signed by ikey under issuer's name (self-signed without). */
static X509 *
make_signed(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
	X509 *x = X509_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
	ASN1_TIME_set(X509_getm_notAfter(x), 1800000000);
	X509_set_pubkey(x, key);
	X509_sign(x, ikey ? ikey : key, EVP_sha256());
	return x;
}

/* Issuer binding: by signature (identity_peer_own_ca) and from a verified chain
 * (identity_peer_own_ca_chain); a foreign CA with certgate's CA name is never own. */
static void
test_own_ca(void)
{
	EVP_PKEY *kown = EVP_EC_gen("P-256"), *kfake = EVP_EC_gen("P-256"),
	    *ka = EVP_EC_gen("P-256"), *kb = EVP_EC_gen("P-256");
	X509 *own = make_signed("certgate CA", kown, NULL, NULL);
	X509 *fake = make_signed("certgate CA", kfake, NULL, NULL);  /* same name */
	X509 *a = make_signed("alice", ka, own, kown);
	X509 *b = make_signed("alice", kb, fake, kfake);
	STACK_OF(X509) *owns = sk_X509_new_null(), *ca = sk_X509_new_null(),
	    *cb = sk_X509_new_null(), *lone = sk_X509_new_null();
	struct identity_peer p;

	memset(&p, 0, sizeof(p));
	sk_X509_push(owns, own);
	sk_X509_push(ca, a);
	sk_X509_push(ca, own);
	sk_X509_push(cb, b);
	sk_X509_push(cb, fake);
	sk_X509_push(lone, a);
	CHECK(identity_peer_own_ca(&p, a, owns) == 1 && p.own_ca == 1);
	CHECK(identity_peer_own_ca(&p, b, owns) == 0 && p.own_ca == 0);
	CHECK(identity_peer_own_ca_chain(&p, ca, owns) == 1 && p.own_ca == 1);
	CHECK(identity_peer_own_ca_chain(&p, cb, owns) == 0 && p.own_ca == 0);
	p.own_ca = 1;
	CHECK(identity_peer_own_ca_chain(&p, lone, owns) == 0 && p.own_ca == 0);
	CHECK(identity_peer_own_ca_chain(&p, NULL, owns) == 0);
	CHECK(identity_peer_own_ca_chain(&p, ca, NULL) == 0);
	sk_X509_free(owns);
	sk_X509_free(ca);
	sk_X509_free(cb);
	sk_X509_free(lone);
	X509_free(own);
	X509_free(fake);
	X509_free(a);
	X509_free(b);
	EVP_PKEY_free(kown);
	EVP_PKEY_free(kfake);
	EVP_PKEY_free(ka);
	EVP_PKEY_free(kb);
}

int
main(void)
{
	test_own_ca();
	test_example();
	test_bad_maps();
	test_rules();
	test_readme_example();
	test_load();
	test_lookup();
	test_issuer();
	test_bad_dn();
	test_large();
	test_peer();
	test_xfcc();
	CHECK_DONE();
}
