/* STUB */
#include "proxy.h"
struct proxy_worker *proxy_worker_new(struct worker *w) { (void)w; return NULL; }
void proxy_worker_free(struct proxy_worker *pw) { (void)pw; }
int proxy_conn_start(struct conn *c) { (void)c; return -1; }
void proxy_conn_free(struct conn *c, const char *reason) { (void)c; (void)reason; }
int proxy_conn_busy(const struct conn *c) { (void)c; return 0; }
