/* STUB */
#include "state.h"
int state_init(const struct config *cfg, EVP_PKEY *server_key) { (void)cfg; (void)server_key; return -1; }
int state_reload(const char *why) { (void)why; return -1; }
void state_check_files(void) {}
struct gw_state *state_get(void) { return NULL; }
void state_put(struct gw_state *st) { (void)st; }
int state_is_revoked(const struct gw_state *st, const char *serial) { (void)st; (void)serial; return 1; }
void state_shutdown(void) {}
