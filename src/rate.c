/* Per-agent token buckets (see rate.h). One mutex guards a chained hash table keyed by
 * agent id; buckets are never removed (there is one per mapped agent at most). */
#include "rate.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct rate_bucket {
	struct rate_bucket *next;
	double per_second;
	double burst;
	double tokens;
	double last;
	char agent[];
};

struct rate_table {
	pthread_mutex_t mu;
	struct rate_bucket **slots;
	size_t nslots;        /* power of two */
	size_t count;
};

static uint64_t
rate_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

struct rate_table *
rate_table_new(void)
{
	struct rate_table *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->nslots = 64;
	if ((t->slots = calloc(t->nslots, sizeof(*t->slots))) == NULL ||
	    pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t->slots);
		free(t);
		return NULL;
	}
	return t;
}

void
rate_table_free(struct rate_table *t)
{
	struct rate_bucket *b, *next;
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nslots; i++)
		for (b = t->slots[i]; b != NULL; b = next) {
			next = b->next;
			free(b);
		}
	free(t->slots);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* Doubles the slot array when the chains get long; failure just keeps them long. */
static void
rate_grow(struct rate_table *t)
{
	struct rate_bucket **ns, *b, *next;
	size_t i, n = t->nslots * 2, k;

	if ((ns = calloc(n, sizeof(*ns))) == NULL)
		return;
	for (i = 0; i < t->nslots; i++)
		for (b = t->slots[i]; b != NULL; b = next) {
			next = b->next;
			k = rate_hash(b->agent) & (n - 1);
			b->next = ns[k];
			ns[k] = b;
		}
	free(t->slots);
	t->slots = ns;
	t->nslots = n;
}

/* Finds or creates the bucket; called with the mutex held. */
static struct rate_bucket *
rate_bucket_get(struct rate_table *t, const char *agent, double per_second, double burst,
    double now)
{
	struct rate_bucket *b;
	size_t k, len;

	k = rate_hash(agent) & (t->nslots - 1);
	for (b = t->slots[k]; b != NULL; b = b->next)
		if (strcmp(b->agent, agent) == 0)
			break;
	if (b == NULL) {
		len = strlen(agent);
		if ((b = calloc(1, sizeof(*b) + len + 1)) == NULL)
			return NULL;
		memcpy(b->agent, agent, len + 1);
		b->next = t->slots[k];
		t->slots[k] = b;
		if (++t->count > t->nslots * 2)
			rate_grow(t);
	} else if (b->per_second == per_second && b->burst == burst)
		return b;
	/* new bucket, or the map changed this agent's limits: start full */
	b->per_second = per_second;
	b->burst = burst;
	b->tokens = burst;
	b->last = now;
	return b;
}

int
rate_take(struct rate_table *t, const char *agent, double per_second, double burst,
    double now, double *retry_after)
{
	struct rate_bucket *b;
	int ok;

	if (retry_after != NULL)
		*retry_after = 0;
	if (!(per_second > 0) || t == NULL || agent == NULL)
		return 1;
	if (!(burst >= 1))
		burst = 1;
	pthread_mutex_lock(&t->mu);
	if ((b = rate_bucket_get(t, agent, per_second, burst, now)) == NULL) {
		/* out of memory: failing open keeps the gateway serving */
		pthread_mutex_unlock(&t->mu);
		return 1;
	}
	/* a clock that steps back only stops refilling, it never drains */
	if (now > b->last) {
		b->tokens += per_second * (now - b->last);
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last = now;
	}
	ok = b->tokens >= 1;
	if (ok)
		b->tokens -= 1;
	else if (retry_after != NULL)
		*retry_after = (1 - b->tokens) / per_second;
	pthread_mutex_unlock(&t->mu);
	return ok;
}
