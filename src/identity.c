/* Identity map (agents.json) parsing, certificate -> peer facts, peer -> agent lookup.
 * Slightly over 1000 lines: the map parser, its index and the peer lookup share the
 * private index layout (issuer-qualified keys), so they stay together; the DN
 * grammar is in dn.c and the argument rules in argrule.c. */
#include "identity.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "argrule.h"
#include "dn.h"
#include "file.h"
#include "hash.h"
#include "jsonpos.h"
#include "policy.h"
#include "text.h"

/* Largest agents.json identity_map_load accepts (10k agents are ~2 MB). */
#define IDENTITY_MAX_FILE (64u * 1024 * 1024)

/* Open-addressing hash from a string key to an agent index. */
struct identity_hash {
	size_t cap;           /* power of two, at least twice the entries */
	const char **keys;
	size_t *vals;
};

/* by_uri and by_subject are keyed by "ISSUER\nVALUE": ISSUER is the agent's "issuer"
 * (normalized RFC 4514, which never holds a newline) or "" for certgate's own CA. */
struct identity_index {
	struct identity_hash by_id;
	struct identity_hash by_uri;
	struct identity_hash by_subject;
	char **keys;          /* the composite keys, owned */
	size_t nkeys;
};

/* While parsing: the text, for line numbers in messages (positions built on demand). */
struct identity_parse {
	const char *text;
	size_t len;
	struct jsonpos *pos;
};

/* Roles while parsing: name -> scope list (borrowed from the JSON document) and
 * compiled argument rules (owned by the map once parsed, NULL when none). */
struct identity_role {
	const char *name;
	json_t *scopes;
	struct argrule_set *rules;
};


static int
identity_hash_init(struct identity_hash *h, size_t n)
{
	h->cap = 16;
	while (h->cap < n * 2)
		h->cap *= 2;
	h->keys = calloc(h->cap, sizeof(*h->keys));
	h->vals = calloc(h->cap, sizeof(*h->vals));
	return h->keys != NULL && h->vals != NULL ? 0 : -1;
}

static void
identity_hash_free(struct identity_hash *h)
{
	free(h->keys);
	free(h->vals);
}

/* Returns the index stored for key, or SIZE_MAX. */
static size_t
identity_hash_get(const struct identity_hash *h, const char *key)
{
	size_t i;

	if (h->cap == 0 || key == NULL)
		return SIZE_MAX;
	for (i = hash_str(key) & (h->cap - 1); h->keys[i] != NULL; i = (i + 1) & (h->cap - 1))
		if (strcmp(h->keys[i], key) == 0)
			return h->vals[i];
	return SIZE_MAX;
}

/* Inserts key (borrowed); -1 when it is already present. Capacity was sized up front. */
static int
identity_hash_put(struct identity_hash *h, const char *key, size_t val)
{
	size_t i;

	for (i = hash_str(key) & (h->cap - 1); h->keys[i] != NULL; i = (i + 1) & (h->cap - 1))
		if (strcmp(h->keys[i], key) == 0)
			return -1;
	h->keys[i] = key;
	h->vals[i] = val;
	return 0;
}

static void
identity_index_free(struct identity_index *ix)
{
	if (ix == NULL)
		return;
	identity_hash_free(&ix->by_id);
	identity_hash_free(&ix->by_uri);
	identity_hash_free(&ix->by_subject);
	while (ix->nkeys > 0)
		free(ix->keys[--ix->nkeys]);
	free(ix->keys);
	free(ix);
}

static void
identity_agent_clear(struct identity_agent *a)
{
	size_t i;

	free(a->id);
	free(a->uri);
	free(a->subject);
	free(a->issuer);
	for (i = 0; i < a->nroles; i++)
		free(a->roles[i]);
	free(a->roles);
	for (i = 0; i < a->nscopes; i++)
		free(a->scopes[i]);
	free(a->scopes);
	free(a->scopes_str);
	free(a->argrules);
}

