/* STUB */
#include <stdlib.h>
#include "metrics.h"
void metrics_inc(enum metric_id id) { (void)id; }
void metrics_dec(enum metric_id id) { (void)id; }
void metrics_add(enum metric_id id, long n) { (void)id; (void)n; }
long metrics_get(enum metric_id id) { (void)id; return 0; }
void metrics_status(int status) { (void)status; }
void metrics_upstream_latency(double ms) { (void)ms; }
void metrics_deny(const char *agent, const char *reason) { (void)agent; (void)reason; }
char *metrics_render(void) { return NULL; }
