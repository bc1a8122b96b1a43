/* The process-wide cache of OCSP answers for client certificates (ocsp.h gives the
 * verdicts, ocspcheck.h asks). Keyed by ocsp_key; one entry per certificate in use,
 * whatever worker asked. Thread-safe (one mutex; entries are small and copied out).
 *
 * An answer stands until min(fetched + tls.ocsp.cache_s, nextUpdate). A revoked
 * answer stands for good (a certificate is never un-revoked). The refresh of an
 * entry is claimed by one asker at a time, so N workers with M connections on one
 * certificate send one query, not N*M. Entries no connection asked about for
 * 2 * cache_s are dropped by ocspcache_expire. Memory is bounded by the number of
 * distinct certificates connected (limits.max_connections). */
#ifndef CERTGATE_OCSPCACHE_H
#define CERTGATE_OCSPCACHE_H
#include <time.h>

#include "ocsp.h"

struct ocspcache_answer {
	int known;                      /* 0: never answered (nothing below is set) */
	enum ocsp_verdict verdict;      /* last answer (ERROR: the last query failed) */
	time_t fetched;                 /* when it arrived */
	time_t expires;                 /* when it stops standing */
	int fetching;                   /* a query is under way */
};

/* Copies the entry for key into *a (a->known 0 when none) and notes that it was
 * asked about at now. */
void ocspcache_get(const char *key, time_t now, struct ocspcache_answer *a);

/* Claims the refresh of key: 1 when the caller should query (no query under way),
 * 0 when another asker's query is running. Creates the entry. -1: out of memory. */
int ocspcache_claim(const char *key, time_t now);

/* Records the outcome of the claimed query: verdict at now, standing until expires
 * (for an ERROR: when the responder is asked again; until then askers take the
 * error as the answer, so a responder that is down is not asked by every
 * handshake). A REVOKED entry is never replaced. Clears the claim. */
void ocspcache_put(const char *key, enum ocsp_verdict verdict, time_t now, time_t expires);

/* Gives the claim up without an answer (the asker went away first). */
void ocspcache_release(const char *key);

/* Drops entries nobody asked about since before `before`. */
void ocspcache_expire(time_t before);

/* Entries held (metrics, tests). */
unsigned long ocspcache_count(void);

/* Frees every entry (shutdown). */
void ocspcache_clear(void);

#endif
