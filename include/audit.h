/* Audit log: one JSON object per line per request (README "Audit log"), written
 * with a single write(2) on an O_APPEND descriptor so lines from different threads
 * never interleave and nothing sits in a user-space buffer when the process dies. */
#ifndef CERTGATE_AUDIT_H
#define CERTGATE_AUDIT_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct audit_rec {
	const char *agent;     /* agent id or NULL */
	const char *serial;    /* certificate serial (hex) or NULL */
	const char *peer;      /* "ip:port" */
	const char *method;    /* JSON-RPC method, or "HTTP_METHOD /path" when not JSON-RPC */
	const char *name;      /* tool, prompt or resource URI, or NULL */
	const char *decision;  /* "allow" or "deny" */
	const char *reason;    /* on deny, else NULL */
	const char *detail;    /* on deny by an argument rule or schema: which one, or NULL */
	int status;            /* HTTP status sent (0 when none) */
	double duration_ms;
	const char *session;   /* Mcp-Session-Id or NULL */
	const char *request_id;/* "request_id" (audit_request_id), or NULL */
	/* "rpc_id": the JSON-RPC id (rpc_id: a string, number or null), or the ids of
	 * rpc_msg (a request object: its "id"; a batch: an array of its members' ids).
	 * Borrowed; both NULL: no rpc_id field (not JSON-RPC). */
	const json_t *rpc_id;
	const json_t *rpc_msg;
	/* The client certificate's subject and first SAN URI: written only when agent
	 * is NULL (an unmapped or refused certificate), to say who it was. */
	const char *subject;
	const char *uri;
};

/* The request id of request number nreq (1 for the first) on connection conn_id:
 * "IIIIIIII-CONN-N" with IIIIIIII random per process start, so ids from different
 * runs do not collide. nreq 0 names the connection itself (a TLS refusal). */
void audit_request_id(char *buf, size_t len, uint64_t conn_id, unsigned nreq);

/* Opens path for appending (mode 0600), or stderr when path is NULL or "-". Returns 0/-1;
 * on failure the previous destination (if any) stays in use. */
int audit_open(const char *path);
/* Re-opens the same path (log rotation, SIGHUP); a no-op for stderr. On failure the
 * old descriptor stays in use. Returns 0/-1. */
int audit_reopen(void);
/* Cheap rotation check for the periodic file watcher: stats the path and re-opens
 * it when the file vanished or its inode changed. Returns 0 when nothing changed
 * (or audit goes to stderr), 1 after a successful re-open, -1 when re-opening failed
 * (the old descriptor stays in use). */
int audit_check_file(void);
/* Writes one line. Returns 0, or -1 when the write failed (counted and logged once
 * per failure streak); the caller decides whether to refuse the request. */
int audit_write(const struct audit_rec *r);
/* 1 when the last write failed. */
int audit_failing(void);
void audit_close(void);

#endif