void
identity_map_free(struct identity_map *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nagents; i++)
		identity_agent_clear(&m->agents[i]);
	free(m->agents);
	identity_index_free(m->index);
	for (i = 0; i < m->nrulesets; i++)
		argrule_set_free(m->rulesets[i]);
	free(m->rulesets);
	free(m);
}

/* Ids end up in headers, audit lines and file names (DIR/agents/ID). */
static int
identity_id_valid(const char *id)
{
	const unsigned char *c;

	if (*id == '\0' || strlen(id) > 128)
		return 0;
	for (c = (const unsigned char *)id; *c != '\0'; c++)
		if (*c <= 0x20 || *c >= 0x7f || strchr("/\\\",;=", *c) != NULL)
			return 0;
	return 1;
}

/* Values matched against certificates; control bytes would only ever be a mistake. */
static int
identity_text_valid(const char *s)
{
	const unsigned char *c;

	if (*s == '\0')
		return 0;
	for (c = (const unsigned char *)s; *c != '\0'; c++)
		if (*c < 0x20 || *c == 0x7f)
			return 0;
	return 1;
}

/* Checks a JSON array of scope strings; where names the owner for the message. */
static int
identity_check_scopes(json_t *arr, const char *where, char *err, size_t errlen)
{
	json_t *v;
	size_t i;

	if (!json_is_array(arr)) {
		text_seterr(err, errlen, "%s: scopes must be an array of strings", where);
		return -1;
	}
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v)) {
			text_seterr(err, errlen, "%s: scope %zu is not a string", where, i);
			return -1;
		}
		if (!policy_scope_valid(json_string_value(v))) {
			text_seterr(err, errlen, "%s: invalid scope \"%s\" (expected *, "
			    "mcp:GLOB, tools:GLOB, resources:GLOB or prompts:GLOB)", where,
			    json_string_value(v));
			return -1;
		}
	}
	return 0;
}

/* Takes ownership of a compiled rule set (NULL is fine); -1 on ENOMEM (set freed). */
static int
identity_keep_rules(struct identity_map *m, struct argrule_set *set)
{
	struct argrule_set **n;

	if (set == NULL)
		return 0;
	if ((n = reallocarray(m->rulesets, m->nrulesets + 1, sizeof(*n))) == NULL) {
		argrule_set_free(set);
		return -1;
	}
	m->rulesets = n;
	m->rulesets[m->nrulesets++] = set;
	return 0;
}

/* Compiles obj's "arguments" (if any) into *out, kept by the map. */
static int
identity_parse_rules(struct identity_map *m, json_t *obj, const char *where,
    struct argrule_set **out, char *err, size_t errlen)
{
	json_t *args = json_object_get(obj, "arguments");

