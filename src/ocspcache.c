/* The OCSP answer cache (ocspcache.h). */
#include "ocspcache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define OCSPCACHE_BUCKETS 1024

struct ocspcache_ent {
	struct ocspcache_ent *next;
	char key[OCSP_KEY_LEN];
	struct ocspcache_answer a;
	time_t asked;                   /* last ocspcache_get/claim */
};

static pthread_mutex_t ocspcache_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct ocspcache_ent *ocspcache_tab[OCSPCACHE_BUCKETS];
static unsigned long ocspcache_n;

/* Caller holds the lock. */
static struct ocspcache_ent **
ocspcache_slot(const char *key)
{
	struct ocspcache_ent **pp;

	for (pp = &ocspcache_tab[hash_str(key) % OCSPCACHE_BUCKETS]; *pp != NULL;
	    pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0)
			break;
	return pp;
}

void
ocspcache_get(const char *key, time_t now, struct ocspcache_answer *a)
{
	struct ocspcache_ent *e;

	pthread_mutex_lock(&ocspcache_mtx);
	if ((e = *ocspcache_slot(key)) != NULL) {
		e->asked = now;
		*a = e->a;
	} else
		memset(a, 0, sizeof(*a));
	pthread_mutex_unlock(&ocspcache_mtx);
}

int
ocspcache_claim(const char *key, time_t now)
{
	struct ocspcache_ent **pp, *e;
	int rc = 0;

	pthread_mutex_lock(&ocspcache_mtx);
	pp = ocspcache_slot(key);
	if ((e = *pp) == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL) {
			rc = -1;
			goto out;
		}
		snprintf(e->key, sizeof(e->key), "%s", key);
		*pp = e;
		ocspcache_n++;
	}
	e->asked = now;
	if (!e->a.fetching) {
		e->a.fetching = 1;
		rc = 1;
	}
out:
	pthread_mutex_unlock(&ocspcache_mtx);
	return rc;
}

void
ocspcache_put(const char *key, enum ocsp_verdict verdict, time_t now, time_t expires)
{
	struct ocspcache_ent *e;

	pthread_mutex_lock(&ocspcache_mtx);
	if ((e = *ocspcache_slot(key)) != NULL) {
		e->a.fetching = 0;
		if (!(e->a.known && e->a.verdict == OCSP_VERDICT_REVOKED)) {
			e->a.known = 1;
			e->a.verdict = verdict;
			e->a.fetched = now;
			e->a.expires = expires;
		}
	}
	pthread_mutex_unlock(&ocspcache_mtx);
}

void
ocspcache_release(const char *key)
{
	struct ocspcache_ent *e;

	pthread_mutex_lock(&ocspcache_mtx);
	if ((e = *ocspcache_slot(key)) != NULL)
		e->a.fetching = 0;
	pthread_mutex_unlock(&ocspcache_mtx);
}

void
ocspcache_expire(time_t before)
{
	struct ocspcache_ent **pp, *e;
	size_t i;

	pthread_mutex_lock(&ocspcache_mtx);
	for (i = 0; i < OCSPCACHE_BUCKETS; i++)
		for (pp = &ocspcache_tab[i]; (e = *pp) != NULL;) {
			if (e->asked < before && !e->a.fetching) {
				*pp = e->next;
				free(e);
				ocspcache_n--;
			} else
				pp = &e->next;
		}
	pthread_mutex_unlock(&ocspcache_mtx);
}

unsigned long
ocspcache_count(void)
{
	unsigned long n;

	pthread_mutex_lock(&ocspcache_mtx);
	n = ocspcache_n;
	pthread_mutex_unlock(&ocspcache_mtx);
	return n;
}

void
ocspcache_clear(void)
{
	struct ocspcache_ent *e;
	size_t i;

	pthread_mutex_lock(&ocspcache_mtx);
	for (i = 0; i < OCSPCACHE_BUCKETS; i++)
		while ((e = ocspcache_tab[i]) != NULL) {
			ocspcache_tab[i] = e->next;
			free(e);
		}
	ocspcache_n = 0;
	pthread_mutex_unlock(&ocspcache_mtx);
}
