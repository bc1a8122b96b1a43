/* What agents are doing now: live connections and requests per agent, the addresses
 * each agent connected from, and the most recent refusals. For the status page
 * (statuspage.h) and /metrics (certgate_agent_requests_total{agent},
 * certgate_agent_connections{agent}, certgate_agent_new_addresses_total{agent}).
 *
 * An agent "connects from a new address" when a connection of it arrives from an
 * address it has not used since the gateway started, once it has used another one:
 * the first address after start-up is its baseline, so a restart does not raise an
 * alert for every agent. The address is logged (info) and counted.
 *
 * Memory is bounded: at most ACTIVITY_MAX_AGENTS agents are tracked (later ones share
 * one entry named "_other"), ACTIVITY_ADDRS addresses per agent (the oldest is
 * forgotten), ACTIVITY_DENIALS recent refusals. Entries live until activity_shutdown,
 * so a handle stays valid for as long as its connection.
 *
 * Threading: every function may be called from any thread (one mutex, held for a
 * table lookup and a few copies). */
#ifndef CERTGATE_ACTIVITY_H
#define CERTGATE_ACTIVITY_H
#include <stddef.h>
#include <time.h>

#include "identity.h"

#define ACTIVITY_MAX_AGENTS	4096
#define ACTIVITY_ADDRS		16
#define ACTIVITY_DENIALS	64

struct activity_agent;

/* A connection finished its handshake: peer is looked up in the identity map in force.
 * Returns the agent's entry, to pass to activity_conn_close when the connection ends,
 * or NULL when the certificate is not mapped (or no memory; activity_conn_close(NULL)
 * is a no-op). ip is the peer's address without the port. */
struct activity_agent *activity_conn_open(const struct identity_peer *peer, const char *ip);
void activity_conn_close(struct activity_agent *a);

/* One request was answered (called where it is audited). agent NULL: not mapped.
 * A refusal (allow 0) also goes to the recent refusals with reason (static or
 * copied), method and name (either may be NULL). */
void activity_request(const char *agent, const char *peer, int allow, const char *reason,
    const char *method, const char *name);

/* A refusal outside a request (a refused TLS handshake): into the recent refusals.
 * agent may be NULL; what says what was refused ("TLS handshake, serial 0A1B"). */
void activity_refusal(const char *agent, const char *peer, const char *reason,
    const char *what);

struct activity_agent_view {
	char id[129];
	long connections;               /* open now */
	long long requests;             /* since start */
	long long denials;
	long long new_addresses;
	time_t last_seen;               /* last connection or request; 0: never */
	char last_peer[64];
	long long cert_not_after;       /* of the last certificate seen; 0: none */
	char serial[80];
};
/* Copies up to max agents (sorted by id). Returns how many. */
size_t activity_agents(struct activity_agent_view *out, size_t max);

struct activity_denial {
	time_t when;
	char agent[129];                /* "" when not mapped */
	char peer[64];
	char reason[96];
	char what[160];
};
/* Copies up to max recent refusals, newest first. Returns how many. */
size_t activity_denials(struct activity_denial *out, size_t max);

/* Frees every entry (shutdown, after every connection ended). */
void activity_shutdown(void);

#endif
