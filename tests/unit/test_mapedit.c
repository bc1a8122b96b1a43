/* mapedit.c: identity map edits accepted only when the gateway's parser accepts the
 * result (table-driven), kept members, duplicate keys refused. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "mapedit.h"

#define ROLES "\"roles\": {\"admin\": [\"*\"], \"guest\": [\"mcp:tools/list\"]}"
#define URI(id) "spiffe://certgate.local/agent/" id

struct edit_case {
	const char *name;
	const char *map;            /* NULL: no file yet */
	const char *id;
	const char *roles[3];       /* NULL-terminated; roles[0] NULL: keep */
	const char *scopes[3];
	const char *want_err;       /* NULL: must succeed */
	const char *want_roles;     /* compact JSON of the agent's roles after the edit */
	const char *want_scopes;
};

static const struct edit_case cases[] = {
	{ "new agent", "{" ROLES ", \"agents\": []}", "a", { "guest" }, { "tools:x*" }, NULL,
	    "[\"guest\"]", "[\"tools:x*\"]" },
	{ "new agent, no roles given", "{" ROLES ", \"agents\": []}", "a", { NULL }, { NULL }, NULL,
	    "[]", "[]" },
	{ "no map yet, no roles", NULL, "a", { NULL }, { NULL }, NULL, "[]", "[]" },
	{ "no map yet, unknown role", NULL, "a", { "guest" }, { NULL }, "unknown role 'guest'",
	    NULL, NULL },
	{ "update replaces roles", "{" ROLES ", \"agents\": [{\"id\": \"a\", \"uri\": \"" URI("a")
	    "\", \"roles\": [\"admin\"], \"scopes\": [\"mcp:ping\"]}]}", "a", { "guest" }, { NULL },
	    NULL, "[\"guest\"]", "[\"mcp:ping\"]" },
	{ "update keeps roles", "{" ROLES ", \"agents\": [{\"id\": \"a\", \"uri\": \"" URI("a")
	    "\", \"roles\": [\"admin\"]}]}", "a", { NULL }, { "prompts:p" }, NULL, "[\"admin\"]",
	    "[\"prompts:p\"]" },
	{ "unknown role", "{" ROLES ", \"agents\": []}", "a", { "root" }, { NULL },
	    "unknown role 'root'", NULL, NULL },
	{ "invalid scope", "{" ROLES ", \"agents\": []}", "a", { NULL }, { "bogus:x" },
	    "invalid scope 'bogus:x'", NULL, NULL },
	{ "uri taken", "{" ROLES ", \"agents\": [{\"id\": \"b\", \"uri\": \"" URI("a") "\"}]}", "a",
	    { NULL }, { NULL }, "already uses URI", NULL, NULL },
	{ "duplicate key at top", "{" ROLES ", \"agents\": [], \"agents\": []}", "a", { NULL },
	    { NULL }, "duplicate", NULL, NULL },
	{ "duplicate key in a role", "{\"roles\": {\"g\": [\"*\"], \"g\": []}, \"agents\": []}", "a",
	    { NULL }, { NULL }, "duplicate", NULL, NULL },
	{ "duplicate key in another agent", "{" ROLES ", \"agents\": [{\"id\": \"b\", \"uri\": \""
	    URI("b") "\", \"roles\": [], \"roles\": [\"admin\"]}]}", "a", { NULL }, { NULL },
	    "duplicate", NULL, NULL },
	{ "agent twice", "{" ROLES ", \"agents\": [{\"id\": \"a\", \"uri\": \"x:1\"}, {\"id\": "
	    "\"a\", \"uri\": \"x:2\"}]}", "a", { NULL }, { NULL }, "appears twice", NULL, NULL },
	/* Invalid elsewhere: the gateway would reject the result, so it is never written. */
	{ "other agent invalid", "{" ROLES ", \"agents\": [{\"id\": \"b\"}]}", "a", { NULL },
	    { NULL }, "would be invalid", NULL, NULL },
	{ "unknown top-level key", "{" ROLES ", \"agents\": [], \"agnets\": []}", "a", { NULL },
	    { NULL }, "would be invalid", NULL, NULL },
	{ "not an object", "[]", "a", { NULL }, { NULL }, "must be a JSON object", NULL, NULL },
	{ "not JSON", "{\"roles\": ", "a", { NULL }, { NULL }, "not valid", NULL, NULL },
	{ "agents not an array", "{" ROLES ", \"agents\": {}}", "a", { NULL }, { NULL },
	    "must be an array", NULL, NULL },
	{ "bad agent id", "{" ROLES ", \"agents\": []}", "a b", { NULL }, { NULL },
	    "would be invalid", NULL, NULL },
};

