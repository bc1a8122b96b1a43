/* JSON Schema subset: compiling an upstream's inputSchema into an immutable graph of
 * nodes, and validating tools/call arguments against it (see include/schema.h).
 *
 * Nodes live in one array owned by the schema, so $ref may point anywhere (cycles
 * included) and freeing is one loop. Every bound the header promises is enforced here:
 * node count and nesting at compile time, steps and recursion at validation time.
 *
 * Why one file of ~1,300 lines: compiling and validating are two walks over the same
 * private node layout (struct snode), one function per keyword family each; splitting
 * them would export that layout through a second header for no other user. The file
 * reads in two halves: "compiling" and "validating". */
#include "schema.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	ST_NULL = 1 << 0,
	ST_BOOLEAN = 1 << 1,
	ST_OBJECT = 1 << 2,
	ST_ARRAY = 1 << 3,
	ST_NUMBER = 1 << 4,
	ST_STRING = 1 << 5,
	ST_INTEGER = 1 << 6,
};

static const struct {
	const char *name;
	unsigned bit;
} schema_types[] = {
	{ "null", ST_NULL }, { "boolean", ST_BOOLEAN }, { "object", ST_OBJECT },
	{ "array", ST_ARRAY }, { "number", ST_NUMBER }, { "string", ST_STRING },
	{ "integer", ST_INTEGER },
};

struct snode;

struct sprop {
	char *name;
	struct snode *schema;
};

struct spattern {
	pcre2_code *re;
	char *src;
	struct snode *schema;   /* patternProperties; NULL for "pattern" */
};

struct snode {
	int always;             /* 1: the schema true, 0: false, -1: look at the keywords */
	unsigned types;         /* 0: any type */
	json_t *enum_values;    /* private deep copy */
	json_t *const_value;
	int has_const;
	int has_min, has_max, min_excl, max_excl;
	double min, max;
	double multiple;        /* 0: none */
	long long min_len, max_len;       /* -1: none */
	struct spattern *pattern;
	struct snode **prefix;  /* tuple items */
	size_t nprefix;
	struct snode *rest;     /* items after the tuple (or every item) */
	long long min_items, max_items;
	int unique;
	struct snode *contains;
	struct sprop *props;    /* sorted by name */
	size_t nprops;
	struct spattern *pprops;
	size_t npprops;
	struct snode *additional;
	char **required;
	size_t nrequired;
	long long min_props, max_props;
	struct snode *property_names;
	struct snode **all_of, **any_of, **one_of;
	size_t nall_of, nany_of, none_of;
	struct snode *not_;
	struct snode *if_, *then_, *else_;
	struct snode *ref;
};

struct schema {
	struct snode **nodes;
	size_t nnodes, cap;
	struct snode *root;
	pcre2_match_context *mctx;
};

/* Messages quote names and patterns from the upstream's schema and the client's
 * arguments: no control byte may reach a log line. */