	*out = NULL;
	if (args == NULL)
		return 0;
	if (argrule_set_parse(args, where, out, err, errlen) == -1)
		return -1;
	if (identity_keep_rules(m, *out) == -1) {
		*out = NULL;
		text_seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int identity_check_keys(json_t *obj, const char *const *allowed, const char *where,
    char *err, size_t errlen);

/* A role is a scope array, or {"scopes": [...], "arguments": {...}}. */
static int
identity_parse_role(struct identity_map *m, const char *name, json_t *v,
    struct identity_role *r, char *err, size_t errlen)
{
	static const char *const role_keys[] = { "scopes", "arguments", NULL };
	char where[160];

	snprintf(where, sizeof(where), "role \"%.100s\"", name);
	if (*name == '\0') {
		text_seterr(err, errlen, "role with an empty name");
		return -1;
	}
	r->name = name;
	if (json_is_object(v)) {
		if (identity_check_keys(v, role_keys, where, err, errlen) == -1 ||
		    identity_parse_rules(m, v, where, &r->rules, err, errlen) == -1)
			return -1;
		/* no "scopes": a role that only adds rules (NULL iterates as empty) */
		if ((r->scopes = json_object_get(v, "scopes")) == NULL)
			return 0;
	} else
		r->scopes = v;
	if (!json_is_array(r->scopes)) {
		text_seterr(err, errlen, "%s: must be an array of scopes or an object with "
		    "\"scopes\" and \"arguments\"", where);
		return -1;
	}
	return identity_check_scopes(r->scopes, where, err, errlen);
}

static int
identity_parse_roles(struct identity_map *m, json_t *roles, struct identity_role **out,
    size_t *nout, char *err, size_t errlen)
{
	const char *name;
	json_t *v;
	size_t n = 0;

	*out = NULL;
	*nout = 0;
	if (roles == NULL)
		return 0;
	if (!json_is_object(roles)) {
		text_seterr(err, errlen, "\"roles\" must be an object of scope arrays");
		return -1;
	}
	if ((*out = calloc(json_object_size(roles) + 1, sizeof(**out))) == NULL) {
		text_seterr(err, errlen, "out of memory");
		return -1;
	}
	json_object_foreach(roles, name, v) {
		if (identity_parse_role(m, name, v, &(*out)[n], err, errlen) == -1)
			return -1;
		n++;
	}
	*nout = n;
	return 0;
}

static const struct identity_role *
identity_role_find(const struct identity_role *roles, size_t nroles, const char *name)
{
	size_t i;

	for (i = 0; i < nroles; i++)
		if (strcmp(roles[i].name, name) == 0)
			return &roles[i];
	return NULL;
}

/* Appends a rule set to the agent's list unless NULL or already there. The list was
 * sized for its own set plus one per role. */
static void
identity_add_rules(struct identity_agent *a, struct argrule_set *set)
{
	size_t i;

	if (set == NULL)
		return;
	for (i = 0; i < a->nargrules; i++)
		if (a->argrules[i] == set)
			return;
	a->argrules[a->nargrules++] = set;
}

/* Appends s to a's effective scopes unless present (linear: agents hold few scopes). */
static int
identity_add_scope(struct identity_agent *a, size_t *cap, const char *s)
{
	char **n;
	size_t i;

	for (i = 0; i < a->nscopes; i++)
		if (strcmp(a->scopes[i], s) == 0)
			return 0;
	if (a->nscopes == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		if ((n = reallocarray(a->scopes, *cap, sizeof(*n))) == NULL)
			return -1;
		a->scopes = n;
	}
	if ((a->scopes[a->nscopes] = strdup(s)) == NULL)
		return -1;
	a->nscopes++;
	return 0;
}

static int
identity_add_scopes(struct identity_agent *a, size_t *cap, json_t *arr)
{
	json_t *v;
	size_t i;

	json_array_foreach(arr, i, v)
		if (identity_add_scope(a, cap, json_string_value(v)) == -1)
			return -1;
	return 0;
}

static int
identity_join_scopes(struct identity_agent *a)
{
	size_t i, len = 1;
	char *p;

	for (i = 0; i < a->nscopes; i++)
		len += strlen(a->scopes[i]) + 1;
	if ((a->scopes_str = p = malloc(len)) == NULL)
		return -1;
	*p = '\0';
	for (i = 0; i < a->nscopes; i++) {
		if (i > 0)
			*p++ = ' ';
		len = strlen(a->scopes[i]);
		memcpy(p, a->scopes[i], len + 1);
		p += len;
	}
	return 0;
}

/* Optional string member; -1 when present but not a valid non-empty string. */
static int
identity_opt_string(json_t *obj, const char *key, char **out, const char *where, char *err,
    size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL)
		return 0;
	if (!json_is_string(v) || !identity_text_valid(json_string_value(v))) {
		text_seterr(err, errlen, "%s: \"%s\" must be a non-empty string without "
		    "control characters", where, key);
		return -1;
	}
	if ((*out = strdup(json_string_value(v))) == NULL) {
		text_seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Optional RFC 4514 member, stored normalized (dn.h) so that it compares with what
 * certificates give. A value in another form is refused rather than never matching;
 * the message names the line (m->text, when known). */
static int
identity_opt_dn(struct identity_map *m, json_t *obj, size_t idx, const char *key, char **out,
    const char *where, char *err, size_t errlen)
{
	struct identity_parse *ps = m->parse;
	char why[384], path[64], *raw = NULL, line[32] = "";
	int n;

	*out = NULL;
	if (identity_opt_string(obj, key, &raw, where, err, errlen) == -1)
		return -1;
	if (raw == NULL)
		return 0;
	if (dn_parse(raw, strlen(raw), out, why, sizeof(why)) == 0) {
		free(raw);
		return 0;
	}
	snprintf(path, sizeof(path), "$.agents[%zu].%s", idx, key);
	if (ps != NULL && ps->text != NULL) {
		if (ps->pos == NULL)
			(void)jsonpos_build(ps->text, ps->len, &ps->pos);
		if ((n = jsonpos_line(ps->pos, path)) > 0)
			snprintf(line, sizeof(line), "line %d: ", n);
	}
	text_seterr(err, errlen, "%s%s: \"%s\" \"%.120s\" is not an RFC 4514 DN: %s", line,
	    where, key, raw, why);
	free(raw);
	return -1;
}

static int
identity_parse_rate(json_t *rate, struct identity_agent *a, const char *where, char *err,
    size_t errlen)
{
	const char *key;
	json_t *v, *ps, *burst;

	if (rate == NULL)
		return 0;
	if (!json_is_object(rate)) {
		text_seterr(err, errlen, "%s: \"rate\" must be an object", where);
		return -1;
	}
	json_object_foreach(rate, key, v) {
		if (strcmp(key, "per_second") != 0 && strcmp(key, "burst") != 0) {
			text_seterr(err, errlen, "%s: unknown key \"rate.%.64s\"", where, key);
			return -1;
		}
	}
	ps = json_object_get(rate, "per_second");
	burst = json_object_get(rate, "burst");
	if (!json_is_number(ps) || !(json_number_value(ps) > 0)) {
		text_seterr(err, errlen, "%s: \"rate.per_second\" must be a number > 0", where);
		return -1;
	}
	a->rate_per_second = json_number_value(ps);
	/* Without a burst the bucket holds one second's worth (at least one request). */
	a->rate_burst = a->rate_per_second < 1 ? 1 : a->rate_per_second;
	if (burst != NULL) {
		if (!json_is_number(burst) || !(json_number_value(burst) >= 1)) {
			text_seterr(err, errlen, "%s: \"rate.burst\" must be a number >= 1",
			    where);
			return -1;
		}
		a->rate_burst = json_number_value(burst);
	}
	return 0;
}

static const char *const identity_agent_keys[] = {
	"id", "uri", "subject", "issuer", "roles", "scopes", "rate", "arguments", NULL
};

static int
identity_check_keys(json_t *obj, const char *const *allowed, const char *where, char *err,
    size_t errlen)
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach(obj, key, v) {
		for (i = 0; allowed[i] != NULL; i++)
			if (strcmp(key, allowed[i]) == 0)
				break;
		if (allowed[i] == NULL) {
			text_seterr(err, errlen, "%s: unknown key \"%.64s\"", where, key);
			return -1;
		}
	}
	return 0;
}

static int
identity_parse_agent(struct identity_map *m, json_t *obj, size_t idx,
    const struct identity_role *roles, size_t nroles, struct identity_agent *a, char *err,
    size_t errlen)
{
	json_t *id, *v, *ownscopes, *rs;
	struct argrule_set *own;
	char where[192];
	size_t i, cap = 0;

	snprintf(where, sizeof(where), "agents[%zu]", idx);
	if (!json_is_object(obj)) {
		text_seterr(err, errlen, "%s: must be an object", where);
		return -1;
	}
	id = json_object_get(obj, "id");
	if (!json_is_string(id) || !identity_id_valid(json_string_value(id))) {
		text_seterr(err, errlen, "%s: \"id\" must be a non-empty string of at most "
		    "128 printable characters without space / \\ \" , ; =", where);
		return -1;
	}
	snprintf(where, sizeof(where), "agent \"%s\"", json_string_value(id));
	if (identity_check_keys(obj, identity_agent_keys, where, err, errlen) == -1)
		return -1;
	if ((a->id = strdup(json_string_value(id))) == NULL)
		goto nomem;
	if (identity_opt_string(obj, "uri", &a->uri, where, err, errlen) == -1 ||
	    identity_opt_dn(m, obj, idx, "subject", &a->subject, where, err, errlen) == -1 ||
	    identity_opt_dn(m, obj, idx, "issuer", &a->issuer, where, err, errlen) == -1)
		return -1;
	if (a->uri == NULL && a->subject == NULL) {
		text_seterr(err, errlen, "%s: needs \"uri\" or \"subject\"", where);
		return -1;
	}
	ownscopes = json_object_get(obj, "scopes");
	if (ownscopes != NULL) {
		if (identity_check_scopes(ownscopes, where, err, errlen) == -1)
			return -1;
		if (identity_add_scopes(a, &cap, ownscopes) == -1)
			goto nomem;
	}
	rs = json_object_get(obj, "roles");
	if (rs != NULL && !json_is_array(rs)) {
		text_seterr(err, errlen, "%s: \"roles\" must be an array of role names", where);
		return -1;
	}
	if (identity_parse_rules(m, obj, where, &own, err, errlen) == -1)
		return -1;
	if ((a->roles = calloc(json_array_size(rs) + 1, sizeof(*a->roles))) == NULL ||
	    (a->argrules = calloc(json_array_size(rs) + 1, sizeof(*a->argrules))) == NULL)
		goto nomem;
	identity_add_rules(a, own);
	json_array_foreach(rs, i, v) {
		const struct identity_role *role;

		if (!json_is_string(v)) {
			text_seterr(err, errlen, "%s: role %zu is not a string", where, i);
			return -1;
		}
		role = identity_role_find(roles, nroles, json_string_value(v));
		if (role == NULL) {
			text_seterr(err, errlen, "%s: unknown role \"%.100s\"", where,
			    json_string_value(v));
			return -1;
		}
		if ((a->roles[a->nroles] = strdup(json_string_value(v))) == NULL)
			goto nomem;
		a->nroles++;
		if (identity_add_scopes(a, &cap, role->scopes) == -1)
			goto nomem;
		identity_add_rules(a, role->rules);
	}
	if (a->nargrules == 0) {
		free(a->argrules);
		a->argrules = NULL;
	}
	if (identity_parse_rate(json_object_get(obj, "rate"), a, where, err, errlen) == -1)
		return -1;
	if (identity_join_scopes(a) == -1)
		goto nomem;
	return 0;
nomem:
	text_seterr(err, errlen, "out of memory");
	return -1;
}

/* "ISSUER\nVALUE" (see identity_index), malloc'd. */
static char *
identity_key(const char *issuer, const char *value)
{
	char *k;

	if (asprintf(&k, "%s\n%s", issuer ? issuer : "", value) < 0)
		return NULL;
	return k;
}

/* Puts the composite key for (a->issuer, value) into h; 1 when another agent has it. */
static int
identity_index_put(struct identity_index *ix, struct identity_hash *h, const char *issuer,
    const char *value, size_t i, size_t *other)
{
	char *k;

	if ((k = identity_key(issuer, value)) == NULL)
		return -1;
	ix->keys[ix->nkeys++] = k;
	if (identity_hash_put(h, k, i) == -1) {
		*other = identity_hash_get(h, k);
		return 1;
	}
	return 0;
}

static int
identity_build_index(struct identity_map *m, char *err, size_t errlen)
{
	struct identity_index *ix;
	struct identity_agent *a;
	size_t i, other = 0;
	int r;

	if ((ix = calloc(1, sizeof(*ix))) == NULL)
		goto nomem;
	m->index = ix;
	if (identity_hash_init(&ix->by_id, m->nagents) == -1 ||
	    identity_hash_init(&ix->by_uri, m->nagents) == -1 ||
	    identity_hash_init(&ix->by_subject, m->nagents) == -1 ||
	    (ix->keys = calloc(2 * m->nagents + 1, sizeof(*ix->keys))) == NULL)
		goto nomem;
	for (i = 0; i < m->nagents; i++) {
		a = &m->agents[i];
		if (identity_hash_put(&ix->by_id, a->id, i) == -1) {
			text_seterr(err, errlen, "agent \"%s\": duplicate id", a->id);
			return -1;
		}
		/* the same uri or subject may belong to two agents of different issuers */
		if (a->uri != NULL &&
		    (r = identity_index_put(ix, &ix->by_uri, a->issuer, a->uri, i, &other)) != 0) {
			if (r == -1)
				goto nomem;
			text_seterr(err, errlen, "agent \"%s\": uri \"%.200s\" already belongs "
			    "to agent \"%s\"%s", a->id, a->uri, m->agents[other].id,
			    a->issuer ? " with the same issuer" : "");
			return -1;
		}
		if (a->subject != NULL && (r = identity_index_put(ix, &ix->by_subject, a->issuer,
		    a->subject, i, &other)) != 0) {
			if (r == -1)
				goto nomem;
			text_seterr(err, errlen, "agent \"%s\": subject \"%.200s\" already "
			    "belongs to agent \"%s\"%s", a->id, a->subject, m->agents[other].id,
			    a->issuer ? " with the same issuer" : "");
			return -1;
		}
	}
	return 0;
nomem:
	text_seterr(err, errlen, "out of memory");
	return -1;
}

static int
identity_parse_doc(json_t *root, struct identity_map *m, char *err, size_t errlen)
{
	static const char *const top_keys[] = { "roles", "agents", NULL };
	struct identity_role *roles = NULL;
	size_t nroles = 0, i;
	json_t *agents;
	int rv = -1;

	if (!json_is_object(root)) {
		text_seterr(err, errlen, "top level must be an object");
		return -1;
	}
	if (identity_check_keys(root, top_keys, "top level", err, errlen) == -1)
		return -1;
	if (identity_parse_roles(m, json_object_get(root, "roles"), &roles, &nroles, err,
	    errlen) == -1)
		goto fail;
	agents = json_object_get(root, "agents");
	if (!json_is_array(agents)) {
		text_seterr(err, errlen, "\"agents\" must be an array");
		goto fail;
	}
	m->agents = calloc(json_array_size(agents) + 1, sizeof(*m->agents));
	if (m->agents == NULL) {
		text_seterr(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < json_array_size(agents); i++) {
		m->nagents++;
		if (identity_parse_agent(m, json_array_get(agents, i), i, roles, nroles,
		    &m->agents[i], err, errlen) == -1)
			goto fail;
	}
	rv = identity_build_index(m, err, errlen);
fail:
	free(roles);
	return rv;
}

int
identity_map_parse(const char *json, size_t len, struct identity_map **out, char *err,
    size_t errlen)
{
	struct identity_parse ps = { json, len, NULL };
	struct identity_map *m = NULL;
	json_error_t jerr;
	json_t *root;

	*out = NULL;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		text_seterr(err, errlen, "line %d column %d: %s", jerr.line, jerr.column,
		    jerr.text);
		return -1;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		text_seterr(err, errlen, "out of memory");
		goto fail;
	}
	m->parse = &ps;
	if (identity_parse_doc(root, m, err, errlen) == -1)
		goto fail;
	m->parse = NULL;
	jsonpos_free(ps.pos);
	json_decref(root);
	*out = m;
	return 0;
fail:
	jsonpos_free(ps.pos);
	identity_map_free(m);
	json_decref(root);
	return -1;
}

int
identity_map_load(const char *path, struct identity_map **out, char *err, size_t errlen)
{
	char *buf = NULL, sub[256];
	size_t len = 0;
	int rv = -1;

	*out = NULL;
	if (file_read(path, IDENTITY_MAX_FILE, &buf, &len) == -1) {
		if (errno == EFBIG)
			text_seterr(err, errlen, "%s: larger than %u bytes", path,
			    IDENTITY_MAX_FILE);
		else
			text_seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (identity_map_parse(buf, len, out, sub, sizeof(sub)) == -1) {
		text_seterr(err, errlen, "%s: %s", path, sub);
		goto fail;
	}
	rv = 0;
fail:
	free(buf);
	return rv;
}

char *
identity_name_rfc4514(const X509_NAME *name)
{
	return dn_format(name);
}

void
identity_peer_clear(struct identity_peer *p)
{
	size_t i;

	if (p == NULL)
		return;
	free(p->subject);
	free(p->issuer);
	for (i = 0; i < p->nuris; i++)
		free(p->uris[i]);
	free(p->uris);
	memset(p, 0, sizeof(*p));
}

static int
identity_peer_serial(X509 *cert, struct identity_peer *p)
{
	BIGNUM *bn;
	char *hex = NULL;
	int rv = -1;

	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)) == NULL)
		return -1;
	if ((hex = BN_bn2hex(bn)) != NULL && strlen(hex) < sizeof(p->serial)) {
		memcpy(p->serial, hex, strlen(hex) + 1);
		rv = 0;
	}
	OPENSSL_free(hex);
	BN_free(bn);
	return rv;
}

