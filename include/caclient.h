/* The gateway's side of the CA service (caserve.h): requests sent over the Unix
 * socket ca.socket and their replies, asynchronously on the caller's libevent loop
 * so a worker never waits for a signature.
 *
 * Each request opens its own connection (cheap on a local socket, and nothing to
 * repair when the CA service restarts), writes one frame, reads one frame of at most
 * CAPROTO_MAX bytes, and ends within timeout_ms whatever the service does; enroll and
 * renew requests tell the service when that is ("deadline", caproto.h). Replies
 * are checked field by field (caproto.h): a compromised or confused CA service
 * cannot make the gateway accept a malformed answer.
 *
 * Threading: a struct caclient belongs to one event_base and is used only from the
 * thread running it (one per worker). caclient_call is the blocking variant for
 * commands and tests, thread-safe. */
#ifndef CERTGATE_CACLIENT_H
#define CERTGATE_CACLIENT_H

#include "caproto.h"

struct event_base;
struct caclient;
struct caclient_req;

/* Called once per request, from the event loop (never from inside caclient_send).
 * rep is valid during the call only; on failure to reach the service, a timeout or a
 * malformed reply rep->err is CAPROTO_E_UNAVAILABLE with a message. The request
 * handle is freed after the callback returns. */
typedef void (*caclient_cb)(const struct caproto_reply *rep, void *arg);

/* socket_path is copied. timeout_ms: the whole exchange, connect to reply (e.g.
 * 10000: a token signature takes milliseconds, a CLI command may hold the CA lock
 * for a moment). NULL on ENOMEM. */
struct caclient *caclient_new(struct event_base *base, const char *socket_path, int timeout_ms);
/* Cancels every pending request (their callbacks are not called) and frees c. */
void caclient_free(struct caclient *c);

/* Sends req (copied at once: req may be freed after the call). Returns the handle, or
 * NULL when req is invalid or memory is short (then cb is never called). */
struct caclient_req *caclient_send(struct caclient *c, const struct caproto_req *req,
    caclient_cb cb, void *arg);
/* The caller no longer wants the answer (its HTTP client went away): cb is never
 * called and the handle is freed. */
void caclient_cancel(struct caclient_req *r);
/* Requests pending on c. */
size_t caclient_pending(const struct caclient *c);

/* Blocking exchange. 0 with *rep filled (caproto_reply_clear it; rep->err may be a
 * refusal), or -1 with a message in err when the service cannot be reached, times
 * out or answers malformed. */
int caclient_call(const char *socket_path, const struct caproto_req *req,
    struct caproto_reply *rep, int timeout_ms, char *err, size_t errlen);

#endif
