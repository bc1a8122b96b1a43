/* JSON paths to lines (jsonpos.h): one walk over the raw text with a small
 * tokenizer that follows JSON's grammar only as far as locating values needs
 * (jansson has already validated the text, or is about to report it). */
#include "jsonpos.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

struct jsonpos_ent {
	char *path;
	int line;
};

struct jsonpos {
	struct jsonpos_ent *v;
	size_t n, cap;
};

struct jsonpos_scan {
	const char *p, *end;
	int line;
	int depth;
	struct buf path;
	struct jsonpos *m;
};

int
jsonpos_key(struct buf *b, const char *key)
{
	const unsigned char *k = (const unsigned char *)key;
	char esc[8];
	int plain = isalpha(k[0]) || k[0] == '_';
	size_t i;

	for (i = 1; plain && k[i]; i++)
		if (!isalnum(k[i]) && k[i] != '_' && k[i] != '-')
			plain = 0;
	if (plain) {
		buf_addc(b, '.');
		return buf_adds(b, key);
	}
	buf_adds(b, "[\"");
	for (i = 0; k[i]; i++) {
		if (k[i] == '"' || k[i] == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)k[i]);
		} else if (k[i] < 0x20 || k[i] == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", k[i]);
			buf_adds(b, esc);
		} else
			buf_addc(b, (char)k[i]);
	}
	return buf_adds(b, "\"]");
}

int
jsonpos_index(struct buf *b, size_t i)
{
	return buf_addf(b, "[%zu]", i);
}

char *
jsonpos_child(const char *parent, const char *key)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, parent);
	jsonpos_key(&b, key);
	return buf_detach(&b, NULL);    /* NULL after a failed append */
}

void
jsonpos_free(struct jsonpos *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n; i++)
		free(m->v[i].path);
	free(m->v);
	free(m);
}

static int
jsonpos_add(struct jsonpos_scan *s)
{
	struct jsonpos *m = s->m;
	struct jsonpos_ent *nv;
	size_t ncap;

	if (m->n == m->cap) {
		ncap = m->cap ? m->cap * 2 : 64;
		if ((nv = realloc(m->v, ncap * sizeof(*nv))) == NULL)
			return -1;
		m->v = nv;
		m->cap = ncap;
	}
	if ((m->v[m->n].path = strdup(buf_str(&s->path))) == NULL)
		return -1;
	m->v[m->n++].line = s->line;
	return 0;
}

static void
jsonpos_ws(struct jsonpos_scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' ||
	    *s->p == '\n')) {
		if (*s->p == '\n')
			s->line++;
		s->p++;
	}
}

static int
jsonpos_hex4(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;
	int i, d;

	if (end - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		if ((d = text_hexval((unsigned char)p[i])) < 0)
			return -1;
		v = v << 4 | (unsigned)d;
	}
	*out = v;
	return 0;
}

static void
jsonpos_utf8(struct buf *b, unsigned cp)
{
	if (cp < 0x80)
		buf_addc(b, (char)cp);
	else if (cp < 0x800) {
		buf_addc(b, (char)(0xc0 | (cp >> 6)));
		buf_addc(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_addc(b, (char)(0xe0 | (cp >> 12)));
		buf_addc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_addc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		buf_addc(b, (char)(0xf0 | (cp >> 18)));
		buf_addc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		buf_addc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		buf_addc(b, (char)(0x80 | (cp & 0x3f)));
	}
}

/* Decodes one escape after the backslash (s->p at the escape letter). */
static int
jsonpos_escape(struct jsonpos_scan *s, struct buf *out)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *f;
	unsigned cp, lo;

	if ((f = strchr(from, *s->p)) != NULL && *s->p != '\0') {
		if (out)
			buf_addc(out, to[f - from]);
		s->p++;
		return 0;
	}
	if (*s->p != 'u' || jsonpos_hex4(s->p + 1, s->end, &cp) == -1)
		return -1;
	s->p += 5;
	if (cp >= 0xd800 && cp <= 0xdbff && s->end - s->p >= 6 && s->p[0] == '\\' &&
	    s->p[1] == 'u' && jsonpos_hex4(s->p + 2, s->end, &lo) == 0 &&
	    lo >= 0xdc00 && lo <= 0xdfff) {
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		s->p += 6;
	}
	if (out)
		jsonpos_utf8(out, cp);
	return 0;
}

/* Consumes a string (s->p at the opening quote); decodes it into out when given. */
static int
jsonpos_string(struct jsonpos_scan *s, struct buf *out)
{
	const char *run;

	s->p++;
	while (s->p < s->end && *s->p != '"') {
		if (*s->p == '\\') {
			s->p++;
			if (s->p >= s->end || jsonpos_escape(s, out) == -1)
				return -1;
			continue;
		}
		run = s->p;
		while (s->p < s->end && *s->p != '"' && *s->p != '\\') {
			if (*s->p == '\n')
				s->line++;
			s->p++;
		}
		if (out)
			buf_add(out, run, (size_t)(s->p - run));
	}
	if (s->p >= s->end)
		return -1;
	s->p++;
	return 0;
}

