/* Admin listener: plain HTTP on cfg->admin_host:admin_port (loopback by default),
 * serving GET / (the status page, statuspage.h), GET /healthz and GET /metrics only
 * (with the process metrics, procstat.h), one request per connection. Runs on the
 * main thread's event_base. */
#ifndef CERTGATE_ADMIN_H
#define CERTGATE_ADMIN_H
#include <event2/event.h>

#include "config.h"

/* Starts listening when cfg->admin_host is set (a no-op returning 0 otherwise).
 * base and cfg are borrowed and must outlive admin_stop. Returns 0/-1 (logged). */
int admin_start(struct event_base *base, const struct config *cfg);

/* Stops listening and closes every admin connection. Safe when not started. */
void admin_stop(void);

#endif
