/* STUB */
#include <stddef.h>
#include "rate.h"
struct rate_table *rate_table_new(void) { return NULL; }
void rate_table_free(struct rate_table *t) { (void)t; }
int rate_take(struct rate_table *t, const char *agent, double ps, double burst, double now, double *ra) { (void)t; (void)agent; (void)ps; (void)burst; (void)now; (void)ra; return 1; }