/* A SAN URI is used for matching and copied into headers: refuse anything that is not
 * plain printable ASCII (a NUL would also make two URIs compare equal). */
static int
identity_uri_ok(const unsigned char *d, int len)
{
	int i;

	if (len <= 0)
		return 0;
	for (i = 0; i < len; i++)
		if (d[i] <= 0x20 || d[i] >= 0x7f)
			return 0;
	return 1;
}

static int
identity_peer_uris(X509 *cert, struct identity_peer *p)
{
	GENERAL_NAMES *gens;
	GENERAL_NAME *g;
	const unsigned char *d;
	int i, n, len, rv = -1;

	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (gens == NULL)
		return 0;
	n = sk_GENERAL_NAME_num(gens);
	if ((p->uris = calloc((size_t)n + 1, sizeof(*p->uris))) == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_URI)
			continue;
		d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		if (!identity_uri_ok(d, len))
			continue;
		if ((p->uris[p->nuris] = strndup((const char *)d, (size_t)len)) == NULL)
			goto fail;
		p->nuris++;
	}
	rv = 0;
fail:
	GENERAL_NAMES_free(gens);
	return rv;
}

int
identity_peer_from_cert(X509 *cert, struct identity_peer *p)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct tm tm;

	memset(p, 0, sizeof(*p));
	if (cert == NULL)
		return -1;
	if (identity_peer_serial(cert, p) == -1)
		goto fail;
	if ((p->subject = identity_name_rfc4514(X509_get_subject_name(cert))) == NULL ||
	    (p->issuer = identity_name_rfc4514(X509_get_issuer_name(cert))) == NULL)
		goto fail;
	if (identity_peer_uris(cert, p) == -1)
		goto fail;
	if (!X509_digest(cert, EVP_sha256(), md, &mdlen) || mdlen != 32)
		goto fail;
	text_hex(md, mdlen, p->hash);
	memset(&tm, 0, sizeof(tm));
	if (!ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm))
		goto fail;
	p->not_after = (long long)timegm(&tm);
	return 0;
