/* Audit log: one JSON object per line per request (README "Audit log"), written
 * with a single write(2) on an O_APPEND descriptor so lines from different threads
 * never interleave and nothing sits in a user-space buffer when the process dies. */
#ifndef CERTGATE_AUDIT_H
#define CERTGATE_AUDIT_H

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
};

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
