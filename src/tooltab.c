/* Per-session tool table: tool name -> compiled inputSchema (see include/tooltab.h). */
#include "tooltab.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "schema.h"

struct tooltab_tool {
	char *name;
	struct schema *schema;   /* NULL: unusable, see problem */
	char *problem;
	unsigned char digest[32];/* SHA-256 of the canonical inputSchema: a repeat or a conflict */
	int has_digest;
	size_t bytes;
};

/* A sorted array of tools; a new first page builds a new list and swaps it in. */
struct tooltab_list {
	struct tooltab_tool *v;
	size_t n, cap;
	size_t bytes;
	int overflow;            /* some tools were not learnt (limits) */
};

struct tooltab {
	pthread_mutex_t mu;
	size_t max_tools, max_bytes;
	struct tooltab_list list;
};

static void
tooltab_tool_clear(struct tooltab_tool *e)
{
	free(e->name);
	schema_free(e->schema);
	free(e->problem);
}

static void
tooltab_list_clear(struct tooltab_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		tooltab_tool_clear(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

struct tooltab *
tooltab_new(size_t max_tools, size_t max_bytes)
{
	struct tooltab *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t);
		return NULL;
	}
	t->max_tools = max_tools ? max_tools : TOOLTAB_DEFAULT_MAX_TOOLS;
	t->max_bytes = max_bytes ? max_bytes : TOOLTAB_DEFAULT_MAX_BYTES;
	return t;
}

void
tooltab_free(struct tooltab *t)
{
	if (t == NULL)
		return;
	tooltab_list_clear(&t->list);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static int
tooltab_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tooltab_tool *)a)->name,
	    ((const struct tooltab_tool *)b)->name);
}

static struct tooltab_tool *
tooltab_find(const struct tooltab_list *l, const char *name)
{
	struct tooltab_tool probe = { .name = (char *)name };

	if (l->n == 0)
		return NULL;
	return bsearch(&probe, l->v, l->n, sizeof(*l->v), tooltab_cmp);
}

static struct tooltab_tool *
tooltab_find_linear(const struct tooltab_list *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	return NULL;
}

/* Marks e unusable with a message (replaces a previous one). */
static void
tooltab_unusable(struct tooltab_tool *e, const char *msg)
{
	schema_free(e->schema);
	e->schema = NULL;
	free(e->problem);
	e->problem = strdup(msg);
}

/* SHA-256 of the schema serialized with sorted keys (key order is not a difference). */
static int
tooltab_digest(json_t *in, unsigned char out[32])
{
	unsigned int len = 0;
	char *txt;
	int ok;

	if ((txt = json_dumps(in, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)) == NULL)
		return -1;
	ok = EVP_Digest(txt, strlen(txt), out, &len, EVP_sha256(), NULL);
	free(txt);
	return ok && len == 32 ? 0 : -1;
}

/* Adds one listed tool to l (unsorted while a page is read). 1 learnt, 0 skipped,
 * -1 out of memory. */
