/* The rules of the CA service: what an enrollment, a renewal and an OCSP query may
 * do, enforced in the process that holds the CA key, so a compromised gateway
 * cannot mint arbitrary certificates (see README, "The CA service").
 *
 * enroll: the one-time token decides everything but the key: agent id, roles,
 *   scopes, lifetime. It must be known, unused, unexpired, for this CA, and for the
 *   agent named (when one is). It is marked used before the signature (single use
 *   even when the process dies), together with the SHA-256 of the key certified;
 *   the issuance is crash-safe (castore.h). A spent token presented again with
 *   that same key before the token's expiry gets the same certificate again (read
 *   from the archive, if its database row is valid), audited "enroll_redelivered":
 *   the retry of an agent whose answer was lost (the gateway timed out). Any other
 *   key is refused as before.
 * renew: the presented certificate must be signed by this CA, in its database,
 *   neither revoked nor expired, an agent's (CN=ID, SAN spiffe://TD/agent/ID) and
 *   mapped to that agent; the new certificate has the same identity and lifetime
 *   length; renewals per agent are rate-limited (ca.renew_per_hour, renew_burst).
 * ocsp: good/revoked/unknown from the database for CertIDs of this CA, signed by the
 *   CA key.
 * Every issuance and every refusal is audited (ca.audit).
 *
 * One struct caops per process, used from one thread. */
#ifndef CERTGATE_CAOPS_H
#define CERTGATE_CAOPS_H
#include <stddef.h>

#include "caproto.h"

struct config;
struct caops;

/* Opens the CA (certificate, key in the CA token), reconciles an interrupted
 * issuance and prunes old token records, all under the CA lock. NULL with err. */
struct caops *caops_new(const struct config *cfg, char *err, size_t errlen);
void caops_free(struct caops *o);

/* Answers one request (rep is filled; free with caproto_reply_clear). Takes the CA
 * lock for the time of an enrollment, renewal or OCSP signature. */
void caops_handle(struct caops *o, const struct caproto_req *req, struct caproto_reply *rep);

/* Answers reqs[0..n) as one batch (group commit, cabatch.h): one CA lock, one load
 * of the database, and the enrollments and renewals that pass their checks issued
 * together. Each request gets the answer it would have got alone, handled in order;
 * reps[i] is filled (free each with caproto_reply_clear) unless deferred[i] is set:
 * the request touches a token or an agent an earlier request of the batch is
 * changing (or i >= CABATCH_MAX), and must be passed again in a later batch, where
 * it sees that change committed. Requests other than enroll and renew are answered
 * as caops_handle does. */
void caops_handle_batch(struct caops *o, const struct caproto_req *const *reqs,
    struct caproto_reply *reps, int *deferred, size_t n);

/* The CA certificate's SHA-256 fingerprint (lowercase hex). */
const char *caops_fingerprint(const struct caops *o);

#endif
