/* certgate's CA under a corporate root: `certgate ca init --intermediate` (casetup.c)
 * writes a request signed in the CA token; `certgate ca import` installs the
 * certificate the corporate CA made from it and the chain up to its root, then
 * writes the database, CRL number and CRL as `ca init` does for a self-signed CA.
 * Returns the command's exit code: 0, 1 failure (printed), 2 usage error. */
#ifndef CERTGATE_CAIMPORT_H
#define CERTGATE_CAIMPORT_H

struct cacli_args;
struct config;

/* The request's file: ca.csr in the directory of ca.cert (malloc'd, or NULL). */
char *caimport_csr_path(const struct config *cfg);
int caimport_main(struct config *cfg, struct cacli_args *a);

#endif
