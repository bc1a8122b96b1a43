/* String lists (strlist.h). */
#include "strlist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int
strlist_addf(struct strlist *l, const char *fmt, ...)
{
	va_list ap;
	char *s, **nv;
	size_t ncap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -1;
	if (l->n == l->cap) {
		ncap = l->cap ? l->cap * 2 : 8;
		if ((nv = realloc(l->v, ncap * sizeof(*nv))) == NULL) {
			free(s);
			return -1;
		}
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = s;
	return 0;
}

void
strlist_free(struct strlist *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
