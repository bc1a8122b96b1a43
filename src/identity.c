/* STUB */
#include "identity.h"
int identity_map_parse(const char *json, size_t len, struct identity_map **out, char *err, size_t errlen) { (void)json; (void)len; (void)out; (void)err; (void)errlen; return -1; }
int identity_map_load(const char *path, struct identity_map **out, char *err, size_t errlen) { (void)path; (void)out; (void)err; (void)errlen; return -1; }
void identity_map_free(struct identity_map *m) { (void)m; }
int identity_peer_from_cert(X509 *cert, struct identity_peer *p) { (void)cert; (void)p; return -1; }
void identity_peer_clear(struct identity_peer *p) { (void)p; }
const struct identity_agent *identity_lookup(const struct identity_map *m, const struct identity_peer *p) { (void)m; (void)p; return NULL; }
const struct identity_agent *identity_find_id(const struct identity_map *m, const char *id) { (void)m; (void)id; return NULL; }
char *identity_xfcc(const struct identity_peer *p) { (void)p; return NULL; }