static void
schema_clean(char *s, size_t len)
{
	size_t i;

	for (i = 0; s != NULL && i < len && s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
}

/* ---- compiling ------------------------------------------------------------------ */

struct schema_memo {
	json_t *j;
	struct snode *n;
};

struct schema_cctx {
	struct schema *s;
	json_t *doc;
	struct schema_memo *memo;
	size_t nmemo, capmemo;
	pcre2_compile_context *pctx;
	char *err;
	size_t errlen;
	char path[256];
	size_t plen;
};

static void schema_cfail(struct schema_cctx *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
schema_cfail(struct schema_cctx *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* a deep path keeps its most specific end */
	if (c->err != NULL && c->errlen > 0)
		snprintf(c->err, c->errlen, "%s%s: %s", c->plen > 100 ? "..." : "",
		    c->plen > 100 ? c->path + c->plen - 97 : c->path, msg);
}

/* Appends ".key" to the compile path; returns the length to restore. */
static size_t
schema_cpush(struct schema_cctx *c, const char *a, const char *b)
{
	size_t old = c->plen;
	int n;

	n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, b ? ".%.40s.%.40s" : ".%.40s",
	    a, b);
	if (n > 0)
		c->plen += (size_t)n < sizeof(c->path) - c->plen ? (size_t)n :
		    sizeof(c->path) - c->plen - 1;
	return old;
}

static void
schema_cpop(struct schema_cctx *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

static void
schema_pattern_free(struct spattern *p)
{
	if (p == NULL)
		return;
	pcre2_code_free(p->re);
	free(p->src);
}

static void
schema_node_free(struct snode *n)
{
	size_t i;

	json_decref(n->enum_values);
	json_decref(n->const_value);
	schema_pattern_free(n->pattern);
	free(n->pattern);
	free(n->prefix);
	for (i = 0; i < n->nprops; i++)
		free(n->props[i].name);
	free(n->props);
	for (i = 0; i < n->npprops; i++)
		schema_pattern_free(&n->pprops[i]);
	free(n->pprops);
	for (i = 0; i < n->nrequired; i++)
		free(n->required[i]);
	free(n->required);
	free(n->all_of);
	free(n->any_of);
	free(n->one_of);
	free(n);
}

void
schema_free(struct schema *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nnodes; i++)
		schema_node_free(s->nodes[i]);
	free(s->nodes);
	pcre2_match_context_free(s->mctx);
	free(s);
}

size_t
schema_nodes(const struct schema *s)
{
	return s == NULL ? 0 : s->nnodes;
}

/* Nodes plus a flat allowance per node for its arrays, names and patterns. */
size_t
schema_bytes(const struct schema *s)
{
	return s == NULL ? 0 : sizeof(*s) + s->nnodes * (sizeof(struct snode) + 64);
}

static struct snode *
schema_alloc(struct schema_cctx *c)
{
	struct schema *s = c->s;
	struct snode *n, **nv;

	if (s->nnodes >= SCHEMA_MAX_NODES) {
		schema_cfail(c, "more than %d subschemas", SCHEMA_MAX_NODES);
		return NULL;
	}
	if (s->nnodes == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		if ((nv = reallocarray(s->nodes, s->cap, sizeof(*nv))) == NULL)
			goto nomem;
		s->nodes = nv;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL)
		goto nomem;
	n->always = -1;
	n->min_len = n->max_len = n->min_items = n->max_items = -1;
	n->min_props = n->max_props = -1;
	s->nodes[s->nnodes++] = n;
	return n;
nomem:
	schema_cfail(c, "out of memory");
	return NULL;
}

static int schema_fill(struct schema_cctx *c, json_t *j, struct snode *n, int depth);

static struct snode *
schema_sub(struct schema_cctx *c, json_t *j, int depth)
{
	struct snode *n;

	if ((n = schema_alloc(c)) == NULL || schema_fill(c, j, n, depth) == -1)
		return NULL;
	return n;
}

/* A keyword whose value is one subschema. */
static int
schema_kw_sub(struct schema_cctx *c, json_t *obj, const char *kw, struct snode **out,
    int depth)
{
	json_t *v = json_object_get(obj, kw);
	size_t old;

	if (v == NULL)
		return 0;
	old = schema_cpush(c, kw, NULL);
	*out = schema_sub(c, v, depth + 1);
	schema_cpop(c, old);
	return *out == NULL ? -1 : 0;
}

/* A keyword whose value is an array of subschemas (non-empty unless allow_empty). */
static int
schema_kw_list(struct schema_cctx *c, json_t *v, const char *kw, struct snode ***out,
    size_t *nout, int allow_empty, int depth)
{
	char idx[24];
	size_t i, old, old2;
	json_t *e;

	old = schema_cpush(c, kw, NULL);
	if (!json_is_array(v) || (!allow_empty && json_array_size(v) == 0)) {
		schema_cfail(c, "must be a non-empty array of schemas");
		return -1;
	}
	if ((*out = calloc(json_array_size(v) + 1, sizeof(**out))) == NULL) {
		schema_cfail(c, "out of memory");
		return -1;
	}
	json_array_foreach(v, i, e) {
		snprintf(idx, sizeof(idx), "%zu", i);
		old2 = schema_cpush(c, idx, NULL);
		if (((*out)[i] = schema_sub(c, e, depth + 1)) == NULL)
			return -1;
		schema_cpop(c, old2);
		(*nout)++;
	}
	schema_cpop(c, old);
	return 0;
}

static int
schema_count(struct schema_cctx *c, json_t *obj, const char *kw, long long *out)
{
	json_t *v = json_object_get(obj, kw);
	double d;

	if (v == NULL)
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = json_integer_value(v);
		return 0;
	}
	d = json_is_real(v) ? json_real_value(v) : -1;
	if (d >= 0 && d == floor(d) && d < 9e18) {
		*out = (long long)d;
		return 0;
	}
	schema_cfail(c, "%s must be a non-negative integer", kw);
	return -1;
}

static int
schema_compile_re(struct schema_cctx *c, const char *kw, json_t *v, struct spattern *p)
{
	PCRE2_UCHAR msg[160];
	PCRE2_SIZE off;
	int code;

	if (!json_is_string(v)) {
		schema_cfail(c, "%s must be a string", kw);
		return -1;
	}
	if (json_string_length(v) > SCHEMA_PATTERN_MAX) {
		schema_cfail(c, "%s longer than %d bytes", kw, SCHEMA_PATTERN_MAX);
		return -1;
	}
	if ((p->src = strndup(json_string_value(v), json_string_length(v))) == NULL) {
		schema_cfail(c, "out of memory");
		return -1;
	}
	/* ECMA-262 flavour: $ only at the end, \uXXXX, [^] */
	p->re = pcre2_compile((PCRE2_SPTR)json_string_value(v), json_string_length(v),
	    PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX | PCRE2_ALLOW_EMPTY_CLASS |
	    PCRE2_NEVER_BACKSLASH_C, &code, &off, c->pctx);
	if (p->re == NULL) {
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		schema_cfail(c, "%s: PCRE2: %s at offset %zu", kw, (char *)msg, (size_t)off);
		return -1;
	}
	return 0;
}

static int
schema_kw_type(struct schema_cctx *c, json_t *v, struct snode *n)
{
	const char *name;
	size_t i, k, cnt = json_is_array(v) ? json_array_size(v) : 1;
	json_t *e;

	if (!json_is_string(v) && !(json_is_array(v) && cnt > 0)) {
		schema_cfail(c, "type must be a type name or a non-empty array of them");
		return -1;
	}
	for (i = 0; i < cnt; i++) {
		e = json_is_array(v) ? json_array_get(v, i) : v;
		name = json_string_value(e);
		for (k = 0; name != NULL && k < sizeof(schema_types) / sizeof(schema_types[0]); k++)
			if (strcmp(name, schema_types[k].name) == 0)
				break;
		if (name == NULL || k == sizeof(schema_types) / sizeof(schema_types[0])) {
			schema_cfail(c, "unknown type \"%.40s\"", name ? name : "(not a string)");
			return -1;
		}
		n->types |= schema_types[k].bit;
	}
	return 0;
}

