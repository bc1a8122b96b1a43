/* Worker threads: N event loops, each with its own listening socket per listener
 * (SO_REUSEPORT: the kernel spreads new connections over the sockets, so there is no
 * acceptor thread, no hand-off queue and no lock on the accept path; every connection
 * lives and dies on one thread), the once-a-second sweep of established connections,
 * and graceful draining.
 *
 * Threading: worker_start, worker_wake, worker_stop and worker_join are called by the
 * main thread only; everything else runs on the workers. */
#ifndef CERTGATE_WORKER_H
#define CERTGATE_WORKER_H
#include <stdint.h>

#include "config.h"
#include "conn.h"

/* One listening address and the application that serves it. */
struct worker_listener {
	const char *host;
	uint16_t port;
	const struct conn_app *app;
};

/* Binds every listener (once without SO_REUSEPORT first, so that a port another
 * process holds is an error rather than silently shared), starts cfg's worker count
 * of threads, each with its own socket per listener and the applications' worker
 * state, and waits until every one is ready. async_sign: handshakes run with
 * SSL_MODE_ASYNC (a signer pool exists). The listeners array is borrowed until
 * worker_join. Returns 0, or -1 (logged; call worker_join to clean up). */
int worker_start(const struct config *cfg, const struct worker_listener *ls, int nls,
    int async_sign);

/* Number of workers worker_start made (cfg.workers, 0 = one per core, capped). */
int worker_count(const struct config *cfg);

/* The state changed: every worker re-checks its connections now rather than at its
 * next sweep. Async-signal-free; may be called from the main loop at any time. */
void worker_wake(void);

/* Starts graceful shutdown: stop accepting, finish requests in flight for
 * limits.grace_ms, then close the rest. */
void worker_stop(void);

/* Stops (if not yet), joins and frees every worker. Safe after a failed start. */
void worker_join(void);

#endif
