/* The gateway's handle on its CA service (caserve.h): starts `certgate ca serve` as a
 * child process, restarts it when it dies, stops it at shutdown, or only points at
 * one the operator runs ("ca": {"service": "external"}).
 *
 * The child is started with posix_spawn of the gateway's own binary
 * (/proc/self/exe ca serve -c CONFIG --watch-fd 3): PKCS#11 is not fork-safe, and
 * nothing runs between fork and exec. Descriptor 3 of the child is the read end of a
 * pipe whose write end only the gateway holds: when the gateway dies, even by
 * SIGKILL, the child sees end of file and exits. When the child dies, a timer on the
 * gateway's loop reaps it and starts a new one after a back-off (1 s doubling to
 * 30 s); requests meanwhile fail as CAPROTO_E_UNAVAILABLE (503).
 *
 * Threading: everything on the thread that runs base (the daemon's main loop).
 * Call caproc_start after the gateway's own key is loaded (SoftHSM dislikes two
 * processes opening it at the same moment; the child opens the CA token under the
 * CA lock). */
#ifndef CERTGATE_CAPROC_H
#define CERTGATE_CAPROC_H
#include <stddef.h>
#include <sys/types.h>

struct config;
struct event_base;
struct caproc;

/* Spawns the service (ca.service "spawn") or records the external one's socket.
 * exe: the certgate binary, NULL for /proc/self/exe (the gateway itself; tests that
 * are not certgate pass its path). cfg and exe must outlive the handle (they are
 * re-used for restarts). NULL with err. */
struct caproc *caproc_start(struct event_base *base, const struct config *cfg,
    const char *exe, char *err, size_t errlen);

/* Blocks up to timeout_ms until the service answers a ping (start-up of the
 * gateway, tests). 0, or -1 with err. */
int caproc_wait_ready(struct caproc *p, int timeout_ms, char *err, size_t errlen);

/* The socket requests go to (ca.socket). */
const char *caproc_socket(const struct caproc *p);
/* The child's pid, or 0 (none running, or external). */
pid_t caproc_pid(const struct caproc *p);
/* How many times the child was (re)started. */
unsigned caproc_starts(const struct caproc *p);

/* Stops the child (end of file on its pipe, SIGTERM, SIGKILL after 5 s), reaps it and
 * frees p. NULL is a no-op. */
void caproc_stop(struct caproc *p);

#endif
