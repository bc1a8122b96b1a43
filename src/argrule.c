/* Tool-argument rules: parsing and compiling the identity map's "arguments" sections,
 * and checking tools/call arguments against them (see include/argrule.h). */
#include "argrule.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "text.h"

enum argrule_kind {
	ARGRULE_PATH_UNDER,
	ARGRULE_GLOB,
	ARGRULE_ENUM,
	ARGRULE_MAX_LENGTH,
	ARGRULE_PATTERN
};

static const char *const argrule_kind_names[] = {
	[ARGRULE_PATH_UNDER] = "path_under",
	[ARGRULE_GLOB] = "glob",
	[ARGRULE_ENUM] = "enum",
	[ARGRULE_MAX_LENGTH] = "max_length",
	[ARGRULE_PATTERN] = "pattern",
};

/* One check of one argument. */
struct argrule_test {
	enum argrule_kind kind;
	char **strs;            /* path_under: normalized directories; glob: patterns */
	size_t nstrs;
	json_t *values;         /* enum: a private deep copy of the array */
	long long max;          /* max_length */
	pcre2_code *re;         /* pattern */
	char label[96];         /* "path_under /srv/data", for details */
};

struct argrule_arg {
	char *name;
	int optional;
	struct argrule_test *tests;
	size_t ntests;
};

struct argrule_tool {
	char *glob;
	struct argrule_arg *args;
	size_t nargs;
};

struct argrule_set {
	char *owner;
	struct argrule_tool *tools;
	size_t ntools;
	pcre2_match_context *mctx;
};

/* ---- paths ---------------------------------------------------------------------- */

/* Characters whose NFKC form is or contains '.', '/' or '\': harmless to the kernel,
 * but a server that normalizes Unicode would turn them into traversal. */
static int
argrule_confusable(uint32_t cp)
{
	static const uint32_t list[] = {
		0x2024, 0x2025, 0x2026, 0xfe19, 0xfe30, 0xfe52, 0xfe68, 0xff0e, 0xff0f, 0xff3c
	};
	size_t i;

	for (i = 0; i < sizeof(list) / sizeof(list[0]); i++)
		if (list[i] == cp)
			return 1;
	return 0;
}

static int
argrule_path_chars(const unsigned char *s, size_t len, const char **why)
{
	uint32_t cp;
	size_t i, n;

	for (i = 0; i < len; i += n) {
		n = 1;
		if (s[i] == '\0') {
			*why = "contains NUL";
			return -1;
		}
		if (s[i] < 0x20 || s[i] == 0x7f) {
			*why = "contains a control character";
			return -1;
		}
		if (s[i] == '\\') {
			*why = "contains a backslash";
			return -1;
		}
		if (s[i] == '%') {
			*why = "contains '%' (percent-encoding is refused)";
			return -1;
		}
		if (s[i] < 0x80)
			continue;
		if ((n = text_utf8_seq(s + i, len - i, &cp)) == 0) {
			*why = "invalid UTF-8";
			return -1;
		}
		if (cp <= 0x9f) {
			*why = "contains a control character";
			return -1;
		}
		if (argrule_confusable(cp)) {
			*why = "contains a character that may be read as a dot, slash or backslash";
			return -1;
		}
	}
	return 0;
}

int
argrule_path_normalize(const char *in, size_t len, char *out, size_t outlen,
    const char **why)
{
	size_t i = 0, o, s, seg;
	const char *w = "";

	if (why == NULL)
		why = &w;
	if (in == NULL || len == 0) {
		*why = "empty";
		return -1;
	}
	if (len > ARGRULE_PATH_MAX) {
		*why = "longer than 4096 bytes";
		return -1;
	}
	if (out == NULL || outlen < len + 1) {
		*why = "internal error (output buffer too small)";
		return -1;
	}
	if (argrule_path_chars((const unsigned char *)in, len, why) == -1)
		return -1;
	if (in[0] != '/') {
		*why = "not an absolute path";
		return -1;
	}
	/* out holds "/" or "/a/b" (never a trailing slash) as segments are applied. */
	out[0] = '/';
	o = 1;
	while (i < len) {
		while (i < len && in[i] == '/')
			i++;
		for (s = i; i < len && in[i] != '/'; i++)
			;
		seg = i - s;
		if (seg == 0 || (seg == 1 && in[s] == '.'))
			continue;
		if (seg == 2 && in[s] == '.' && in[s + 1] == '.') {
			while (o > 1 && out[o - 1] != '/')
				o--;
			if (o > 1)
				o--;
			continue;
		}
		if (o > 1)
			out[o++] = '/';
		memcpy(out + o, in + s, seg);
		o += seg;
	}
	out[o] = '\0';
	return 0;
}

