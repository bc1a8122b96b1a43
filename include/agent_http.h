/* HTTPS client of certgate agent's bridges: libcurl's multi interface driven by a
 * libevent loop (curl's multi_socket API: curl says which sockets and timeouts to
 * watch, libevent tells curl when they fire), with mTLS from agent_cred.h.
 *
 * Credential generations: every transfer is made with the credential current when it
 * starts. agent_http_set_cred starts a new generation (a new curl multi handle with
 * its own connection pool), so requests made after a renewal use new connections
 * and the new certificate, while transfers in flight finish on their connections;
 * an old pool is closed once its last transfer ends.
 *
 * Streaming and backpressure: response bytes reach on_body as they arrive; a
 * callback that cannot take more returns AGENT_HTTP_PAUSE and calls
 * agent_http_resume_recv later (curl then stops reading that socket and delivers the
 * same bytes again). Request bodies can be streamed the same way through on_send.
 *
 * Threading: one agent_http per event loop; every function must be called on the
 * loop's thread. agent_http_start, agent_http_cancel and the resume calls may be
 * made from anywhere on that thread, callbacks included: they take effect from the
 * loop (never inside libcurl's own callbacks, where libcurl forbids them). */
#ifndef CERTGATE_AGENT_HTTP_H
#define CERTGATE_AGENT_HTTP_H
#include <event2/event.h>
#include <stddef.h>
#include <sys/types.h>

#include "agent_cred.h"

#define AGENT_HTTP_PAUSE 1                 /* on_body: not consumed, pause */
#define AGENT_HTTP_SEND_PAUSE ((ssize_t)-2) /* on_send: no data yet, pause */
#define AGENT_HTTP_MAX_HEADERS 100

enum agent_http_result {
	AGENT_HTTP_OK = 0,      /* the response arrived whole */
	AGENT_HTTP_NOT_SENT,    /* not processed by the server: failed before any of
	                         * the request was sent (no connection, TLS handshake
	                         * refused), or a kept-alive connection was closed by
	                         * the server without a byte of answer: safe to retry */
	AGENT_HTTP_FAILED,      /* failed after sending began, the server's certificate
	                         * did not verify, or a callback aborted */
};

struct agent_http_header {
	char *name;
	char *value;
};

/* The final response head (1xx responses are skipped). */
struct agent_http_resp {
	int status;
	struct agent_http_header *h;
	size_t nh;
};

/* First value of header name (case-insensitive), or NULL. */
const char *agent_http_resp_get(const struct agent_http_resp *r, const char *name);

struct agent_http_cbs {
	/* The response head; return 0, or -1 to abort. The head stays valid until
	 * on_done returns. May be NULL. */
	int (*on_head)(void *arg, const struct agent_http_resp *r);
	/* Body bytes; return 0 (consumed), AGENT_HTTP_PAUSE, or -1 to abort. */
	int (*on_body)(void *arg, const char *p, size_t n);
	/* Streamed request body: copy up to n bytes to p and return their count,
	 * 0 at the end of the body, AGENT_HTTP_SEND_PAUSE when nothing is ready
	 * (then call agent_http_resume_send), or -1 to abort. */
	ssize_t (*on_send)(void *arg, char *p, size_t n);
	/* The end, exactly once unless the request was cancelled. msg says what
	 * failed (NULL on success). The request is freed when this returns. */
	void (*on_done)(void *arg, enum agent_http_result res, const char *msg);
};

struct agent_http_spec {
	const char *method;             /* "GET", "POST" or "DELETE" */
	const char *url;
	const char *const *headers;     /* "Name: value" strings, NULL-terminated */
	const char *body;               /* fixed request body (copied), or NULL */
	size_t body_len;
	int streamed_body;              /* the body comes from on_send */
	long long send_len;             /* with streamed_body: length, or -1 (chunked) */
	long timeout_ms;                /* whole-transfer limit, 0 for none (streams) */
};

struct agent_http;
struct agent_http_req;

/* A client on base using cred (a reference is taken). connect_timeout_ms bounds
 * connection set-up (TCP and TLS). NULL on failure (logged). */
struct agent_http *agent_http_new(struct event_base *base, struct agent_cred *cred,
    long connect_timeout_ms);

/* Cancels every transfer (no on_done) and frees. Not from a callback. */
void agent_http_free(struct agent_http *h);

/* Starts a new credential generation (a reference is taken): see above. */
int agent_http_set_cred(struct agent_http *h, struct agent_cred *cred);

/* Starts a transfer. spec is copied; cbs is copied; arg is the callbacks' argument.
 * Returns the request, or NULL (logged: out of memory, bad spec). */
struct agent_http_req *agent_http_start(struct agent_http *h,
    const struct agent_http_spec *spec, const struct agent_http_cbs *cbs, void *arg);

/* Stops a transfer; its callbacks are not called again (on_done neither). A no-op
 * from within the request's own on_done. */
void agent_http_cancel(struct agent_http_req *r);

void agent_http_resume_recv(struct agent_http_req *r);
void agent_http_resume_send(struct agent_http_req *r);

/* Transfers started and not yet done. */
size_t agent_http_active(const struct agent_http *h);

#endif
