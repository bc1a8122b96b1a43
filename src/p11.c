/* STUB: replaced by the PKCS#11 implementation. */
#include "p11.h"
int p11_uri_parse(const char *s, struct p11_uri *u, char *err, size_t errlen) { (void)s; (void)u; (void)err; (void)errlen; return -1; }
void p11_uri_free(struct p11_uri *u) { (void)u; }
char *p11_uri_redact(const char *uri) { (void)uri; return NULL; }
int p11_is_uri(const char *s) { (void)s; return 0; }
int p11_load_private_key(const struct p11_defaults *d, const char *uri, int a, EVP_PKEY **out) { (void)d; (void)uri; (void)a; (void)out; return -1; }
int p11_generate_ec_key(const struct p11_defaults *d, const char *uri, EVP_PKEY **out) { (void)d; (void)uri; (void)out; return -1; }
int p11_key_exists(const struct p11_defaults *d, const char *uri) { (void)d; (void)uri; return -1; }
int p11_key_flags(const struct p11_defaults *d, const char *uri, int *s, int *e) { (void)d; (void)uri; (void)s; (void)e; return -1; }
int p11_health(void) { return 0; }
const char *p11_rv_str(unsigned long rv) { (void)rv; return "?"; }
int p11_read_secret(const char *file, const char *env, char **out, char *err, size_t errlen) { (void)file; (void)env; (void)out; (void)err; (void)errlen; return -1; }
void p11_secret_free(char *s) { (void)s; }
void p11_shutdown(void) {}