static int
schema_number(struct schema_cctx *c, json_t *obj, const char *kw, int *has, double *out)
{
	json_t *v = json_object_get(obj, kw);

	if (v == NULL)
		return 0;
	if (!json_is_number(v)) {
		schema_cfail(c, "%s must be a number", kw);
		return -1;
	}
	*has = 1;
	*out = json_number_value(v);
	return 0;
}

/* exclusiveMinimum/Maximum: a number (draft-06+) or a boolean modifying
 * minimum/maximum (draft-04). The tighter of minimum and exclusiveMinimum wins. */
static int
schema_exclusive(struct schema_cctx *c, json_t *obj, const char *kw, int is_min,
    struct snode *n)
{
	json_t *v = json_object_get(obj, kw);
	int *has = is_min ? &n->has_min : &n->has_max, *excl = is_min ? &n->min_excl : &n->max_excl;
	double *bound = is_min ? &n->min : &n->max, d;

	if (v == NULL)
		return 0;
	if (json_is_boolean(v)) {
		if (json_is_true(v) && *has)
			*excl = 1;
		return 0;
	}
	if (!json_is_number(v)) {
		schema_cfail(c, "%s must be a number or a boolean", kw);
		return -1;
	}
	d = json_number_value(v);
	if (!*has || (is_min ? d >= *bound : d <= *bound)) {
		*has = 1;
		*bound = d;
		*excl = 1;
	}
	return 0;
}

static int
schema_prop_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sprop *)a)->name, ((const struct sprop *)b)->name);
}

static int
schema_kw_properties(struct schema_cctx *c, json_t *v, struct snode *n, int depth)
{
	const char *key;
	size_t old, old2;
	json_t *e;

	old = schema_cpush(c, "properties", NULL);
	if (!json_is_object(v)) {
		schema_cfail(c, "must be an object of schemas");
		return -1;
	}
	if ((n->props = calloc(json_object_size(v) + 1, sizeof(*n->props))) == NULL) {
		schema_cfail(c, "out of memory");
		return -1;
	}
	json_object_foreach(v, key, e) {
		old2 = schema_cpush(c, key, NULL);
		if ((n->props[n->nprops].name = strdup(key)) == NULL) {
			schema_cfail(c, "out of memory");
			return -1;
		}
		n->nprops++;
		if ((n->props[n->nprops - 1].schema = schema_sub(c, e, depth + 1)) == NULL)
			return -1;
		schema_cpop(c, old2);
	}
	qsort(n->props, n->nprops, sizeof(*n->props), schema_prop_cmp);
	schema_cpop(c, old);
	return 0;
}

static int
schema_kw_pattern_props(struct schema_cctx *c, json_t *v, struct snode *n, int depth)
{
	const char *key;
	size_t old, old2;
	json_t *e, *ks;
	int rc;

	old = schema_cpush(c, "patternProperties", NULL);
	if (!json_is_object(v)) {
		schema_cfail(c, "must be an object of schemas");
		return -1;
	}
	if ((n->pprops = calloc(json_object_size(v) + 1, sizeof(*n->pprops))) == NULL) {
		schema_cfail(c, "out of memory");
		return -1;
	}
	json_object_foreach(v, key, e) {
		old2 = schema_cpush(c, key, NULL);
		n->npprops++;
		if ((ks = json_string(key)) == NULL) {
			schema_cfail(c, "out of memory");
			return -1;
		}
		rc = schema_compile_re(c, "pattern", ks, &n->pprops[n->npprops - 1]);
		json_decref(ks);
		if (rc == -1 || (n->pprops[n->npprops - 1].schema = schema_sub(c, e,
		    depth + 1)) == NULL)
			return -1;
		schema_cpop(c, old2);
	}
	schema_cpop(c, old);
	return 0;
}

static int
schema_kw_required(struct schema_cctx *c, json_t *v, struct snode *n)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v)) {
		schema_cfail(c, "required must be an array of property names");
		return -1;
	}
	if ((n->required = calloc(json_array_size(v) + 1, sizeof(*n->required))) == NULL) {
		schema_cfail(c, "out of memory");
		return -1;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_string(e)) {
			schema_cfail(c, "required[%zu] must be a string", i);
			return -1;
		}
		if ((n->required[n->nrequired] = strdup(json_string_value(e))) == NULL) {
			schema_cfail(c, "out of memory");
			return -1;
		}
		n->nrequired++;
	}
	return 0;
}

