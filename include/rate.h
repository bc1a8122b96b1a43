/* Per-agent token buckets shared by every worker thread. Buckets are keyed by agent
 * id, so they survive an identity-map reload; a bucket whose rate or burst changed is
 * reset to full. Thread-safe (one mutex; the critical section is a few arithmetic ops). */
#ifndef CERTGATE_RATE_H
#define CERTGATE_RATE_H

struct rate_table;

struct rate_table *rate_table_new(void);
void rate_table_free(struct rate_table *t);

/* Takes one token for agent at time now (seconds, monotonic). Returns 1 when allowed,
 * 0 when over the limit with *retry_after set to the seconds until a token is
 * available (>= 1 when rounded up for Retry-After). per_second <= 0 means unlimited. */
int rate_take(struct rate_table *t, const char *agent, double per_second, double burst,
    double now, double *retry_after);

#endif