int
argrule_path_under(const char *p, const char *dir)
{
	size_t dl;

	if (p == NULL || dir == NULL || p[0] != '/')
		return 0;
	dl = strlen(dir);
	if (dl == 1 && dir[0] == '/')
		return 1;
	return strncmp(p, dir, dl) == 0 && (p[dl] == '\0' || p[dl] == '/');
}

/* ---- freeing -------------------------------------------------------------------- */

static void
argrule_test_clear(struct argrule_test *t)
{
	size_t i;

	for (i = 0; i < t->nstrs; i++)
		free(t->strs[i]);
	free(t->strs);
	json_decref(t->values);
	pcre2_code_free(t->re);
}

void
argrule_set_free(struct argrule_set *s)
{
	size_t i, j, k;

	if (s == NULL)
		return;
	for (i = 0; i < s->ntools; i++) {
		struct argrule_tool *t = &s->tools[i];

		for (j = 0; j < t->nargs; j++) {
			for (k = 0; k < t->args[j].ntests; k++)
				argrule_test_clear(&t->args[j].tests[k]);
			free(t->args[j].tests);
			free(t->args[j].name);
		}
		free(t->args);
		free(t->glob);
	}
	free(s->tools);
	pcre2_match_context_free(s->mctx);
	free(s->owner);
	free(s);
}

size_t
argrule_set_count(const struct argrule_set *s)
{
	return s == NULL ? 0 : s->ntools;
}

/* ---- parsing -------------------------------------------------------------------- */

/* Where a problem was found, for messages. */
struct argrule_where {
	const char *owner;
	const char *tool;
	const char *arg;
	char *err;
	size_t errlen;
};

static void argrule_fail(const struct argrule_where *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
argrule_fail(const struct argrule_where *w, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->arg != NULL)
		text_seterr(w->err, w->errlen, "%s: arguments: tool \"%.100s\": argument "
		    "\"%.100s\": %s", w->owner, w->tool, w->arg, msg);
	else if (w->tool != NULL)
		text_seterr(w->err, w->errlen, "%s: arguments: tool \"%.100s\": %s",
		    w->owner, w->tool, msg);
	else
		text_seterr(w->err, w->errlen, "%s: arguments: %s", w->owner, msg);
}

/* Tool globs and argument names end up in messages and audit lines. */
static int
argrule_name_ok(const char *s)
{
	const unsigned char *c;

	if (*s == '\0')
		return 0;
	for (c = (const unsigned char *)s; *c != '\0'; c++)
		if (*c < 0x20 || *c == 0x7f)
			return 0;
	return 1;
}

/* Appends ", item" (or "kind item" first) to the label, "..." when it does not fit. */
static void
argrule_label_add(struct argrule_test *t, const char *item, size_t idx)
{
	size_t used = strlen(t->label), room = sizeof(t->label) - used;
	int n;

	if (used >= sizeof(t->label) - 4)
		return;
	n = snprintf(t->label + used, room, "%s%s", idx == 0 ? " " : ", ", item);
	if (n < 0 || (size_t)n >= room)
		memcpy(t->label + sizeof(t->label) - 4, "...", 4);
}