/* Resolves a same-document JSON pointer fragment ("#/a/b~1c/0"). */
static json_t *
schema_pointer(json_t *doc, const char *ref)
{
	char tok[256];
	const char *p;
	size_t t;
	json_t *cur = doc;
	char *end;
	unsigned long idx;

	if (ref[0] != '#')
		return NULL;
	p = ref + 1;
	if (*p == '\0')
		return doc;
	if (*p != '/')
		return NULL;
	while (*p == '/' && cur != NULL) {
		p++;
		for (t = 0; *p != '\0' && *p != '/'; p++) {
			char ch = *p;

			if (ch == '%' && p[1] != '\0' && p[2] != '\0') {
				char hex[3] = { p[1], p[2], '\0' };

				ch = (char)strtol(hex, &end, 16);
				if (*end != '\0' || ch == '\0')
					return NULL;
				p += 2;
			} else if (ch == '~') {
				if (p[1] == '0')
					ch = '~';
				else if (p[1] == '1')
					ch = '/';
				else
					return NULL;
				p++;
			}
			if (t + 1 >= sizeof(tok))
				return NULL;
			tok[t++] = ch;
		}
		tok[t] = '\0';
		if (json_is_object(cur))
			cur = json_object_get(cur, tok);
		else if (json_is_array(cur)) {
			if (t == 0 || (t > 1 && tok[0] == '0'))
				return NULL;
			idx = strtoul(tok, &end, 10);
			cur = *end == '\0' ? json_array_get(cur, idx) : NULL;
		} else
			return NULL;
	}
	return cur;
}

static int
schema_kw_ref(struct schema_cctx *c, json_t *v, struct snode *n, int depth)
{
	const char *ref = json_string_value(v);
	struct schema_memo *nm;
	json_t *target;
	size_t i;

	if (ref == NULL) {
		schema_cfail(c, "$ref must be a string");
		return -1;
	}
	if (ref[0] != '#') {
		schema_cfail(c, "$ref \"%.100s\": only references into the same document "
		    "(\"#...\") are supported", ref);
		return -1;
	}
	target = schema_pointer(c->doc, ref);
	if (target == NULL || !(json_is_object(target) || json_is_boolean(target))) {
		schema_cfail(c, "$ref \"%.100s\": no schema there", ref);
		return -1;
	}
	for (i = 0; i < c->nmemo; i++)
		if (c->memo[i].j == target) {
			n->ref = c->memo[i].n;
			return 0;
		}
	if (c->nmemo == c->capmemo) {
		c->capmemo = c->capmemo ? c->capmemo * 2 : 8;
		if ((nm = reallocarray(c->memo, c->capmemo, sizeof(*nm))) == NULL) {
			schema_cfail(c, "out of memory");
			return -1;
		}
		c->memo = nm;
	}
	/* registered before filling, so a reference cycle ends at this node */
	if ((n->ref = schema_alloc(c)) == NULL)
		return -1;
	c->memo[c->nmemo].j = target;
	c->memo[c->nmemo].n = n->ref;
	c->nmemo++;
	return schema_fill(c, target, n->ref, depth + 1);
}

static int
schema_kw_items(struct schema_cctx *c, json_t *obj, struct snode *n, int depth)
{
	json_t *items = json_object_get(obj, "items"), *prefix = json_object_get(obj,
	    "prefixItems");

	if (prefix != NULL) {
		/* 2020-12: prefixItems is the tuple, items the rest */
		if (schema_kw_list(c, prefix, "prefixItems", &n->prefix, &n->nprefix, 1,
		    depth) == -1)
			return -1;
		return schema_kw_sub(c, obj, "items", &n->rest, depth);
	}
	if (json_is_array(items)) {
		/* draft-07 tuple: additionalItems is the rest */
		if (schema_kw_list(c, items, "items", &n->prefix, &n->nprefix, 1, depth) == -1)
			return -1;
		return schema_kw_sub(c, obj, "additionalItems", &n->rest, depth);
	}
	/* additionalItems without a tuple means nothing */
	return schema_kw_sub(c, obj, "items", &n->rest, depth);
}

