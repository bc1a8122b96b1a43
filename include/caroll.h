/* CA rollover: `certgate ca rollover` makes a new CA key (the next generation of
 * ca.key in the CA token, castore_key_uri) and a self-signed CA certificate, puts
 * it first in ca.cert (so it signs from then on: the commands, and the CA service
 * from its next request) and keeps the old CA trusted behind it, with a CRL for
 * each. `certgate ca retire --serial HEX` drops a trusted CA that no longer signs:
 * the server certificate is re-issued under the active CA first when the retired
 * one had signed it, then the CRL bundle and ca.cert lose it. The gateway picks up
 * both on its reload. A CA under a corporate root is not rolled over this way (a
 * new request and import are the corporate CA's business).
 * Returns the command's exit code: 0, 1 failure (printed), 2 usage error. */
#ifndef CERTGATE_CAROLL_H
#define CERTGATE_CAROLL_H

struct cacli_args;
struct config;

int caroll_rollover(struct config *cfg, struct cacli_args *a);
int caroll_retire(struct config *cfg, struct cacli_args *a);

#endif