static json_t *
find_agent(json_t *root, const char *id)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(root, "agents"), i, v)
		if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0)
			return v;
	return NULL;
}

static void
check_case(const struct edit_case *c)
{
	struct mapedit_agent a = { 0 };
	char err[512] = "", uri[200], *out = NULL, *got;
	size_t n, outlen = 0;
	json_t *root, *ag;
	int rc;

	snprintf(uri, sizeof(uri), "spiffe://certgate.local/agent/%s", c->id);
	a.id = c->id;
	a.uri = uri;
	for (n = 0; c->roles[n]; n++)
		;
	a.roles = c->roles;
	a.nroles = n;
	a.set_roles = n > 0;
	for (n = 0; c->scopes[n]; n++)
		;
	a.scopes = c->scopes;
	a.nscopes = n;
	a.set_scopes = n > 0;
	rc = mapedit_set_agent(c->map, c->map ? strlen(c->map) : 0, &a, &out, &outlen, err,
	    sizeof(err));
	if (c->want_err != NULL) {
		if (rc != -1 || out != NULL || strstr(err, c->want_err) == NULL) {
			fprintf(stderr, "case '%s': rc %d, err '%s', want '%s'\n", c->name, rc, err,
			    c->want_err);
			CHECK(0);
		} else
			CHECK(1);
		free(out);
		return;
	}
	if (rc != 0) {
		fprintf(stderr, "case '%s': refused: %s\n", c->name, err);
		CHECK(0);
		return;
	}
	CHECK(mapedit_check(out, outlen, err, sizeof(err)) == 0);
	CHECK(outlen > 0 && out[outlen - 1] == '\n');
	root = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
	ag = root ? find_agent(root, c->id) : NULL;
	CHECK(ag != NULL);
	if (ag != NULL) {
		CHECK_STR(json_string_value(json_object_get(ag, "uri")), uri);
		got = json_dumps(json_object_get(ag, "roles"), JSON_COMPACT);
		CHECK_STR(got, c->want_roles);
		free(got);
		got = json_dumps(json_object_get(ag, "scopes"), JSON_COMPACT);
		CHECK_STR(got, c->want_scopes);
		free(got);
	}
	json_decref(root);
	free(out);
}

/* Members mapedit does not manage are kept (rate, subject, other agents, order). */
static void
test_keeps_members(void)
{
	const char *map = "{" ROLES ", \"agents\": [{\"id\": \"z\", \"uri\": \"" URI("z")
	    "\"}, {\"id\": \"a\", \"uri\": \"old:uri\", \"subject\": \"CN=a\", \"rate\": "
	    "{\"per_second\": 5}}]}";
	const char *roles[] = { "admin" };
	struct mapedit_agent a = { .id = "a", .uri = URI("a"), .roles = roles, .nroles = 1,
	    .set_roles = 1 };
	char err[512], *out = NULL;
	json_t *root, *ag;

	CHECK(mapedit_set_agent(map, strlen(map), &a, &out, NULL, err, sizeof(err)) == 0);
	root = out ? json_loads(out, 0, NULL) : NULL;
	CHECK(root != NULL && json_array_size(json_object_get(root, "agents")) == 2);
	if (root) {
		CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(root,
		    "agents"), 0), "id")), "z");
		ag = find_agent(root, "a");
		CHECK(ag != NULL && json_integer_value(json_object_get(json_object_get(ag, "rate"),
		    "per_second")) == 5);
		CHECK(ag != NULL && strcmp(json_string_value(json_object_get(ag, "subject")),
		    "CN=a") == 0);
	}
	json_decref(root);
	free(out);
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i]);
	test_keeps_members();
	CHECK_DONE();
}
