/* Mcp-Session-Id -> agent bindings (see session.h). A chained hash table plus a
 * doubly linked list in least-recently-used order, both under one mutex; at the cap
 * the least recently used binding is evicted. */
#include "session.h"

#include "hash.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_DEFAULT_MAX 100000
#define SESSION_SLOTS       65536   /* power of two */

struct session_entry {
	struct session_entry *hnext;   /* hash chain */
	struct session_entry *prev;    /* LRU list, oldest at head */
	struct session_entry *next;
	char *agent;
	void *data;                    /* session_with attachment */
	char sid[];
};

struct session_table {
	pthread_mutex_t mu;
	struct session_entry **slots;
	struct session_entry *head;
	struct session_entry *tail;
	size_t count;
	size_t max;
	void (*free_fn)(void *);
};

static size_t
session_slot(const char *s)
{
	return (size_t)(hash_str(s) & (SESSION_SLOTS - 1));
}

struct session_table *
session_table_new_cap(size_t max)
{
	struct session_table *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->max = max ? max : SESSION_DEFAULT_MAX;
	if ((t->slots = calloc(SESSION_SLOTS, sizeof(*t->slots))) == NULL ||
	    pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t->slots);
		free(t);
		return NULL;
	}
	return t;
}

struct session_table *
session_table_new(void)
{
	return session_table_new_cap(SESSION_DEFAULT_MAX);
}

void
session_table_free(struct session_table *t)
{
	struct session_entry *e, *next;

	if (t == NULL)
		return;
	for (e = t->head; e != NULL; e = next) {
		next = e->next;
		if (e->data != NULL && t->free_fn != NULL)
			t->free_fn(e->data);
		free(e->agent);
		free(e);
	}
	free(t->slots);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static struct session_entry *
session_find(struct session_table *t, const char *sid)
{
	struct session_entry *e;

	for (e = t->slots[session_slot(sid)]; e != NULL; e = e->hnext)
		if (strcmp(e->sid, sid) == 0)
			return e;
	return NULL;
}

static void
session_unlink_lru(struct session_table *t, struct session_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		t->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		t->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
session_append_lru(struct session_table *t, struct session_entry *e)
{
	e->prev = t->tail;
	e->next = NULL;
	if (t->tail != NULL)
		t->tail->next = e;
	else
		t->head = e;
	t->tail = e;
}

/* Unlinks e from everything and frees it. */
static void
session_drop(struct session_table *t, struct session_entry *e)
{
	struct session_entry **pp;

	for (pp = &t->slots[session_slot(e->sid)]; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	session_unlink_lru(t, e);
	t->count--;
	if (e->data != NULL && t->free_fn != NULL)
		t->free_fn(e->data);
	free(e->agent);
	free(e);
}

void
session_table_set_free(struct session_table *t, void (*free_fn)(void *))
{
	t->free_fn = free_fn;
}

int
session_with(struct session_table *t, const char *sid, const char *agent,
    int (*fn)(void **data, void *arg), void *arg)
{
	struct session_entry *e;
	int rv = -1;

	if (t == NULL || sid == NULL || agent == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	if ((e = session_find(t, sid)) != NULL && strcmp(e->agent, agent) == 0)
		rv = fn(&e->data, arg);
	pthread_mutex_unlock(&t->mu);
	return rv;
}

int
session_bind(struct session_table *t, const char *sid, const char *agent)
{
	struct session_entry *e;
	size_t len, k;
	int rv = -1;

	if (t == NULL || sid == NULL || agent == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	if ((e = session_find(t, sid)) != NULL) {
		if (strcmp(e->agent, agent) == 0) {
			session_unlink_lru(t, e);
			session_append_lru(t, e);
			rv = 0;
		}
		goto out;
	}
	len = strlen(sid);
	if ((e = calloc(1, sizeof(*e) + len + 1)) == NULL)
		goto out;
	memcpy(e->sid, sid, len + 1);
	if ((e->agent = strdup(agent)) == NULL) {
		free(e);
		goto out;
	}
	while (t->count >= t->max && t->head != NULL)
		session_drop(t, t->head);
	k = session_slot(sid);
	e->hnext = t->slots[k];
	t->slots[k] = e;
	session_append_lru(t, e);
	t->count++;
	rv = 0;
out:
	pthread_mutex_unlock(&t->mu);
	return rv;
}

int
session_check(struct session_table *t, const char *sid, const char *agent)
{
	struct session_entry *e;
	int rv = -1;

	if (t == NULL || sid == NULL || agent == NULL)
		return -1;
	pthread_mutex_lock(&t->mu);
	if ((e = session_find(t, sid)) != NULL) {
		rv = strcmp(e->agent, agent) == 0;
		if (rv == 1) {
			session_unlink_lru(t, e);
			session_append_lru(t, e);
		}
	}
	pthread_mutex_unlock(&t->mu);
	return rv;
}

void
session_remove(struct session_table *t, const char *sid)
{
	struct session_entry *e;

	if (t == NULL || sid == NULL)
		return;
	pthread_mutex_lock(&t->mu);
	if ((e = session_find(t, sid)) != NULL)
		session_drop(t, e);
	pthread_mutex_unlock(&t->mu);
}

size_t
session_count(struct session_table *t)
{
	size_t n;

	if (t == NULL)
		return 0;
	pthread_mutex_lock(&t->mu);
	n = t->count;
	pthread_mutex_unlock(&t->mu);
	return n;
}