static int jsonpos_value(struct jsonpos_scan *s);

/* Cuts the scan's path back to plen bytes. */
static void
jsonpos_trim(struct jsonpos_scan *s, size_t plen)
{
	s->path.len = plen;
	if (s->path.p != NULL)
		s->path.p[plen] = '\0';
}

static int
jsonpos_object(struct jsonpos_scan *s)
{
	size_t plen = s->path.len;
	struct buf key;
	int rc = -1;

	buf_init(&key);
	s->p++;
	jsonpos_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		jsonpos_ws(s);
		if (s->p >= s->end || *s->p != '"')
			goto fail;
		buf_reset(&key);
		if (jsonpos_string(s, &key) == -1 || buf_failed(&key))
			goto fail;
		jsonpos_ws(s);
		if (s->p >= s->end || *s->p != ':')
			goto fail;
		s->p++;
		if (jsonpos_key(&s->path, buf_str(&key)) == -1 || jsonpos_value(s) == -1)
			goto fail;
		jsonpos_trim(s, plen);
		jsonpos_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			break;
		}
		goto fail;
	}
	rc = 0;
fail:
	buf_free(&key);
	return rc;
}

static int
jsonpos_array(struct jsonpos_scan *s)
{
	size_t plen = s->path.len, i;

	s->p++;
	jsonpos_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (i = 0;; i++) {
		if (jsonpos_index(&s->path, i) == -1 || jsonpos_value(s) == -1)
			return -1;
		jsonpos_trim(s, plen);
		jsonpos_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			return 0;
		}
		return -1;
	}
}

static int
jsonpos_value(struct jsonpos_scan *s)
{
	int rc;

	jsonpos_ws(s);
	if (s->p >= s->end || s->depth >= JSONPOS_MAX_DEPTH)
		return -1;
	if (jsonpos_add(s) == -1)
		return -1;
	switch (*s->p) {
	case '{':
		s->depth++;
		rc = jsonpos_object(s);
		s->depth--;
		return rc;
	case '[':
		s->depth++;
		rc = jsonpos_array(s);
		s->depth--;
		return rc;
	case '"':
		return jsonpos_string(s, NULL);
	default:
		/* number, true, false, null: up to the next delimiter */
		while (s->p < s->end && !strchr(",]} \t\r\n", *s->p))
			s->p++;
		return 0;
	}
}

int
jsonpos_build(const char *text, size_t len, struct jsonpos **out)
{
	struct jsonpos_scan s = { .p = text, .end = text + len, .line = 1 };
	int rc;

	if ((*out = s.m = calloc(1, sizeof(*s.m))) == NULL)
		return -1;
	buf_init(&s.path);
	if (buf_adds(&s.path, "$") == -1) {
		buf_free(&s.path);
		return -1;
	}
	rc = jsonpos_value(&s);
	buf_free(&s.path);
	return rc;
}

static int
jsonpos_find_exact(const struct jsonpos *m, const char *path, size_t n)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (strncmp(m->v[i].path, path, n) == 0 && m->v[i].path[n] == '\0')
			return m->v[i].line;
	return 0;
}

int
jsonpos_line(const struct jsonpos *m, const char *path)
{
	size_t starts[JSONPOS_MAX_DEPTH + 2], ns = 0, i, n = strlen(path);
	int line;

	if (m == NULL)
		return 0;
	for (i = 1; i < n && ns < JSONPOS_MAX_DEPTH + 1;) {
		starts[ns++] = i;
		if (path[i] == '[' && i + 1 < n && path[i + 1] == '"') {
			for (i += 2; i < n && path[i] != '"'; i++)
				if (path[i] == '\\')
					i++;
			i += 2;	/* closing "] */
		} else {
			for (i++; i < n && path[i] != '.' && path[i] != '['; i++)
				;
		}
	}
	if ((line = jsonpos_find_exact(m, path, n)) != 0)
		return line;
	while (ns > 0)
		if ((line = jsonpos_find_exact(m, path, starts[--ns])) != 0)
			return line;
	return 0;
}

const char *
jsonpos_duplicate(const struct jsonpos *m, int line)
{
	const char *found = NULL;
	size_t i, j;

	for (i = 0; m != NULL && i < m->n; i++)
		for (j = 0; j < i; j++)
			if (strcmp(m->v[i].path, m->v[j].path) == 0) {
				if (m->v[i].line == line)
					return m->v[i].path;
				if (found == NULL)
					found = m->v[i].path;
			}
	return found;
}
