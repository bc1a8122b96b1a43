/* Group commit of agent certificates: several issuances (the requests the CA service
 * read together, or one `certgate ca` command) done as one batch that shares the CA
 * lock, the database, one read and one write of the identity map, one audit append
 * and the fsyncs. The crash-safe order of castore.h is applied stage by stage to the
 * whole batch:
 *   checks and map edits (refusals, nothing spent) -> every before_sign (tokens
 *   marked used; their directory fsync'd once) -> every certificate signed -> every
 *   one archived (each file fsync'd, the archive directory once) -> the map written
 *   once -> the audit lines appended (one fsync) -> the rows added and the database
 *   saved once (the commit point) -> done.
 * Crash points (castore_crashpoint) fire once per batch after the stage of the same
 * name, so a kill leaves what castore.h promises for every item at once.
 *
 * Each item keeps the outcome it would have had alone: one refused by a check or a
 * map edit, or failing its own before_sign, signature or archive write, is dropped
 * (rc -1, err) and the others go on; a shared write that fails (map, database)
 * fails every item still going, with nothing committed (their rows are popped).
 * Items are handled in order, so an edit of the map sees the edits before it.
 *
 * Not thread-safe (the castore's thread). The caller holds the CA lock with db
 * loaded (castore_issue's conditions); db gains the committed rows. */
#ifndef CERTGATE_CABATCH_H
#define CERTGATE_CABATCH_H
#include <stddef.h>

#include "castore.h"

/* Most issuances in one batch: the CA service starts another for the rest. */
#define CABATCH_MAX	64

struct cabatch_item {
	const struct castore_issue *in; /* borrowed; in->before_sign_dir, when set, is
	                                 * fsync'd once after every before_sign */
	struct castore_issued out;      /* rc 0: the certificate (out.cert the caller's) */
	int rc;                         /* 0 issued, -1 not issued (err) */
	char err[1024];
};

/* Issues it[0..n) (n <= CABATCH_MAX); every item gets rc and, on failure, err.
 * Returns the number issued. */
size_t cabatch_issue(struct castore *s, struct cadb *db, struct cabatch_item *it, size_t n);

#endif
