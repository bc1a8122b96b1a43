/* The CA's audit trail (ca.audit, normally DIR/ca-audit.jsonl): one JSON line per
 * CA event, appended with jsonl.h (one write(2), fsync'd), so lines from the
 * commands and the CA service never interleave. Thread-safe.
 *
 * Every line has "ts" (RFC 3339), "who" (the Unix user, "(sudo by X)" when run
 * through sudo) and "what"; the other fields are written when set. Never pass a
 * secret: tokens appear only as their id (a prefix of their hash). */
#ifndef CERTGATE_CAAUDIT_H
#define CERTGATE_CAAUDIT_H
#include <jansson.h>

struct caaudit_rec {
	const char *what;        /* init, server, issue, renew, revoke, crl, token, enroll,
	                          * enroll_redelivered, refused, reconcile */
	const char *serial;
	const char *agent;
	const char *subject;
	const char *reason;      /* revocation reason, or why something was refused */
	const char *not_after;   /* RFC 3339 */
	const char *old_serial;  /* renew: the certificate presented */
	const char *token;       /* token id, never the token */
	const char *via;         /* "cli" (default) or "est" (through the CA service) */
	const char *peer;        /* the client address the gateway reported */
	const char *op;          /* refused: the operation refused */
};

/* Appends a's fields, then every member of extra (may be NULL; borrowed), to path.
 * path NULL: nothing is written, 0. Returns 0/-1 with errno; the event itself has
 * already happened and is not undone. */
int caaudit_write(const char *path, const struct caaudit_rec *a, json_t *extra);
/* a[0..n) as n lines in one append and one fsync (the CA service's group commit),
 * each with extra. Same returns. */
int caaudit_write_many(const char *path, const struct caaudit_rec *a, size_t n,
    json_t *extra);

#endif
