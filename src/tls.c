/* STUB */
#include "tls.h"
int tls_load_server_key(const struct config *cfg, EVP_PKEY **out) { (void)cfg; (void)out; return -1; }
SSL_CTX *tls_ctx_new(const struct config *cfg, EVP_PKEY *key, X509_CRL **crl_out) { (void)cfg; (void)key; (void)crl_out; return NULL; }
