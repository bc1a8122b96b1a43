/* One asynchronous Redis connection on one event loop (hiredis's libevent adapter),
 * reconnecting with backoff (100 ms doubling to 5 s), with a deadline on every
 * command that expects an answer: hiredis 0.14 has no command timeouts, and a
 * request must never wait for a Redis that stopped answering.
 *
 * Threading: everything about one rconn runs on the thread of its event base
 * (a worker's loop, or the main loop). The counters behind rconn_metrics are atomic.
 *
 * Ownership: rconn_new copies nothing from cc but borrows it (the running
 * configuration outlives every rconn). Replies passed to callbacks belong to hiredis
 * and are valid during the callback only. */
#ifndef CERTGATE_RCONN_H
#define CERTGATE_RCONN_H
#include <stdio.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"

struct rconn;
struct rconn_op;

/* Runs each time the connection is (re)established, before any queued command of
 * the caller's: SELECT has been sent. May send commands. */
typedef void (*rconn_up_fn)(struct rconn *rc, void *arg);

/* what: for the log ("worker 2", "subscriber"). Starts connecting at once. NULL on
 * out of memory. */
struct rconn *rconn_new(struct event_base *base, const struct config_cluster *cc,
    const char *what, rconn_up_fn on_up, void *arg);
/* Closes the connection; pending operations get no callback (they must have been
 * cancelled by their owners; those that were not are answered NULL first). */
void rconn_free(struct rconn *rc);

/* 1 when connected (commands would be sent now). */
int rconn_is_up(const struct rconn *rc);

/* An answer (r) or none (r NULL: Redis unreachable, disconnected, or no answer
 * within cluster.timeout_ms). Called exactly once unless cancelled. */
typedef void (*rconn_reply_fn)(void *arg, redisReply *r);

/* Sends a command (hiredis format: %s, %b binary with a size_t length, %d) expecting
 * an answer. Returns 0 with *op (may be NULL) set to a handle for rconn_cancel, or -1
 * when not connected (fn not called: the caller answers at once). */
int rconn_command(struct rconn *rc, rconn_reply_fn fn, void *arg, struct rconn_op **op,
    const char *fmt, ...);
/* The same from an argument vector (binary-safe). */
int rconn_command_argv(struct rconn *rc, rconn_reply_fn fn, void *arg,
    struct rconn_op **op, int argc, const char **argv, const size_t *argvlen);
/* fn will not be called (the handle is invalid afterwards). NULL is a no-op. */
void rconn_cancel(struct rconn_op *op);

/* Sends a command whose answer nobody waits for. -1 when not connected. */
int rconn_send(struct rconn *rc, const char *fmt, ...);

/* The same from an argument vector (binary-safe). */
int rconn_send_argv(struct rconn *rc, int argc, const char **argv, const size_t *argvlen);

/* The raw context for a subscription (SUBSCRIBE keeps its callback), or NULL when
 * not connected. */
struct redisAsyncContext *rconn_context(struct rconn *rc);

/* Reads the Redis password (cluster.password_env, else cluster.password_file; a
 * trailing newline is not part of it) for the AUTH every connection sends first,
 * with cc->user when set (Redis 6 ACL). Nothing set: no AUTH. Start-up, main thread,
 * before any rconn_new. Returns 0, or -1 with a message in err. A connection whose
 * AUTH is refused counts as Redis unreachable (dropped, retried with back-off, the
 * reason logged). rconn_secret_wipe clears it (at exit). */
int rconn_secret_load(const struct config_cluster *cc, char *err, size_t errlen);
void rconn_secret_wipe(void);

/* Lines for /metrics: connections up, connection losses, command timeouts. */
void rconn_metrics(FILE *f);

#endif
