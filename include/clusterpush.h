/* Revocations and identity-map changes pushed to every instance of a cluster
 * (README "Running several instances"), without a shared filesystem.
 *
 * The instance whose files changed (scripts/agent-revoke, agent-issue, an edit of
 * the map: its own reload, state.h) writes the CRL and the identity map to Redis
 * (certgate:crl, certgate:map) and publishes its name on certgate:push. Every other
 * instance, subscribed, reads both keys, writes what differs over its own
 * tls.crl / identity_map files (file_write_atomic) and reloads through the same
 * state_reload the files' own change would run, then wakes the workers, whose sweep
 * closes connections of revoked certificates (the resumed handshakes of the new
 * CRL are refused by the TLS verify callback as always). A poll of the state
 * generation every 200 ms notices the local reload; the whole path takes well under
 * the 2 s the design promises (measured in tests/integration/t_cluster.sh).
 *
 * Which copy wins: a CRL replaces another only when its lastUpdate is not older
 * (never un-revoke by pushing an old CRL); for the identity map, the latest change
 * (a local edit is published, a pushed one adopted). At start-up and after Redis
 * comes back an instance adopts what Redis holds, or publishes its own when Redis
 * holds none (an empty, restarted Redis), or when its files changed while Redis was
 * unreachable.
 *
 * Threading: main thread only (the main loop's base). */
#ifndef CERTGATE_CLUSTERPUSH_H
#define CERTGATE_CLUSTERPUSH_H
#include <event2/event.h>

#include "config.h"

/* Nothing when cfg has no cluster.redis. Returns 0, or -1 (logged). cfg is borrowed
 * until clusterpush_stop. */
int clusterpush_start(struct event_base *base, const struct config *cfg);
void clusterpush_stop(void);

#endif
