/* Growable byte buffer (buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b)
{
	memset(b, 0, sizeof(*b));
}

void
buf_init_stack(struct buf *b, char *storage, size_t size)
{
	memset(b, 0, sizeof(*b));
	b->p = storage;
	b->cap = size;
	if (size > 0)
		storage[0] = '\0';
}

/* Makes room for n more bytes plus the NUL. */
static int
buf_grow(struct buf *b, size_t n)
{
	size_t need, ncap;
	char *np;

	if (b->err)
		return -1;
	if (n > (size_t)-1 / 2 - b->len)
		goto fail;
	need = b->len + n + 1;
	if (b->max != 0 && b->len + n > b->max)
		goto fail;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	if (b->heap)
		np = realloc(b->p, ncap);
	else if ((np = malloc(ncap)) != NULL && b->len > 0)
		memcpy(np, b->p, b->len);
	if (np == NULL)
		goto fail;
	b->p = np;
	b->cap = ncap;
	b->heap = 1;
	return 0;
fail:
	b->err = 1;
	return -1;
}

int
buf_add(struct buf *b, const void *p, size_t n)
{
	if (buf_grow(b, n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int
buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int
buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_grow(b, (size_t)n) == -1) {
		b->err = 1;
		return -1;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_addu(struct buf *b, unsigned long long v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return buf_add(b, tmp + i, sizeof(tmp) - i);
}

const char *
buf_str(struct buf *b)
{
	return b->p != NULL && b->cap > 0 ? b->p : "";
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->p != NULL && b->cap > 0)
		b->p[0] = '\0';
}

char *
buf_detach(struct buf *b, size_t *len)
{
	char *s;

	if (b->err) {
		buf_free(b);
		return NULL;
	}
	if (b->heap) {
		s = b->p;
	} else if ((s = malloc(b->len + 1)) != NULL) {
		if (b->len > 0)
			memcpy(s, b->p, b->len);
		s[b->len] = '\0';
	}
	if (s != NULL && b->len == 0)
		s[0] = '\0';
	if (len != NULL)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	b->heap = 0;
	return s;
}

int
buf_failed(const struct buf *b)
{
	return b->err;
}

void
buf_wipe(struct buf *b)
{
	if (b->p != NULL && b->cap > 0)
		explicit_bzero(b->p, b->cap);
	buf_free(b);
}

void
buf_free(struct buf *b)
{
	if (b->heap)
		free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->heap = 0;
	b->err = 0;
}
