/* A growable list of owned strings (error reports, string arrays). Not thread-safe
 * (one owner). */
#ifndef CERTGATE_STRLIST_H
#define CERTGATE_STRLIST_H
#include <stddef.h>

struct strlist {
	char **v;
	size_t n, cap;
};

/* Appends a printf-formatted copy. Returns 0/-1 (ENOMEM). */
int strlist_addf(struct strlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees every string and the array; the list is empty and reusable after. */
void strlist_free(struct strlist *l);

#endif
