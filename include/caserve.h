/* The CA service: `certgate ca serve`, the only process that uses the CA key while
 * the gateway runs. It parses no network input: it answers small typed requests
 * (caproto.h) from the gateway on a local Unix socket, and enforces every rule of
 * enrollment and renewal itself (caops.h), so a compromised gateway cannot mint
 * arbitrary certificates.
 *
 * One thread, one libevent loop; slow peers only hold their own connection.
 * Enrollments and renewals read in the same turn of the loop are answered together
 * as one batch (group commit, cabatch.h: one lock, one database save, shared
 * fsyncs); a batch is handled to the end (signatures in the token are synchronous)
 * before the next. Pings and OCSP queries are answered at once. */
#ifndef CERTGATE_CASERVE_H
#define CERTGATE_CASERVE_H

struct config;

/* Runs the service until SIGTERM/SIGINT, or until watch_fd (>= 0) reaches end of
 * file (the gateway that spawned it died). Start-up: closes inherited descriptors
 * other than 0-2 and watch_fd, logs into the CA token, reconciles an interrupted
 * issuance, prunes old tokens, binds ca.socket (its directory 0700, the socket 0600;
 * a second service on the same socket is refused). Returns the exit code. */
int caserve_main(const struct config *cfg, int watch_fd);

#endif
