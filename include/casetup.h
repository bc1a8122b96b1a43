/* Setting up the CA: `certgate ca init` (the CA key in the CA token, the self-signed
 * CA certificate, the empty database, CRL number and CRL) and `certgate ca server`
 * (the server key in the gateway's token and its certificate). Each returns the
 * command's exit code: 0, 1 failure (printed), 2 usage error. */
#ifndef CERTGATE_CASETUP_H
#define CERTGATE_CASETUP_H

struct cacli_args;
struct config;

#define CASETUP_CA_SUBJECT	"CN=certgate CA,O=certgate"
#define CASETUP_SERVER_SUBJECT	"CN=certgate server,O=certgate"

int casetup_init(struct config *cfg, struct cacli_args *a);
int casetup_server(struct config *cfg, struct cacli_args *a);

#endif
