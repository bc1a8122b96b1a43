/* Mcp-Session-Id binding: a session id returned by upstream for an agent's initialize
 * belongs to that agent (and to the certificate serial that created it) until upstream
 * answers 404 for it or the client DELETEs it. Thread-safe table. */
#ifndef CERTGATE_SESSION_H
#define CERTGATE_SESSION_H

struct session_table;

struct session_table *session_table_new(void);
void session_table_free(struct session_table *t);

/* Binds sid to agent (copies). Rebinding an existing sid to another agent fails (-1). */
int session_bind(struct session_table *t, const char *sid, const char *agent);
/* 1: sid is bound to agent; 0: bound to another agent; -1: unknown sid. */
int session_check(struct session_table *t, const char *sid, const char *agent);
void session_remove(struct session_table *t, const char *sid);

#endif