/* A string or a non-empty array of strings, copied into t->strs. */
static int
argrule_parse_strs(json_t *v, struct argrule_test *t, const struct argrule_where *w)
{
	const char *kind = argrule_kind_names[t->kind];
	json_t *e;
	size_t i, n = json_is_array(v) ? json_array_size(v) : 1;

	if (!json_is_string(v) && !(json_is_array(v) && n > 0)) {
		argrule_fail(w, "%s must be a string or a non-empty array of strings", kind);
		return -1;
	}
	if ((t->strs = calloc(n, sizeof(*t->strs))) == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		e = json_is_array(v) ? json_array_get(v, i) : v;
		if (!json_is_string(e) || json_string_length(e) == 0 ||
		    strlen(json_string_value(e)) != json_string_length(e)) {
			argrule_fail(w, "%s: entry %zu must be a non-empty string without NUL",
			    kind, i);
			return -1;
		}
		if ((t->strs[i] = strdup(json_string_value(e))) == NULL)
			goto nomem;
		t->nstrs++;
	}
	return 0;
nomem:
	argrule_fail(w, "out of memory");
	return -1;
}

/* Directories must already be plain absolute paths: a "." or ".." in the map would
 * only hide what the rule really allows. */
static int
argrule_parse_dirs(json_t *v, struct argrule_test *t, const struct argrule_where *w)
{
	const char *why, *d, *seg;
	size_t i, len;
	char *norm;

	if (argrule_parse_strs(v, t, w) == -1)
		return -1;
	for (i = 0; i < t->nstrs; i++) {
		d = t->strs[i];
		len = strlen(d);
		if ((norm = malloc(len + 1)) == NULL) {
			argrule_fail(w, "out of memory");
			return -1;
		}
		if (argrule_path_normalize(d, len, norm, len + 1, &why) == -1) {
			argrule_fail(w, "path_under: \"%.200s\" is not an absolute directory (%s)",
			    d, why);
			free(norm);
			return -1;
		}
		for (seg = d; seg != NULL; seg = strchr(seg + 1, '/')) {
			if ((strncmp(seg, "/.", 2) == 0 && (seg[2] == '/' || seg[2] == '\0')) ||
			    (strncmp(seg, "/..", 3) == 0 && (seg[3] == '/' || seg[3] == '\0'))) {
				argrule_fail(w, "path_under: \"%.200s\" has a \".\" or \"..\" "
				    "segment (write the directory it means)", d);
				free(norm);
				return -1;
			}
		}
		free(t->strs[i]);
		t->strs[i] = norm;
		argrule_label_add(t, norm, i);
	}
	return 0;
}

static int
argrule_parse_enum(json_t *v, struct argrule_test *t, const struct argrule_where *w)
{
	json_t *e;
	size_t i;

	if (!json_is_array(v) || json_array_size(v) == 0) {
		argrule_fail(w, "enum must be a non-empty array");
		return -1;
	}
	json_array_foreach(v, i, e) {
		if (json_is_array(e) || json_is_object(e)) {
			argrule_fail(w, "enum: entry %zu must be a string, number, boolean or "
			    "null", i);
			return -1;
		}
	}
	if ((t->values = json_deep_copy(v)) == NULL) {
		argrule_fail(w, "out of memory");
		return -1;
	}
	return 0;
}

static int
argrule_parse_pattern(json_t *v, struct argrule_test *t, const struct argrule_where *w)
{
	PCRE2_UCHAR msg[160];
	PCRE2_SIZE off;
	const char *src;
	int code;

	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		argrule_fail(w, "pattern must be a non-empty string without NUL");
		return -1;
	}
	src = json_string_value(v);
	if (json_string_length(v) > ARGRULE_PATTERN_MAX) {
		argrule_fail(w, "pattern: longer than %d bytes", ARGRULE_PATTERN_MAX);
		return -1;
	}
	t->re = pcre2_compile((PCRE2_SPTR)src, json_string_length(v), PCRE2_UTF |
	    PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_NEVER_BACKSLASH_C, &code, &off, NULL);
	if (t->re == NULL) {
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		argrule_fail(w, "pattern \"%.100s\": %s at offset %zu", src, (char *)msg,
		    (size_t)off);
		return -1;
	}
	snprintf(t->label, sizeof(t->label), "pattern %.60s%s", src,
	    strlen(src) > 60 ? "..." : "");
	return 0;
}