fail:
	identity_peer_clear(p);
	return -1;
}

/* The agent for (issuer, value) in h, or SIZE_MAX. */
static size_t
identity_get2(const struct identity_hash *h, const char *issuer, const char *value)
{
	char stack[512], *k = stack;
	size_t li = strlen(issuer), lv = strlen(value), r;

	if (li + lv + 2 > sizeof(stack) && (k = malloc(li + lv + 2)) == NULL)
		return SIZE_MAX;
	memcpy(k, issuer, li);
	k[li] = '\n';
	memcpy(k + li + 1, value, lv + 1);
	r = identity_hash_get(h, k);
	if (k != stack)
		free(k);
	return r;
}

/* An agent bound to the peer's issuer first, then (issued by certgate's CA) one
 * without "issuer". */
static size_t
identity_get_peer(const struct identity_hash *h, const struct identity_peer *p,
    const char *value)
{
	size_t k = SIZE_MAX;

	if (p->issuer != NULL && *p->issuer != '\0')
		k = identity_get2(h, p->issuer, value);
	if (k == SIZE_MAX && p->own_ca)
		k = identity_get2(h, "", value);
	return k;
}

const struct identity_agent *
identity_lookup(const struct identity_map *m, const struct identity_peer *p)
{
	const struct identity_index *ix;
	size_t i, k;

	if (m == NULL || p == NULL || (ix = m->index) == NULL)
		return NULL;
	for (i = 0; i < p->nuris; i++)
		if ((k = identity_get_peer(&ix->by_uri, p, p->uris[i])) != SIZE_MAX)
			return &m->agents[k];
	if (p->subject != NULL && (k = identity_get_peer(&ix->by_subject, p, p->subject)) !=
	    SIZE_MAX)
		return &m->agents[k];
	return NULL;
}

