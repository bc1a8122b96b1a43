/* JSON-RPC messages as the stdio bridge (certgate agent stdio) sees them: what a
 * line from the MCP client is (request, notification, response, batch), which
 * request ids it expects answers for, which response ids a message from the gateway
 * carries, and single-line framing for stdout (the MCP stdio transport is newline-
 * delimited: a message must not contain a newline).
 *
 * Parsing uses jansson. Integers beyond 64 bits are valid JSON that jansson refuses,
 * so a message with one is parsed again with every integer read as a double: ids in
 * such a message then compare as doubles on both sides.
 *
 * Pure, no I/O, thread-safe. */
#ifndef CERTGATE_AGENT_MSG_H
#define CERTGATE_AGENT_MSG_H
#include <jansson.h>
#include <stddef.h>

#include "buf.h"

enum agent_msg_kind {
	AGENT_MSG_INVALID = 0,
	AGENT_MSG_REQUEST,        /* method and id */
	AGENT_MSG_NOTIFICATION,   /* method, no id */
	AGENT_MSG_RESPONSE,       /* id and result or error */
	AGENT_MSG_BATCH,          /* a non-empty array of the above */
};

struct agent_msg {
	json_t *root;             /* owned */
	enum agent_msg_kind kind;
	const char *method;       /* first message's method or NULL; borrowed from root */
	json_t *id;               /* a single request's or response's id (borrowed), or NULL */
	json_t *request_ids;      /* owned array: ids of every request in the message */
	json_t *response_ids;     /* owned array: ids of every response in the message */
	int initialize;           /* the message is (or holds) an initialize request */
	int initialized;          /* it is (or holds) notifications/initialized */
};

/* Parses p[0..n) (one message from either side) into m (zeroed first). Returns 0 with
 * m filled, or -1: *code is then the JSON-RPC error to answer (-32700 not JSON,
 * -32600 not JSON-RPC 2.0), err says why, and m->id is the message's id when one
 * could be read (for the error response). Free m with agent_msg_free either way. */
int agent_msg_parse(const char *p, size_t n, struct agent_msg *m, int *code,
    char *err, size_t errlen);
void agent_msg_free(struct agent_msg *m);

/* Index of id in ids (an array), or -1. Equality is json_equal's. */
int agent_msg_id_index(json_t *ids, json_t *id);

/* If m answers the request with id init_id and holds result.protocolVersion, that
 * string (borrowed from m); else NULL. */
const char *agent_msg_protocol_version(const struct agent_msg *m, json_t *init_id);

/* Appends p[0..n) to out as one line: every CR and LF becomes a space (in valid
 * JSON they can only be whitespace between tokens: inside strings they must be
 * escaped), trailing whitespace is dropped and a single LF ends the line. Returns
 * 0/-1 (out's error). */
int agent_msg_line(const char *p, size_t n, struct buf *out);

/* Appends a JSON-RPC error response {"jsonrpc":"2.0","id":id,"error":{...}} as one
 * line. id is borrowed (NULL gives null). Returns 0/-1. */
int agent_msg_error_line(json_t *id, int code, const char *message, struct buf *out);

/* The request m (a single request) with its id replaced by id, compact, into out.
 * Returns 0/-1. */
int agent_msg_with_id(const struct agent_msg *m, json_t *id, struct buf *out);

/* 1 when p[0..n) is the gateway's refusal of a certificate that no agent of its
 * identity map matches: a JSON-RPC error response whose message is "certgate: "
 * MCP_REASON_UNMAPPED (mcp.h). Anything else, unparsable bodies included, is 0. */
int agent_msg_unmapped(const char *p, size_t n);

#endif
