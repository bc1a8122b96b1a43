/* Streamable HTTP <-> stdio mapping for one MCP session served by a stdio upstream
 * (stdioproc.h): which messages a POST must wait for, and where each message from the
 * server goes. Pure bookkeeping over jansson values; no I/O.
 *
 * The gateway side of a session looks like this:
 *   POST /mcp (one message or a batch): each message, after policy, goes through
 *     stdiomap_post_message and then to the server's stdin. Requests get a gateway id
 *     (an integer unique in the session) in place of the client's id, so that two
 *     POSTs that both use id 1, or a client that reuses ids, cannot receive each
 *     other's answers. A POST with no request is answered 202 at once; otherwise the
 *     proxy streams (text/event-stream is the simple choice, since server requests and
 *     notifications may precede the response) until stdiomap_post_waiting is 0.
 *   GET /mcp (text/event-stream): stdiomap_get_open; then stdiomap_queue_pop until
 *     NULL, then every message routed STDIOMAP_TO_GET; stdiomap_get_close when it ends.
 *   Each message from the server (stdioproc's on_message; a batch array element by
 *     element) goes through stdiomap_route, which restores the client's id in
 *     responses and says where to send it.
 * Routing rules:
 *   - a response goes to the POST that carried its request, with the client's id
 *     restored; a response for a POST whose client went away, or for no request, is
 *     dropped;
 *   - notifications/progress whose progressToken was given in a pending request's
 *     params._meta goes to that request's POST;
 *   - everything else the server sends (requests such as sampling/createMessage,
 *     elicitation/create, roots/list, ping; notifications such as logging and
 *     list_changed) goes to the GET stream when one is open, else to the most recent
 *     POST still waiting for a response, else into a bounded queue for the next GET
 *     stream (full: dropped).
 *   - a client's notifications/cancelled names its own request id: it is rewritten to
 *     the gateway id (the most recent pending request with that id).
 *   - a client's response to a server request passes unchanged (server ids are the
 *     server's own).
 *
 * Bounds: at most max_pending requests await responses per session (stdiomap_post_message
 * fails with ENOSPC beyond; requests of closed POSTs are forgotten first), and at most
 * max_queued messages / max_queued_bytes wait for a GET stream.
 *
 * Threading: one owner, the thread that drives the session's stdioproc. */
#ifndef CERTGATE_STDIOMAP_H
#define CERTGATE_STDIOMAP_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct stdiomap;

/* 0 for a bound means its default: 256 pending requests, 256 queued messages,
 * 1 MiB queued. NULL on ENOMEM. */
struct stdiomap *stdiomap_new(size_t max_pending, size_t max_queued, size_t max_queued_bytes);
/* Frees the map and every queued message. NULL is a no-op. */
void stdiomap_free(struct stdiomap *m);

/* A new POST exchange; returns its handle (never 0). */
uint64_t stdiomap_post_open(struct stdiomap *m);

enum stdiomap_kind {
	STDIOMAP_REQUEST,       /* has method and id: a response will be routed back */
	STDIOMAP_NOTIFICATION,  /* method, no id */
	STDIOMAP_RESPONSE,      /* the client's answer to a server request */
};

/* Accounts one client message of POST post (a JSON-RPC object; the caller splits
 * batches) and rewrites it in place as described above. Returns 0 with *kind, or -1
 * with errno: EINVAL not a JSON-RPC message (the caller has normally refused it
 * already), ENOENT unknown or closed post, ENOSPC max_pending requests are pending,
 * ENOMEM. */
int stdiomap_post_message(struct stdiomap *m, uint64_t post, json_t *msg,
    enum stdiomap_kind *kind);

/* Responses the POST still waits for (0 for an unknown post). */
size_t stdiomap_post_waiting(struct stdiomap *m, uint64_t post);

/* The POST's HTTP exchange is over (all answered, or the client went away). Its
 * unanswered requests stay known so that late responses are dropped, not misrouted. */
void stdiomap_post_close(struct stdiomap *m, uint64_t post);

/* The GET stream: at most one at a time (-1 with EBUSY for a second one). */
int stdiomap_get_open(struct stdiomap *m);
void stdiomap_get_close(struct stdiomap *m);

/* The oldest queued message for the GET stream (the caller owns the reference), or
 * NULL when none is queued. */
json_t *stdiomap_queue_pop(struct stdiomap *m);

enum stdiomap_dest {
	STDIOMAP_TO_POST,       /* send on POST r->post's response stream */
	STDIOMAP_TO_GET,        /* send on the GET stream */
	STDIOMAP_QUEUED,        /* kept (a reference taken) for the next GET stream */
	STDIOMAP_DROPPED,       /* r->why says why; log it */
};

struct stdiomap_route {
	enum stdiomap_dest dest;
	uint64_t post;          /* TO_POST */
	int post_done;          /* TO_POST: no response is awaited any more: end the POST */
	const char *why;        /* DROPPED: static phrase */
};

/* Routes one message from the server (an object; the caller splits batches),
 * restoring the client's id in responses. Returns 0 with *r, or -1 (EINVAL) when msg
 * is not a JSON-RPC message (r->dest DROPPED). */
int stdiomap_route(struct stdiomap *m, json_t *msg, struct stdiomap_route *r);

/* Requests pending (all POSTs, including closed ones not yet answered). */
size_t stdiomap_pending(const struct stdiomap *m);

#endif
