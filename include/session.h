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
/* Number of bindings held (the certgate_sessions gauge). */
size_t session_count(struct session_table *t);
void session_table_free(struct session_table *t);

/* Binds sid to agent (copies). Rebinding an existing sid to another agent fails (-1). */
int session_bind(struct session_table *t, const char *sid, const char *agent);
/* 1: sid is bound to agent; 0: bound to another agent; -1: unknown sid. */
int session_check(struct session_table *t, const char *sid, const char *agent);
void session_remove(struct session_table *t, const char *sid);

/* Per-session data (the session's tool table for schema checks, tooltab.h): set the
 * destructor once after creating the table; it runs on the data when its binding ends
 * (removed, evicted, table freed), with the table's lock held. */
void session_table_set_free(struct session_table *t, void (*free_fn)(void *));
/* Runs fn(&data, arg) under the table's lock when sid is bound to agent (fn may set
 * *data to attach something). Returns fn's result, or -1 when sid is unknown or bound
 * to another agent. fn must be short and must not call back into the table. */
int session_with(struct session_table *t, const char *sid, const char *agent,
    int (*fn)(void **data, void *arg), void *arg);

#endif