int
identity_peer_own_ca(struct identity_peer *p, X509 *cert, STACK_OF(X509) *own)
{
	EVP_PKEY *pub;
	X509 *ca;
	int i;

	p->own_ca = 0;
	for (i = 0; cert != NULL && i < sk_X509_num(own); i++) {
		ca = sk_X509_value(own, i);
		if (X509_check_issued(ca, cert) != X509_V_OK ||
		    (pub = X509_get0_pubkey(ca)) == NULL)
			continue;
		if (X509_verify(cert, pub) == 1) {
			p->own_ca = 1;
			break;
		}
	}
	ERR_clear_error();
	return p->own_ca;
}

int
identity_peer_own_ca_chain(struct identity_peer *p, STACK_OF(X509) *chain,
    STACK_OF(X509) *own)
{
	X509 *issuer;
	int i;

	p->own_ca = 0;
	if (sk_X509_num(chain) < 2)
		return 0;
	issuer = sk_X509_value(chain, 1);
	for (i = 0; i < sk_X509_num(own); i++)
		if (X509_cmp(sk_X509_value(own, i), issuer) == 0) {
			p->own_ca = 1;
			break;
		}
	return p->own_ca;
}

const struct identity_agent *
identity_find_id(const struct identity_map *m, const char *id)
{
	size_t k;

	if (m == NULL || m->index == NULL || id == NULL)
		return NULL;
	k = identity_hash_get(&((const struct identity_index *)m->index)->by_id, id);
	return k == SIZE_MAX ? NULL : &m->agents[k];
}