static int
argrule_parse_test(const char *key, json_t *v, struct argrule_test *t,
    const struct argrule_where *w)
{
	size_t k;

	for (k = 0; k < sizeof(argrule_kind_names) / sizeof(argrule_kind_names[0]); k++)
		if (strcmp(key, argrule_kind_names[k]) == 0)
			break;
	if (k == sizeof(argrule_kind_names) / sizeof(argrule_kind_names[0])) {
		argrule_fail(w, "unknown key \"%.64s\" (expected path_under, glob, enum, "
		    "max_length, pattern or optional)", key);
		return -1;
	}
	t->kind = (enum argrule_kind)k;
	snprintf(t->label, sizeof(t->label), "%s", argrule_kind_names[k]);
	switch (t->kind) {
	case ARGRULE_PATH_UNDER:
		return argrule_parse_dirs(v, t, w);
	case ARGRULE_GLOB:
		if (argrule_parse_strs(v, t, w) == -1)
			return -1;
		for (k = 0; k < t->nstrs; k++)
			argrule_label_add(t, t->strs[k], k);
		return 0;
	case ARGRULE_ENUM:
		return argrule_parse_enum(v, t, w);
	case ARGRULE_MAX_LENGTH:
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			argrule_fail(w, "max_length must be an integer >= 0");
			return -1;
		}
		t->max = json_integer_value(v);
		snprintf(t->label, sizeof(t->label), "max_length %lld", t->max);
		return 0;
	case ARGRULE_PATTERN:
		return argrule_parse_pattern(v, t, w);
	}
	return -1;
}

static int
argrule_parse_arg(const char *name, json_t *rule, struct argrule_arg *a,
    struct argrule_where *w)
{
	const char *key;
	json_t *v;

	w->arg = name;
	if (!argrule_name_ok(name)) {
		argrule_fail(w, "argument names must be non-empty, without control "
		    "characters");
		return -1;
	}
	if (!json_is_object(rule)) {
		argrule_fail(w, "the rule must be an object such as {\"path_under\": \"/dir\"}");
		return -1;
	}
	if ((a->name = strdup(name)) == NULL ||
	    (a->tests = calloc(json_object_size(rule) + 1, sizeof(*a->tests))) == NULL) {
		argrule_fail(w, "out of memory");
		return -1;
	}
	json_object_foreach(rule, key, v) {
		if (strcmp(key, "optional") == 0) {
			if (!json_is_boolean(v)) {
				argrule_fail(w, "optional must be true or false");
				return -1;
			}
			a->optional = json_is_true(v);
			continue;
		}
		a->ntests++;
		if (argrule_parse_test(key, v, &a->tests[a->ntests - 1], w) == -1)
			return -1;
	}
	if (a->ntests == 0) {
		argrule_fail(w, "the rule has no check (path_under, glob, enum, max_length or "
		    "pattern)");
		return -1;
	}
	return 0;
}

static int
argrule_parse_tool(const char *glob, json_t *rules, struct argrule_tool *t,
    struct argrule_where *w)
{
	const char *name;
	json_t *v;

	w->tool = glob;
	w->arg = NULL;
	if (!argrule_name_ok(glob)) {
		argrule_fail(w, "tool globs must be non-empty, without control characters");
		return -1;
	}
	if (!json_is_object(rules) || json_object_size(rules) == 0) {
		argrule_fail(w, "must be a non-empty object of argument rules");
		return -1;
	}
	if ((t->glob = strdup(glob)) == NULL ||
	    (t->args = calloc(json_object_size(rules), sizeof(*t->args))) == NULL) {
		argrule_fail(w, "out of memory");
		return -1;
	}
	json_object_foreach(rules, name, v) {
		t->nargs++;
		if (argrule_parse_arg(name, v, &t->args[t->nargs - 1], w) == -1)
			return -1;
	}
	return 0;
}

