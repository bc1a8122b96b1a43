/* Server-sent events, client side: the event stream interpretation of the WHATWG
 * HTML standard ("9.2.6 Interpreting an event stream"), for the agent's relay of MCP
 * Streamable HTTP responses and GET streams. Bytes go in as they arrive; each
 * dispatched event comes out whole through a callback, with the stream's last event
 * ID (for Last-Event-ID on reconnection) and the server's retry time.
 *
 * Why not mcp.c's mcp_sse: that one is the gateway's pass-through filter and emits
 * events as the bytes they came in; a client needs the fields interpreted (id, retry,
 * multi-line data, events without data that only move the last event ID).
 *
 * Only the event being assembled is buffered, at most max_event bytes (line and data
 * together); a larger event makes the stream fail rather than grow without bound.
 * Pure, no I/O. One parser per stream; not thread-safe (one owner). */
#ifndef CERTGATE_AGENT_SSE_H
#define CERTGATE_AGENT_SSE_H
#include <stddef.h>

struct agent_sse_event {
	const char *type;   /* "message" unless the event named one */
	const char *data;   /* NUL-terminated; the final LF removed */
	size_t len;
	const char *id;     /* the stream's last event ID after this event ("" if none) */
};

/* Returns 0 to go on, -1 to stop the feed (agent_sse_feed then returns -1). The
 * event's strings are valid only during the call. */
typedef int (*agent_sse_fn)(void *arg, const struct agent_sse_event *ev);

struct agent_sse;

/* max_event 0 means 16 MiB. NULL when out of memory. */
struct agent_sse *agent_sse_new(size_t max_event);
void agent_sse_free(struct agent_sse *s);

/* Feeds n bytes, calling fn for each event completed by them. Returns 0, or -1 when
 * fn stopped the feed, an event grew beyond max_event, or memory ran out
 * (agent_sse_error says which). After -1 the parser must not be fed again. */
int agent_sse_feed(struct agent_sse *s, const char *p, size_t n, agent_sse_fn fn,
    void *arg);

/* The last event ID seen so far ("" when none): what Last-Event-ID carries on a
 * reconnection. Survives across events, as the standard says. */
const char *agent_sse_last_id(const struct agent_sse *s);
/* Starts a parser with a last event ID already set (a resumed stream continues the
 * one before it). Returns 0/-1 (ENOMEM, or longer than 1024 bytes). */
int agent_sse_set_last_id(struct agent_sse *s, const char *id);

/* The reconnection time the server asked for with "retry:", in milliseconds, or -1
 * when it did not. */
long agent_sse_retry_ms(const struct agent_sse *s);

/* Why the last feed failed ("event too large", "out of memory", "stopped"), or NULL. */
const char *agent_sse_error(const struct agent_sse *s);

#endif