static int
schema_fill(struct schema_cctx *c, json_t *j, struct snode *n, int depth)
{
	json_t *v;

	if (depth > SCHEMA_MAX_DEPTH) {
		schema_cfail(c, "nested more than %d levels deep", SCHEMA_MAX_DEPTH);
		return -1;
	}
	if (json_is_boolean(j)) {
		n->always = json_is_true(j);
		return 0;
	}
	if (!json_is_object(j)) {
		schema_cfail(c, "a schema must be an object or a boolean");
		return -1;
	}
	if ((v = json_object_get(j, "type")) != NULL && schema_kw_type(c, v, n) == -1)
		return -1;
	if ((v = json_object_get(j, "enum")) != NULL) {
		if (!json_is_array(v)) {
			schema_cfail(c, "enum must be an array");
			return -1;
		}
		if ((n->enum_values = json_deep_copy(v)) == NULL)
			goto nomem;
	}
	if ((v = json_object_get(j, "const")) != NULL) {
		n->has_const = 1;
		if ((n->const_value = json_deep_copy(v)) == NULL)
			goto nomem;
	}
	if (schema_number(c, j, "minimum", &n->has_min, &n->min) == -1 ||
	    schema_number(c, j, "maximum", &n->has_max, &n->max) == -1 ||
	    schema_exclusive(c, j, "exclusiveMinimum", 1, n) == -1 ||
	    schema_exclusive(c, j, "exclusiveMaximum", 0, n) == -1)
		return -1;
	if ((v = json_object_get(j, "multipleOf")) != NULL) {
		if (!json_is_number(v) || !(json_number_value(v) > 0)) {
			schema_cfail(c, "multipleOf must be a number > 0");
			return -1;
		}
		n->multiple = json_number_value(v);
	}
	if (schema_count(c, j, "minLength", &n->min_len) == -1 ||
	    schema_count(c, j, "maxLength", &n->max_len) == -1 ||
	    schema_count(c, j, "minItems", &n->min_items) == -1 ||
	    schema_count(c, j, "maxItems", &n->max_items) == -1 ||
	    schema_count(c, j, "minProperties", &n->min_props) == -1 ||
	    schema_count(c, j, "maxProperties", &n->max_props) == -1)
		return -1;
	if ((v = json_object_get(j, "pattern")) != NULL) {
		if ((n->pattern = calloc(1, sizeof(*n->pattern))) == NULL)
			goto nomem;
		if (schema_compile_re(c, "pattern", v, n->pattern) == -1)
			return -1;
	}
	if (schema_kw_items(c, j, n, depth) == -1)
		return -1;
	if ((v = json_object_get(j, "uniqueItems")) != NULL) {
		if (!json_is_boolean(v)) {
			schema_cfail(c, "uniqueItems must be a boolean");
			return -1;
		}
		n->unique = json_is_true(v);
	}
	if (schema_kw_sub(c, j, "contains", &n->contains, depth) == -1)
		return -1;
	if ((v = json_object_get(j, "properties")) != NULL &&
	    schema_kw_properties(c, v, n, depth) == -1)
		return -1;
	if ((v = json_object_get(j, "patternProperties")) != NULL &&
	    schema_kw_pattern_props(c, v, n, depth) == -1)
		return -1;
	if (schema_kw_sub(c, j, "additionalProperties", &n->additional, depth) == -1 ||
	    schema_kw_sub(c, j, "propertyNames", &n->property_names, depth) == -1)
		return -1;
	if ((v = json_object_get(j, "required")) != NULL && schema_kw_required(c, v, n) == -1)
		return -1;
	if (((v = json_object_get(j, "allOf")) != NULL &&
	    schema_kw_list(c, v, "allOf", &n->all_of, &n->nall_of, 0, depth) == -1) ||
	    ((v = json_object_get(j, "anyOf")) != NULL &&
	    schema_kw_list(c, v, "anyOf", &n->any_of, &n->nany_of, 0, depth) == -1) ||
	    ((v = json_object_get(j, "oneOf")) != NULL &&
	    schema_kw_list(c, v, "oneOf", &n->one_of, &n->none_of, 0, depth) == -1))
		return -1;
	if (schema_kw_sub(c, j, "not", &n->not_, depth) == -1 ||
	    schema_kw_sub(c, j, "if", &n->if_, depth) == -1 ||
	    schema_kw_sub(c, j, "then", &n->then_, depth) == -1 ||
	    schema_kw_sub(c, j, "else", &n->else_, depth) == -1)
		return -1;
	if ((v = json_object_get(j, "$ref")) != NULL && schema_kw_ref(c, v, n, depth) == -1)
		return -1;
	return 0;
nomem:
	schema_cfail(c, "out of memory");
	return -1;
}

int
schema_compile(json_t *j, struct schema **out, char *err, size_t errlen)
{
	struct schema_cctx c = { .doc = j, .err = err, .errlen = errlen, .path = "$", .plen = 1 };
	struct schema *s;

	*out = NULL;
	if ((s = c.s = calloc(1, sizeof(*s))) == NULL ||
	    (s->mctx = pcre2_match_context_create(NULL)) == NULL ||
	    (c.pctx = pcre2_compile_context_create(NULL)) == NULL) {
		schema_cfail(&c, "out of memory");
		goto fail;
	}
	pcre2_set_compile_extra_options(c.pctx, PCRE2_EXTRA_ALT_BSUX);
	pcre2_set_max_pattern_length(c.pctx, SCHEMA_PATTERN_MAX);
	pcre2_set_match_limit(s->mctx, 100000);
	pcre2_set_depth_limit(s->mctx, 10000);
	pcre2_set_heap_limit(s->mctx, 4096);
	if ((s->root = schema_sub(&c, j, 0)) == NULL)
		goto fail;
	free(c.memo);
	pcre2_compile_context_free(c.pctx);
	*out = s;
	return 0;
fail:
	free(c.memo);
	pcre2_compile_context_free(c.pctx);
	schema_free(s);
	schema_clean(err, errlen);
	return -1;
}

/* ---- validating ----------------------------------------------------------------- */

struct schema_vctx {
	const struct schema *s;
	long steps;
	int quiet;              /* > 0 inside anyOf/oneOf/not/if/contains: no message */
	int fatal;              /* a limit was hit: the whole validation fails */
	int have_err;
	char *err;
	size_t errlen;
	char path[384];
	size_t plen;
};

