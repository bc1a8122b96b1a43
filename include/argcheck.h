/* Schema checks at the gateway (mcp.validate_arguments): which tool table
 * (tooltab.h) a request is checked against, and keeping it current. A table belongs
 * to an MCP session (attached to its binding in the session table, so it ends with
 * the session), or, for an upstream that keeps no sessions, to the agent. It learns
 * from every tools/list answer relayed to that session (a first page replaces the
 * table: after notifications/tools/list_changed the client's next listing brings it
 * up to date); a tools/call of a tool never listed is refused.
 *
 * Threading: any worker thread; the tables are guarded by the session table's lock
 * (a check holds it for the validation, which schema.h bounds). */
#ifndef CERTGATE_ARGCHECK_H
#define CERTGATE_ARGCHECK_H
#include <jansson.h>
#include <stddef.h>

#include "mcp.h"

struct session_table;

/* Which table: the session's when session is set, else the agent's. */
struct argcheck_key {
	const char *session;    /* Mcp-Session-Id, or NULL */
	const char *agent;      /* agent id */
};

/* Start-up: attach tables to sessions (sets its destructor). Returns 0/-1. */
int argcheck_init(struct session_table *sessions);
void argcheck_shutdown(void);

/* An mcp_validate_fn (arg: struct argcheck_key *). */
int argcheck_validate(void *key, const char *tool, json_t *arguments, const char **reason,
    char *detail, size_t len);

/* An mcp_observe_fn (arg: struct argcheck_key *): learns tools/list answers. */
void argcheck_observe(void *key, json_t *msg, const struct mcp_pending_list *answered);

#endif
