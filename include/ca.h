/* `certgate ca init|server|issue|renew|revoke|crl|list|token|serve`: the CA commands.
 * Every signature is made by the CA key in its token (EVP_PKEY from p11.c). */
#ifndef CERTGATE_CA_H
#define CERTGATE_CA_H

/* Entry point for `certgate ca ...` (argv[0] is "ca"). Returns the exit code
 * (0 success, 1 failure, 2 usage error). */
int ca_main(int argc, char **argv);

#endif