static int schema_vfail(struct schema_vctx *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static int
schema_vfail(struct schema_vctx *v, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	if (v->quiet > 0 || v->have_err)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (v->err != NULL && v->errlen > 0)
		snprintf(v->err, v->errlen, "%s: %s", v->path, msg);
	v->have_err = 1;
	return -1;
}

/* A limit: reported whatever the nesting, and ends the validation. */
static int
schema_vfatal(struct schema_vctx *v, const char *msg)
{
	if (!v->fatal && v->err != NULL && v->errlen > 0)
		snprintf(v->err, v->errlen, "%.100s: %s", v->path, msg);
	v->fatal = v->have_err = 1;
	return -1;
}

static int
schema_step(struct schema_vctx *v, long n)
{
	if (v->fatal)
		return -1;
	v->steps += n;
	if (v->steps > SCHEMA_MAX_STEPS)
		return schema_vfatal(v, "too complex to validate (step limit)");
	return 0;
}

/* Appends .key, ["key"] or [i] to the path; returns the length to restore. */
static size_t
schema_vpush_key(struct schema_vctx *v, const char *key)
{
	size_t old = v->plen, i, room;
	const unsigned char *k = (const unsigned char *)key;
	int plain = *k != '\0';
	char *p;

	for (i = 0; k[i] != '\0' && plain; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
		    (k[i] >= '0' && k[i] <= '9') || k[i] == '_' || k[i] == '-' || k[i] == '$'))
			plain = 0;
	room = sizeof(v->path) - v->plen;
	p = v->path + v->plen;
	if (room < 80)
		return old;   /* too deep to show: the path stays cut here */
	if (plain) {
		v->plen += (size_t)snprintf(p, room, ".%.64s%s", key, strlen(key) > 64 ? "..." : "");
		return old;
	}
	*p++ = '[';
	*p++ = '"';
	for (i = 0; k[i] != '\0' && i < 64; i++) {
		if (k[i] < 0x20 || k[i] == 0x7f || k[i] == '"' || k[i] == '\\')
			p += sprintf(p, "\\x%02x", k[i]);
		else
			*p++ = (char)k[i];
	}
	if (k[i] != '\0')
		p += sprintf(p, "...");
	*p++ = '"';
	*p++ = ']';
	*p = '\0';
	v->plen = (size_t)(p - v->path);
	return old;
}

static size_t
schema_vpush_index(struct schema_vctx *v, size_t i)
{
	size_t old = v->plen, room = sizeof(v->path) - v->plen;

	if (room >= 32)
		v->plen += (size_t)snprintf(v->path + v->plen, room, "[%zu]", i);
	return old;
}

static void
schema_vpop(struct schema_vctx *v, size_t old)
{
	v->plen = old;
	v->path[old] = '\0';
}

static unsigned
schema_type_of(json_t *j)
{
	double d;

	switch (json_typeof(j)) {
	case JSON_NULL: return ST_NULL;
	case JSON_TRUE:
	case JSON_FALSE: return ST_BOOLEAN;
	case JSON_OBJECT: return ST_OBJECT;
	case JSON_ARRAY: return ST_ARRAY;
	case JSON_STRING: return ST_STRING;
	case JSON_INTEGER: return ST_NUMBER | ST_INTEGER;
	case JSON_REAL:
		d = json_real_value(j);
		return isfinite(d) && d == floor(d) ? ST_NUMBER | ST_INTEGER : ST_NUMBER;
	}
	return 0;
}

static const char *
schema_type_name(json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_NULL: return "null";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	default: return "number";
	}
}

static void
schema_types_str(unsigned types, char *buf, size_t len)
{
	size_t i, o = 0;
	int first = 1;

	buf[0] = '\0';
	for (i = 0; i < sizeof(schema_types) / sizeof(schema_types[0]); i++) {
		if (!(types & schema_types[i].bit))
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%s", first ? "" : " or ",
		    schema_types[i].name);
		if (o >= len)
			return;
		first = 0;
	}
}

/* JSON equality as JSON Schema defines it: numbers by value (1 == 1.0). */
static int
schema_equal(struct schema_vctx *v, json_t *a, json_t *b, int depth)
{
	const char *key;
	json_t *x;
	size_t i;

	if (schema_step(v, 1) == -1)
		return 0;
	if (depth > SCHEMA_MAX_RECURSION) {
		schema_vfatal(v, "nested too deeply to validate");
		return 0;
	}
	if (json_is_number(a) && json_is_number(b)) {
		if (json_is_integer(a) && json_is_integer(b))
			return json_integer_value(a) == json_integer_value(b);
		return json_number_value(a) == json_number_value(b);
	}
	if (json_typeof(a) != json_typeof(b))
		return 0;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		    memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (i = 0; i < json_array_size(a); i++)
			if (!schema_equal(v, json_array_get(a, i), json_array_get(b, i), depth + 1))
				return 0;
		return 1;
	case JSON_OBJECT:
		if (json_object_size(a) != json_object_size(b))
			return 0;
		json_object_foreach(a, key, x) {
			json_t *y = json_object_get(b, key);

			if (y == NULL || !schema_equal(v, x, y, depth + 1))
				return 0;
		}
		return 1;
	default:
		return 1;
	}
}

static int
schema_match(struct schema_vctx *v, const struct spattern *p, const char *s, size_t len)
{
	pcre2_match_data *md;
	int rc;

	if (schema_step(v, 16 + (long)(len / 256)) == -1)
		return -1;
	if ((md = pcre2_match_data_create_from_pattern(p->re, NULL)) == NULL) {
		schema_vfatal(v, "out of memory");
		return -1;
	}
	rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, 0, 0, md, v->s->mctx);
	pcre2_match_data_free(md);
	if (rc >= 0)
		return 1;
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	schema_vfatal(v, rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT ? "pattern too costly to match (PCRE2 limit)" :
	    "pattern cannot be matched");
	return -1;
}

static int schema_vnode(struct schema_vctx *v, const struct snode *n, json_t *j, int depth);

/* Runs n on j without reporting; 1 when it matches, 0 when not, -1 on a limit. */
static int
schema_try(struct schema_vctx *v, const struct snode *n, json_t *j, int depth)
{
	int rc;

	v->quiet++;
	rc = schema_vnode(v, n, j, depth);
	v->quiet--;
	if (v->fatal)
		return -1;
	return rc == 0;
}