int
argrule_set_parse(json_t *arguments, const char *owner, struct argrule_set **out,
    char *err, size_t errlen)
{
	struct argrule_where w = { owner ? owner : "(rules)", NULL, NULL, err, errlen };
	struct argrule_set *s = NULL;
	const char *glob;
	json_t *v;

	*out = NULL;
	if (!json_is_object(arguments)) {
		argrule_fail(&w, "must be an object of tool globs");
		return -1;
	}
	if (json_object_size(arguments) == 0)
		return 0;
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->owner = strdup(w.owner)) == NULL ||
	    (s->tools = calloc(json_object_size(arguments), sizeof(*s->tools))) == NULL ||
	    (s->mctx = pcre2_match_context_create(NULL)) == NULL) {
		argrule_fail(&w, "out of memory");
		goto fail;
	}
	pcre2_set_match_limit(s->mctx, ARGRULE_MATCH_LIMIT);
	pcre2_set_depth_limit(s->mctx, ARGRULE_DEPTH_LIMIT);
	pcre2_set_heap_limit(s->mctx, ARGRULE_HEAP_LIMIT_KIB);
	json_object_foreach(arguments, glob, v) {
		s->ntools++;
		if (argrule_parse_tool(glob, v, &s->tools[s->ntools - 1], &w) == -1)
			goto fail;
	}
	*out = s;
	return 0;
fail:
	argrule_set_free(s);
	return -1;
}

/* ---- checking ------------------------------------------------------------------- */

static int
argrule_enum_has(json_t *values, json_t *v)
{
	json_t *e;
	size_t i;

	json_array_foreach(values, i, e) {
		if (json_is_string(e) && json_is_string(v)) {
			if (json_string_length(e) == json_string_length(v) &&
			    memcmp(json_string_value(e), json_string_value(v),
			    json_string_length(v)) == 0)
				return 1;
		} else if (json_is_integer(e) && json_is_integer(v)) {
			if (json_integer_value(e) == json_integer_value(v))
				return 1;
		} else if (json_is_number(e) && json_is_number(v)) {
			if (json_number_value(e) == json_number_value(v))
				return 1;
		} else if (json_typeof(e) == json_typeof(v) &&
		    (json_is_boolean(v) || json_is_null(v)))
			return 1;
	}
	return 0;
}

static size_t
argrule_codepoints(const char *s, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* Returns NULL when v passes t, else a phrase saying why (static or in why_buf). */
static const char *
argrule_test_value(const struct argrule_set *set, const struct argrule_test *t, json_t *v,
    char *why_buf, size_t why_len)
{
	pcre2_match_data *md;
	const char *s, *why = NULL;
	size_t len, i, n;
	char stack[512], *norm;
	int rc;

	if (t->kind == ARGRULE_ENUM) {
		if (json_is_array(v) || json_is_object(v))
			return "not a string, number, boolean or null";
		if (!argrule_enum_has(t->values, v)) {
			snprintf(why_buf, why_len, "not one of the %zu allowed values",
			    json_array_size(t->values));
			return why_buf;
		}
		return NULL;
	}
	if (!json_is_string(v))
		return "not a string";
	s = json_string_value(v);
	len = json_string_length(v);
	if (memchr(s, '\0', len) != NULL)
		return "contains NUL";
	switch (t->kind) {
	case ARGRULE_PATH_UNDER:
		if (len > ARGRULE_PATH_MAX)
			return "longer than 4096 bytes";
		norm = len < sizeof(stack) ? stack : malloc(len + 1);
		if (norm == NULL)
			return "internal error (out of memory)";
		if (argrule_path_normalize(s, len, norm, len + 1, &why) == 0) {
			why = t->nstrs == 1 ? "resolves outside the directory" :
			    "resolves outside the directories";
			for (i = 0; i < t->nstrs; i++)
				if (argrule_path_under(norm, t->strs[i]))
					why = NULL;
		}
		if (norm != stack)
			free(norm);
		return why;
	case ARGRULE_GLOB:
		for (i = 0; i < t->nstrs; i++)
			if (policy_glob(t->strs[i], s))
				return NULL;
		return "does not match";
	case ARGRULE_MAX_LENGTH:
		if ((n = argrule_codepoints(s, len)) > (unsigned long long)t->max) {
			snprintf(why_buf, why_len, "%zu characters", n);
			return why_buf;
		}
		return NULL;
	case ARGRULE_PATTERN:
		if ((md = pcre2_match_data_create_from_pattern(t->re, NULL)) == NULL)
			return "internal error (out of memory)";
		rc = pcre2_match(t->re, (PCRE2_SPTR)s, len, 0, 0, md, set->mctx);
		pcre2_match_data_free(md);
		if (rc >= 0)
			return NULL;
		if (rc == PCRE2_ERROR_NOMATCH)
			return "does not match";
		if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
		    rc == PCRE2_ERROR_HEAPLIMIT)
			return "too costly to match (PCRE2 limit reached)";
		return "cannot be matched (invalid UTF-8?)";
	case ARGRULE_ENUM:
		break;
	}
	return "internal error";
}

