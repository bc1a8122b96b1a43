/* The gateway process: `certgate serve`. Start-up (descriptor budget, server key and
 * signer pool, token monitor, state, audit log, admin listener, workers), the main
 * loop (signals, the one-second file watcher, CRL expiry warnings, audit rotation),
 * the pid file, and the orderly shutdown. Main thread only. */
#ifndef CERTGATE_DAEMON_H
#define CERTGATE_DAEMON_H

#include "config.h"

/* Runs the gateway until SIGTERM/SIGINT. cfg is borrowed (limits.max_connections may
 * be lowered to the descriptor budget). Returns the process exit code. */
int daemon_serve(struct config *cfg);

#endif
