/* Certificate renewal for the agent: EST /simplereenroll with the current
 * certificate, a new key of the same kind in the same place (a new PEM key, or a new
 * key in the same token under a new label), and a crash-safe replacement of the
 * files in AGENTDIR (agent_dir.h).
 *
 * agent_renew_once is the blocking step, used by `certgate agent renew` and by the
 * background renewal of the bridges: agent_renew_start schedules it at 2/3 of the
 * certificate's lifetime on a timer of the bridge's event loop and runs it on a
 * thread of its own (key generation in a token may take seconds), retries with
 * back-off on failure, warns when the certificate gets close to expiry without a
 * successful renewal, and hands every new credential to the bridge on the loop's
 * thread. Several bridges sharing one AGENTDIR renew once: the directory is locked
 * while renewing, and a bridge that finds a newer certificate there adopts it. */
#ifndef CERTGATE_AGENT_RENEW_H
#define CERTGATE_AGENT_RENEW_H
#include <event2/event.h>
#include <stddef.h>

#include "agent_cred.h"

/* Renews the certificate of dir through ORIGIN/.well-known/est/simplereenroll.
 * cur is the credential in use (NULL: the one in dir). Without force, a newer
 * certificate already in dir that is not yet due for renewal is adopted instead
 * (*adopted set). A certificate issued less than AGENT_TIME_MAP_WAIT ago that the
 * gateway refuses as unmapped is tried again until then (the gateway loads a new
 * agent within about a second). On success *out gets the new credential (one
 * reference) and the files are replaced. Returns 0, or -1 with err (the old files
 * stay) and, when retry_after is not NULL, whether to try again: the server's
 * Retry-After in seconds, 0 when it was busy (503) or out of reach without saying
 * when, -1 when another attempt would fail the same way. cancel, when not NULL, aborts the HTTP exchange (and a wait)
 * when it becomes non-zero. Any thread. */
int agent_renew_once(const char *dir, const char *origin, struct agent_cred *cur,
    int force, struct agent_cred **out, int *adopted, long *retry_after, char *err,
    size_t errlen, const volatile int *cancel);

/* `certgate agent renew`: returns the process exit status. */
int agent_renew_run(const char *url, const char *dir);

/* After a CA rollover: anchors plus the self-signed certificates of answer (an
 * enrollment or renewal answer, received over a connection anchors authenticated,
 * as RFC 7030 4.1.3 allows) that issued the top of leaf's chain. A new stack, or
 * NULL when the answer holds no such root. */
STACK_OF(X509) *agent_renew_new_anchors(STACK_OF(X509) *anchors, STACK_OF(X509) *answer,
    X509 *leaf, STACK_OF(X509) *chain);

struct agent_renew;

/* Called on the loop's thread with each new credential (borrowed: take a reference
 * to keep it). */
typedef void (*agent_renew_fn)(void *arg, struct agent_cred *cred);

/* Schedules background renewal of cur (a reference is taken) on base. Returns NULL
 * on failure (logged). Loop thread only. */
struct agent_renew *agent_renew_start(struct event_base *base, const char *dir,
    const char *origin, struct agent_cred *cur, agent_renew_fn fn, void *arg);

/* Stops: aborts a renewal in progress and waits for its thread (a key being
 * generated in a token is waited for). NULL is a no-op. Loop thread only. */
void agent_renew_stop(struct agent_renew *r);

#endif