/* Appends src to the buffer at *pp, quoting when XFCC requires it. The caller sized the
 * buffer for the worst case (every byte escaped, plus quotes). Control bytes make the
 * value unusable in a header: -1. */
static int
identity_xfcc_value(char **pp, const char *src, int always_quote)
{
	const char *c;
	char *p = *pp;
	int quote = always_quote;

	for (c = src; *c != '\0'; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return -1;
		if (strchr(",;=\"\\", *c) != NULL)
			quote = 1;
	}
	if (quote)
		*p++ = '"';
	for (c = src; *c != '\0'; c++) {
		if (quote && (*c == '"' || *c == '\\'))
			*p++ = '\\';
		*p++ = *c;
	}
	if (quote)
		*p++ = '"';
	*pp = p;
	return 0;
}

char *
identity_xfcc(const struct identity_peer *p)
{
	size_t len, i;
	char *buf, *w;

	if (p == NULL)
		return NULL;
	len = strlen("Hash=") + strnlen(p->hash, sizeof(p->hash)) + 1;
	if (p->subject != NULL)
		len += strlen(";Subject=") + 2 * strlen(p->subject) + 2;
	for (i = 0; i < p->nuris; i++)
		len += strlen(";URI=") + 2 * strlen(p->uris[i]) + 2;
	if ((buf = w = malloc(len)) == NULL)
		return NULL;
	w += sprintf(w, "Hash=%.64s", p->hash);
	if (p->subject != NULL) {
		memcpy(w, ";Subject=", 9);
		w += 9;
		if (identity_xfcc_value(&w, p->subject, 1) == -1)
			goto fail;
	}
	for (i = 0; i < p->nuris; i++) {
		memcpy(w, ";URI=", 5);
		w += 5;
		if (identity_xfcc_value(&w, p->uris[i], 0) == -1)
			goto fail;
	}
	*w = '\0';
	return buf;
fail:
	free(buf);
	return NULL;
}