static int
schema_vnumber(struct schema_vctx *v, const struct snode *n, json_t *j)
{
	double d = json_number_value(j), q;

	if (n->has_min && (n->min_excl ? !(d > n->min) : !(d >= n->min)))
		return schema_vfail(v, "%.17g is %s the minimum %.17g", d,
		    n->min_excl ? "not greater than" : "less than", n->min);
	if (n->has_max && (n->max_excl ? !(d < n->max) : !(d <= n->max)))
		return schema_vfail(v, "%.17g is %s the maximum %.17g", d,
		    n->max_excl ? "not less than" : "greater than", n->max);
	if (n->multiple > 0) {
		if (json_is_integer(j) && n->multiple == floor(n->multiple) && n->multiple < 9e18)
			q = (double)(json_integer_value(j) % (json_int_t)n->multiple);
		else {
			q = d / n->multiple;
			q = isfinite(q) && q == floor(q) ? 0 : 1;
		}
		if (q != 0)
			return schema_vfail(v, "%.17g is not a multiple of %.17g", d, n->multiple);
	}
	return 0;
}

static int
schema_vstring(struct schema_vctx *v, const struct snode *n, json_t *j)
{
	const char *s = json_string_value(j);
	size_t len = json_string_length(j), i, cps = 0;
	int m;

	if (n->min_len >= 0 || n->max_len >= 0) {
		for (i = 0; i < len; i++)
			if (((unsigned char)s[i] & 0xc0) != 0x80)
				cps++;
		if (n->min_len >= 0 && cps < (unsigned long long)n->min_len)
			return schema_vfail(v, "shorter than %lld characters", n->min_len);
		if (n->max_len >= 0 && cps > (unsigned long long)n->max_len)
			return schema_vfail(v, "longer than %lld characters", n->max_len);
	}
	if (n->pattern != NULL) {
		if ((m = schema_match(v, n->pattern, s, len)) == -1)
			return -1;
		if (m == 0)
			return schema_vfail(v, "does not match the pattern \"%.60s\"",
			    n->pattern->src);
	}
	return 0;
}

static int
schema_varray(struct schema_vctx *v, const struct snode *n, json_t *j, int depth)
{
	size_t len = json_array_size(j), i, k, old;
	const struct snode *item;
	int found = 0, rc;

	if (n->min_items >= 0 && len < (unsigned long long)n->min_items)
		return schema_vfail(v, "fewer than %lld items", n->min_items);
	if (n->max_items >= 0 && len > (unsigned long long)n->max_items)
		return schema_vfail(v, "more than %lld items", n->max_items);
	for (i = 0; i < len; i++) {
		item = i < n->nprefix ? n->prefix[i] : n->rest;
		if (item == NULL)
			continue;
		old = schema_vpush_index(v, i);
		rc = schema_vnode(v, item, json_array_get(j, i), depth + 1);
		schema_vpop(v, old);
		if (rc == -1)
			return -1;
	}
	if (n->unique)
		for (i = 0; i < len; i++)
			for (k = i + 1; k < len; k++) {
				if (schema_equal(v, json_array_get(j, i), json_array_get(j, k), depth))
					return schema_vfail(v, "items %zu and %zu are equal", i, k);
				if (v->fatal)
					return -1;
			}
	if (n->contains != NULL) {
		for (i = 0; i < len && !found; i++)
			if ((found = schema_try(v, n->contains, json_array_get(j, i), depth + 1)) == -1)
				return -1;
		if (!found)
			return schema_vfail(v, "no item matches \"contains\"");
	}
	return 0;
}

static const struct sprop *
schema_prop_find(const struct snode *n, const char *key)
{
	struct sprop probe = { (char *)key, NULL };

	if (n->nprops == 0)
		return NULL;
	return bsearch(&probe, n->props, n->nprops, sizeof(*n->props), schema_prop_cmp);
}

static int
schema_vmember(struct schema_vctx *v, const struct snode *n, const char *key, json_t *val,
    int depth)
{
	const struct sprop *p;
	size_t i, old;
	int matched = 0, m, rc = 0;
	json_t *ks;

	if (schema_step(v, 1) == -1)
		return -1;
	old = schema_vpush_key(v, key);
	if ((p = schema_prop_find(n, key)) != NULL) {
		matched = 1;
		if (schema_vnode(v, p->schema, val, depth + 1) == -1)
			goto fail;
	}
	for (i = 0; i < n->npprops; i++) {
		if ((m = schema_match(v, &n->pprops[i], key, strlen(key))) == -1)
			goto fail;
		if (m == 1) {
			matched = 1;
			if (schema_vnode(v, n->pprops[i].schema, val, depth + 1) == -1)
				goto fail;
		}
	}
	if (!matched && n->additional != NULL) {
		if (n->additional->always == 0) {
			schema_vfail(v, "property not allowed");
			goto fail;
		}
		if (schema_vnode(v, n->additional, val, depth + 1) == -1)
			goto fail;
	}
	if (n->property_names != NULL) {
		if ((ks = json_string(key)) == NULL) {
			schema_vfatal(v, "out of memory");
			goto fail;
		}
		m = schema_try(v, n->property_names, ks, depth + 1);
		json_decref(ks);
		if (m != 1) {
			if (m == 0)
				schema_vfail(v, "property name not allowed (propertyNames)");
			goto fail;
		}
	}
	schema_vpop(v, old);
	return 0;
fail:
	rc = -1;
	schema_vpop(v, old);
	return rc;
}