static void
argrule_deny(struct argrule_result *res, const struct argrule_set *set,
    const struct argrule_tool *tool, const struct argrule_test *t, const char *arg,
    long idx, const char *why)
{
	char index[32] = "";

	if (idx >= 0)
		snprintf(index, sizeof(index), "[%ld]", idx);
	res->allow = 0;
	res->reason = "argument rule";
	res->rule = t != NULL ? argrule_kind_names[t->kind] : "arguments";
	res->owner = set->owner;
	res->tool_glob = tool->glob;
	if (t != NULL)
		snprintf(res->detail, sizeof(res->detail), "%s: arguments.%.100s%s: %s",
		    t->label, arg, index, why);
	else
		snprintf(res->detail, sizeof(res->detail), "arguments: %s", why);
}

/* Checks one argument value (or each element of an array); 0 pass, -1 denied. */
static int
argrule_check_arg(const struct argrule_set *set, const struct argrule_tool *tool,
    const struct argrule_arg *a, json_t *v, struct argrule_result *res)
{
	const char *why;
	char buf[64];
	json_t *e;
	size_t i, k;

	if (v == NULL) {
		if (a->optional)
			return 0;
		argrule_deny(res, set, tool, &a->tests[0], a->name, -1, "missing (not optional)");
		return -1;
	}
	for (k = 0; k < a->ntests; k++) {
		if (!json_is_array(v)) {
			if ((why = argrule_test_value(set, &a->tests[k], v, buf,
			    sizeof(buf))) != NULL) {
				argrule_deny(res, set, tool, &a->tests[k], a->name, -1, why);
				return -1;
			}
			continue;
		}
		json_array_foreach(v, i, e) {
			why = json_is_array(e) || json_is_object(e) ?
			    "nested arrays and objects are refused" :
			    argrule_test_value(set, &a->tests[k], e, buf, sizeof(buf));
			if (why != NULL) {
				argrule_deny(res, set, tool, &a->tests[k], a->name, (long)i, why);
				return -1;
			}
		}
	}
	return 0;
}

int
argrule_check(struct argrule_set *const *sets, size_t nsets, const char *tool,
    json_t *arguments, struct argrule_result *res)
{
	const struct argrule_set *set;
	const struct argrule_tool *t;
	size_t i, j, k;

	memset(res, 0, sizeof(*res));
	res->allow = 1;
	for (i = 0; i < nsets; i++) {
		if ((set = sets[i]) == NULL)
			continue;
		if (tool == NULL) {
			res->allow = 0;
			res->reason = "argument rule";
			res->rule = "arguments";
			res->owner = set->owner;
			snprintf(res->detail, sizeof(res->detail), "tools/call without a tool name");
			return 0;
		}
		for (j = 0; j < set->ntools; j++) {
			t = &set->tools[j];
			if (!policy_glob(t->glob, tool))
				continue;
			if (arguments != NULL && !json_is_object(arguments)) {
				argrule_deny(res, set, t, NULL, NULL, -1, "not an object");
				return 0;
			}
			for (k = 0; k < t->nargs; k++)
				if (argrule_check_arg(set, t, &t->args[k], arguments == NULL ? NULL :
				    json_object_get(arguments, t->args[k].name), res) == -1)
					return 0;
		}
	}
	return 0;
}
