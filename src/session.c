/* STUB */
#include <stddef.h>
#include "session.h"
struct session_table *session_table_new(void) { return NULL; }
void session_table_free(struct session_table *t) { (void)t; }
int session_bind(struct session_table *t, const char *sid, const char *agent) { (void)t; (void)sid; (void)agent; return -1; }
int session_check(struct session_table *t, const char *sid, const char *agent) { (void)t; (void)sid; (void)agent; return -1; }
void session_remove(struct session_table *t, const char *sid) { (void)t; (void)sid; }