static int
tooltab_add(const struct tooltab *t, struct tooltab_list *l, json_t *tool)
{
	struct tooltab_tool *e, *nv, fresh = { 0 };
	json_t *name = json_object_get(tool, "name"), *in = json_object_get(tool, "inputSchema");
	unsigned char digest[32] = { 0 };
	char err[320], msg[400];
	int has_digest;

	if (!json_is_string(name) || json_string_length(name) == 0 ||
	    strlen(json_string_value(name)) != json_string_length(name))
		return 0;
	has_digest = in != NULL && tooltab_digest(in, digest) == 0;
	if ((e = tooltab_find_linear(l, json_string_value(name))) != NULL) {
		/* the same tool again (a server repeating itself) is fine; two different
		 * schemas under one name leave no way to know which one the server applies */
		if (has_digest && e->has_digest && memcmp(digest, e->digest, 32) == 0)
			return 0;
		tooltab_unusable(e, "listed more than once with different inputSchemas");
		return e->problem == NULL ? -1 : 0;
	}
	if (l->n >= t->max_tools) {
		l->overflow = 1;
		return 0;
	}
	if ((fresh.name = strdup(json_string_value(name))) == NULL)
		return -1;
	fresh.bytes = json_string_length(name) + sizeof(fresh);
	if (in == NULL)
		tooltab_unusable(&fresh, "no inputSchema");
	else if (!has_digest)
		fresh.problem = NULL;   /* out of memory: reported below */
	else if (schema_compile(in, &fresh.schema, err, sizeof(err)) == -1) {
		snprintf(msg, sizeof(msg), "inputSchema not usable: %s", err);
		tooltab_unusable(&fresh, msg);
	}
	if (fresh.schema == NULL && fresh.problem == NULL) {
		tooltab_tool_clear(&fresh);
		return -1;
	}
	memcpy(fresh.digest, digest, sizeof(digest));
	fresh.has_digest = has_digest;
	/* the compiled form is what stays in memory: count it, not the JSON text */
	fresh.bytes += schema_bytes(fresh.schema) + (fresh.problem ? strlen(fresh.problem) : 0);
	if (l->bytes + fresh.bytes > t->max_bytes) {
		tooltab_tool_clear(&fresh);
		l->overflow = 1;
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;

		if ((nv = reallocarray(l->v, cap, sizeof(*nv))) == NULL) {
			tooltab_tool_clear(&fresh);
			return -1;
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = fresh;
	l->bytes += fresh.bytes;
	return 1;
}

int
tooltab_learn(struct tooltab *t, json_t *response, int first_page)
{
	struct tooltab_list fresh = { 0 }, *l;
	json_t *tools, *tool;
	size_t i;
	int learnt = 0, rc;

	tools = json_object_get(json_object_get(response, "result"), "tools");
	if (t == NULL || !json_is_array(tools))
		return -1;
	pthread_mutex_lock(&t->mu);
	/* a continuation page extends the current list; a first page starts over */
	l = first_page ? &fresh : &t->list;
	json_array_foreach(tools, i, tool) {
		if (!json_is_object(tool))
			continue;
		if ((rc = tooltab_add(t, l, tool)) == -1) {
			/* out of memory: keep what was learnt, calls to the rest are refused */
			l->overflow = 1;
			break;
		}
		learnt += rc;
	}
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), tooltab_cmp);
	if (first_page) {
		tooltab_list_clear(&t->list);
		t->list = fresh;
	}
	pthread_mutex_unlock(&t->mu);
	return learnt;
}

void
tooltab_clear(struct tooltab *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	tooltab_list_clear(&t->list);
	pthread_mutex_unlock(&t->mu);
}

size_t
tooltab_count(struct tooltab *t)
{
	size_t n;

	if (t == NULL)
		return 0;
	pthread_mutex_lock(&t->mu);
	n = t->list.n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

/* Tool names in messages: printable, cut at 64 bytes. */
static void
tooltab_name(const char *s, char *out, size_t len)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len && i < 64; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '"' ? '?' : s[i];
	out[i] = '\0';
}

int
tooltab_check(struct tooltab *t, const char *tool, json_t *arguments,
    struct tooltab_result *res)
{
	struct tooltab_tool *e;
	json_t *empty = NULL;
	char name[72], err[TOOLTAB_DETAIL_MAX - 80];

	memset(res, 0, sizeof(*res));
	res->allow = 0;
	if (t == NULL || tool == NULL) {
		res->reason = "tool never listed";
		snprintf(res->detail, sizeof(res->detail), "tools/call without a tool name");
		return 0;
	}
	tooltab_name(tool, name, sizeof(name));
	pthread_mutex_lock(&t->mu);
	if ((e = tooltab_find(&t->list, tool)) == NULL) {
		res->reason = "tool never listed";
		if (t->list.overflow)
			snprintf(res->detail, sizeof(res->detail), "tool \"%s\" was not learnt: "
			    "the session's tools/list exceeded the gateway's limit of %zu tools "
			    "or %zu bytes of schemas", name, t->max_tools, t->max_bytes);
		else
			snprintf(res->detail, sizeof(res->detail), "tool \"%s\" was not listed in "
			    "this session (call tools/list first)", name);
		goto done;
	}
	if (e->schema == NULL) {
		res->reason = "unusable inputSchema";
		snprintf(res->detail, sizeof(res->detail), "tool \"%s\": %s", name,
		    e->problem != NULL ? e->problem : "out of memory");
		goto done;
	}
	if (arguments == NULL && (arguments = empty = json_object()) == NULL) {
		res->reason = "invalid arguments";
		snprintf(res->detail, sizeof(res->detail), "out of memory");
		goto done;
	}
	if (schema_validate(e->schema, arguments, "arguments", err, sizeof(err)) == -1) {
		res->reason = "invalid arguments";
		snprintf(res->detail, sizeof(res->detail), "%s", err);
		goto done;
	}
	res->allow = 1;
done:
	pthread_mutex_unlock(&t->mu);
	json_decref(empty);
	return 0;
}
