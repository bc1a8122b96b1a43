/* Mcp-Session-Id binding: a session id returned by upstream for an agent's initialize
 * belongs to that agent (and to the certificate serial that created it) until upstream
 * answers 404 for it or the client DELETEs it. Thread-safe table. */
#ifndef CERTGATE_SESSION_H
#define CERTGATE_SESSION_H
#include <stddef.h>

struct session_table;

/* At most 100,000 bindings; beyond that the least recently used one is evicted. */
struct session_table *session_table_new(void);
/* Same with another cap (0: the default); for tests and tuning. */
struct session_table *session_table_new_cap(size_t max);
/* Number of bindings held. */
size_t session_count(struct session_table *t);
void session_table_free(struct session_table *t);

/* Binds sid to agent (copies). Rebinding an existing sid to another agent fails (-1). */
int session_bind(struct session_table *t, const char *sid, const char *agent);
/* 1: sid is bound to agent; 0: bound to another agent; -1: unknown sid. */
int session_check(struct session_table *t, const char *sid, const char *agent);
void session_remove(struct session_table *t, const char *sid);

#endif