static int
schema_vobject(struct schema_vctx *v, const struct snode *n, json_t *j, int depth)
{
	size_t size = json_object_size(j), i;
	const char *key;
	json_t *val;

	for (i = 0; i < n->nrequired; i++)
		if (json_object_get(j, n->required[i]) == NULL)
			return schema_vfail(v, "missing required property \"%.64s\"",
			    n->required[i]);
	if (n->min_props >= 0 && size < (unsigned long long)n->min_props)
		return schema_vfail(v, "fewer than %lld properties", n->min_props);
	if (n->max_props >= 0 && size > (unsigned long long)n->max_props)
		return schema_vfail(v, "more than %lld properties", n->max_props);
	if (n->nprops == 0 && n->npprops == 0 && n->additional == NULL &&
	    n->property_names == NULL)
		return 0;
	json_object_foreach(j, key, val)
		if (schema_vmember(v, n, key, val, depth) == -1)
			return -1;
	return 0;
}

static int
schema_vcombine(struct schema_vctx *v, const struct snode *n, json_t *j, int depth)
{
	size_t i, matches = 0;
	int m;

	for (i = 0; i < n->nall_of; i++)
		if (schema_vnode(v, n->all_of[i], j, depth + 1) == -1)
			return -1;
	if (n->nany_of > 0) {
		for (i = 0; i < n->nany_of && matches == 0; i++) {
			if ((m = schema_try(v, n->any_of[i], j, depth + 1)) == -1)
				return -1;
			matches += (size_t)m;
		}
		if (matches == 0)
			return schema_vfail(v, "does not match any of the allowed alternatives "
			    "(anyOf)");
	}
	if (n->none_of > 0) {
		for (i = 0, matches = 0; i < n->none_of; i++) {
			if ((m = schema_try(v, n->one_of[i], j, depth + 1)) == -1)
				return -1;
			matches += (size_t)m;
		}
		if (matches != 1)
			return schema_vfail(v, "matches %zu of the oneOf alternatives, not exactly "
			    "one", matches);
	}
	if (n->not_ != NULL) {
		if ((m = schema_try(v, n->not_, j, depth + 1)) == -1)
			return -1;
		if (m == 1)
			return schema_vfail(v, "matches a schema it must not match (not)");
	}
	if (n->if_ != NULL) {
		if ((m = schema_try(v, n->if_, j, depth + 1)) == -1)
			return -1;
		if (m == 1 && n->then_ != NULL && schema_vnode(v, n->then_, j, depth + 1) == -1)
			return -1;
		if (m == 0 && n->else_ != NULL && schema_vnode(v, n->else_, j, depth + 1) == -1)
			return -1;
	}
	return 0;
}

static int
schema_vnode(struct schema_vctx *v, const struct snode *n, json_t *j, int depth)
{
	unsigned t;
	char want[64];
	size_t i;
	int ok;

	if (schema_step(v, 1) == -1)
		return -1;
	if (depth > SCHEMA_MAX_RECURSION)
		return schema_vfatal(v, "nested too deeply to validate");
	if (n->always == 1)
		return 0;
	if (j == NULL)
		return schema_vfail(v, "missing");
	if (n->always == 0)
		return schema_vfail(v, "no value is allowed here");
	t = schema_type_of(j);
	if (n->types != 0 && (n->types & t) == 0) {
		schema_types_str(n->types, want, sizeof(want));
		return schema_vfail(v, "expected %s, got %s", want, schema_type_name(j));
	}
	if (n->enum_values != NULL) {
		for (i = 0, ok = 0; i < json_array_size(n->enum_values) && !ok; i++)
			ok = schema_equal(v, json_array_get(n->enum_values, i), j, depth);
		if (v->fatal)
			return -1;
		if (!ok)
			return schema_vfail(v, "not one of the allowed values");
	}
	if (n->has_const) {
		ok = schema_equal(v, n->const_value, j, depth);
		if (v->fatal)
			return -1;
		if (!ok)
			return schema_vfail(v, "not the required constant");
	}
	if ((t & ST_NUMBER) && schema_vnumber(v, n, j) == -1)
		return -1;
	if (t == ST_STRING && schema_vstring(v, n, j) == -1)
		return -1;
	if (t == ST_ARRAY && schema_varray(v, n, j, depth) == -1)
		return -1;
	if (t == ST_OBJECT && schema_vobject(v, n, j, depth) == -1)
		return -1;
	if (schema_vcombine(v, n, j, depth) == -1)
		return -1;
	if (n->ref != NULL && schema_vnode(v, n->ref, j, depth + 1) == -1)
		return -1;
	return 0;
}

int
schema_validate(const struct schema *s, json_t *instance, const char *root, char *err,
    size_t errlen)
{
	struct schema_vctx v = { .s = s, .err = err, .errlen = errlen };

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	v.plen = (size_t)snprintf(v.path, sizeof(v.path), "%.64s", root ? root : "$");
	if (s == NULL || s->root == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: no schema", v.path);
		return -1;
	}
	if (schema_vnode(&v, s->root, instance, 0) == -1) {
		if (!v.have_err && err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: invalid", v.path);
		schema_clean(err, errlen);
		return -1;
	}
	return 0;
}
