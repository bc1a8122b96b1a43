/* HTTP/1.1 message reader on top of http_parser (src/http.c): incremental, strict
 * about framing (request smuggling), with header limits. Bodies are handed to a
 * callback as they arrive and never buffered here. One reader per direction of a
 * connection (requests from a client, or responses from an upstream). */
#ifndef CERTGATE_HTTP_H
#define CERTGATE_HTTP_H
#include <stddef.h>
#include <sys/types.h>

/* Longest request line accepted (method + URL + version); longer is a 400. */
#define HTTP_MAX_REQUEST_LINE 8192

struct http_header {
	const char *name;     /* NUL-terminated, as sent (case preserved) */
	const char *value;    /* NUL-terminated, surrounding whitespace removed */
};

/* The head of one message. Valid from on_headers until the reader starts the next
 * message (for requests: until http_reader_resume after on_complete paused it). */
struct http_msg {
	int is_request;
	unsigned method;            /* enum http_method (requests) */
	const char *method_str;     /* static, e.g. "POST" (requests) */
	const char *url;            /* request target (requests) */
	int status;                 /* responses */
	unsigned short major, minor;
	struct http_header *h;
	size_t nh;
	long long content_length;   /* -1 when absent */
	int chunked;                /* Transfer-Encoding: chunked */
	int keep_alive;             /* http_should_keep_alive() at headers complete */
	size_t head_bytes;          /* size of the head on the wire */
};

/* First value of header name (case-insensitive), or NULL. */
const char *http_msg_get(const struct http_msg *m, const char *name);
/* Number of headers called name (case-insensitive). */
size_t http_msg_count(const struct http_msg *m, const char *name);

struct http_limits {
	size_t max_header_bytes;    /* whole head incl. request/status line; 431 above */
	size_t max_header_count;    /* 431 above */
	long long max_body_bytes;   /* 413 above (requests); < 0: unlimited */
};

/* Callbacks; arg is the reader's arg. Every callback returns 0 to continue or -1 to
 * abort the feed (the reader then reports status 0, reason "aborted").
 * on_headers may also return 1 for a response that has no body (reply to HEAD).
 * on_complete may return 1 to pause: http_reader_feed returns right after the
 * message, and feeding more data needs http_reader_resume first. */
struct http_cbs {
	int (*on_begin)(void *arg);
	int (*on_headers)(void *arg, struct http_msg *m);
	int (*on_body)(void *arg, const char *p, size_t n);
	int (*on_complete)(void *arg, struct http_msg *m);
};

struct http_reader;

/* is_request: 1 parses requests (client side), 0 responses (upstream side).
 * lim and cbs are copied. Returns NULL on ENOMEM. */
struct http_reader *http_reader_new(int is_request, const struct http_limits *lim,
    const struct http_cbs *cbs, void *arg);
void http_reader_free(struct http_reader *r);

/* Feeds n bytes. Returns the number of bytes consumed: n, or less when a callback
 * paused after a complete message. Returns -1 on a protocol error or abort:
 * http_reader_status() then gives the HTTP status to answer (400, 413, 431; 0 for
 * an abort) and http_reader_reason() a short static reason. After an error the
 * reader is dead (the connection must be closed). */
ssize_t http_reader_feed(struct http_reader *r, const char *p, size_t n);

/* End of input. Completes a body delimited by connection close (responses).
 * Returns 0 when no message was in progress or it completed, -1 when the message
 * was truncated. */
int http_reader_eof(struct http_reader *r);

void http_reader_resume(struct http_reader *r);
int http_reader_paused(const struct http_reader *r);
int http_reader_status(const struct http_reader *r);
const char *http_reader_reason(const struct http_reader *r);

/* Standard reason phrase for a status ("OK", "Forbidden"...), never NULL. */
const char *http_status_text(int status);

/* 1 when a and b are equal header names, ignoring case and treating '_' as '-'
 * (some upstream frameworks fold X_Agent_Id into X-Agent-Id). */
int http_name_eq(const char *a, const char *b);

#endif
