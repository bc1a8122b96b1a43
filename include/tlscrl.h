/* The CRLs for client verification (tls.crl): a PEM bundle with one CRL per CA of
 * tls.ca, every CRL verified against its CA, and never an older CRL than the one in
 * force. Reads files; no global state except a metric. Main thread (start-up and
 * reloads). */
#ifndef CERTGATE_TLSCRL_H
#define CERTGATE_TLSCRL_H
#include <openssl/x509.h>

#include "config.h"

/* Loads every CRL of cfg->tls.crl and checks it against the CA certificates of
 * cfg->tls.ca: each CRL's issuer is one of them and its signature verifies with
 * that CA's key; each CA has exactly one CRL (with crl_check every level of a chain
 * is checked, so a CA without one would refuse every client it vouches for: the
 * message names it by subject DN). prev (may be NULL): the CRLs in force; a CRL
 * with a lower CRL number than prev's for the same CA (or, when either has none, an
 * older lastUpdate) is not taken: prev's stays in *out, the refusal is logged and
 * counted (certgate_crl_older_refused_total). Logs expired or nearly expired CRLs.
 * Returns 0 and a new stack in *out (each CRL a new reference), or -1 (logged, file
 * names and CA included). */
int tlscrl_load(const struct config *cfg, STACK_OF(X509_CRL) *prev,
    STACK_OF(X509_CRL) **out);

/* CRLs refused as older than the one in force, since start-up (for /metrics). */
long tlscrl_older_refused(void);

#endif
