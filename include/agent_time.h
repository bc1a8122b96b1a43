/* Certificate lifetime arithmetic for the agent's renewal: when to renew, how long to
 * wait after a failed attempt, when to warn. Times are seconds (time_t, UTC). Pure
 * functions, no I/O, no clock reads (the caller passes now), thread-safe.
 *
 * The lifetime is counted from the issuance, as certgate's CA counts it: the CA
 * backdates notBefore by AGENT_TIME_BACKDATE for clock skew, so a 3-minute
 * certificate spans 8 minutes from notBefore to notAfter and is to be renewed 2
 * minutes after it was issued, not 2/3 of 8 minutes after notBefore. A validity
 * window too short to hold the backdating and the shortest lifetime
 * (AGENT_TIME_MIN_LIFE) comes from another CA and is counted from notBefore. */
#ifndef CERTGATE_AGENT_TIME_H
#define CERTGATE_AGENT_TIME_H
#include <stddef.h>
#include <time.h>

/* CERTIFY_BACKDATE of the CA (include/certify.h; test_agent_time checks they agree). */
#define AGENT_TIME_BACKDATE 300
/* The shortest lifetime the CA issues (scripts/agent-token --lifetime 2m). */
#define AGENT_TIME_MIN_LIFE 120
/* How long after its issuance a certificate may still be unknown to the gateway: the
 * gateway loads its identity map within about a second of an enrollment's change
 * (its change detection ticks every second), instances of a cluster within 2 s;
 * the rest is room for a loaded machine. */
#define AGENT_TIME_MAP_WAIT 10

/* The moment the certificate was issued: not_before + AGENT_TIME_BACKDATE when the
 * window holds the backdating and AGENT_TIME_MIN_LIFE, else not_before. */
time_t agent_time_issued(time_t not_before, time_t not_after);

/* 1 while now is less than AGENT_TIME_MAP_WAIT after the issuance: a refusal of the
 * certificate as unknown to the identity map may then only mean that the gateway
 * has not loaded the new agent yet. */
int agent_time_map_pending(time_t not_before, time_t not_after, time_t now);

/* Where now stands in a certificate's validity [not_before, not_after]. */
enum agent_time_phase {
	AGENT_TIME_FRESH = 0,   /* before 2/3 of the lifetime: nothing to do */
	AGENT_TIME_DUE,         /* past 2/3: renew now */
	AGENT_TIME_LATE,        /* in the last sixth: renew, and warn that it is late */
	AGENT_TIME_EXPIRED,     /* past not_after (or a window that is empty) */
};

/* The moment to renew: 2/3 of the way from the issuance to not_after. With
 * not_after <= not_before, not_before. */
time_t agent_time_renew_at(time_t not_before, time_t not_after);

/* The moment after which an unrenewed certificate is late: 5/6 of the way. */
time_t agent_time_late_at(time_t not_before, time_t not_after);

enum agent_time_phase agent_time_phase(time_t not_before, time_t not_after, time_t now);

/* Seconds to wait before retry number attempt (1 for the first retry) after a
 * failed renewal (the lifetime counted from the issuance): doubling from lifetime/60 (at least 1 s, at most 60 s) up to
 * lifetime/12 (at least 5 s, at most 1 h), plus up to 10 % of jitter taken from rnd
 * (any value; pass a random number so a fleet does not retry in step). Never later
 * than not_after - now when that is still positive, never below 1. */
long agent_time_backoff(time_t not_before, time_t not_after, time_t now,
    unsigned attempt, unsigned rnd);

/* A duration for messages: "3d4h", "2h5m", "4m10s", "12s" (negative: "-12s").
 * Returns out. */
char *agent_time_fmt(long secs, char *out, size_t outlen);

/* An instant as RFC 3339 UTC ("2026-01-02T03:04:05Z"). Returns out. */
char *agent_time_iso(time_t t, char *out, size_t outlen);

#endif
