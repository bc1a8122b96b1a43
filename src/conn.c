/* STUB */
#include <stdio.h>
#include "conn.h"
int conn_serve(struct config *cfg) { (void)cfg; fprintf(stderr, "serve: not implemented\n"); return 1; }
void conn_close(struct conn *c, const char *reason) { (void)c; (void)reason; }
