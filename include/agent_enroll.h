/* EST over HTTPS for the agent (RFC 7030): fetching the CA certificates, enrolling
 * with a one-time token (/simpleenroll) and re-enrolling with the current certificate
 * (/simplereenroll), and the `certgate agent enroll` command.
 *
 * These are one request at a time and blocking (libcurl's easy interface): enroll
 * and renew are one-shot commands, and the bridges renew on a thread of their own
 * (agent_renew.c), because generating a key in a smart card can take seconds that
 * the relay's event loop must not wait for. Every function may run on any thread
 * once curl_global_init has been called. */
#ifndef CERTGATE_AGENT_ENROLL_H
#define CERTGATE_AGENT_ENROLL_H
#include <openssl/x509.h>
#include <stddef.h>

#include "agent_cred.h"

/* What `certgate agent enroll` was given (agent.c parses the command line). */
struct agent_enroll_args {
	const char *url;        /* the enrollment listener, https://HOST:PORT */
	const char *agent;      /* agent id (CN of the request, Basic user name) */
	char *token;            /* the enrollment token; wiped and freed by the callee */
	const char *dir;        /* AGENTDIR */
	const char *key_uri;    /* pkcs11: URI for a key in a token, or NULL */
	const char *ca_file;    /* trust anchors instead of the token's fingerprint */
	int force;              /* replace an existing certificate in dir */
};

/* Runs the enroll command: returns the process exit status (0, or 1 with every
 * problem reported on stderr). */
int agent_enroll_run(struct agent_enroll_args *a);

/* GET ORIGIN/.well-known/est/cacerts WITHOUT verifying the server: only to learn a
 * certificate whose fingerprint the caller then checks against one it already
 * trusts (the token's). Returns the certificates, or NULL with err. */
STACK_OF(X509) *agent_enroll_cacerts_unverified(const char *origin, char *err,
    size_t errlen);

/* What came back from an EST POST besides the certificates. */
struct agent_enroll_answer {
	int status;             /* the HTTP status, 0 when no answer came */
	long retry_after;       /* the server's Retry-After in seconds, -1 when none */
	int unmapped;           /* a 403 for a certificate the gateway's identity map
	                         * does not hold (agent_msg_unmapped) */
	int transient;          /* no answer for a reason that may pass: timeout, cannot
	                         * connect, connection closed (not a TLS refusal) */
};

/* POSTs the base64 CSR to ORIGIN/.well-known/est/OP (simpleenroll or
 * simplereenroll) over TLS with tls (its anchors are the only trust; its certificate
 * is presented when it has one), with an Authorization header value when auth is
 * not NULL. Returns the certificates of a 200 answer, or NULL: *ans says what the
 * server answered and err what went wrong in words a user can act on. cancel,
 * when not NULL, is polled: a non-zero value aborts the transfer. */
STACK_OF(X509) *agent_enroll_post(const char *origin, const char *op,
    struct agent_cred *tls, const char *auth, const char *csr_b64,
    struct agent_enroll_answer *ans, char *err, size_t errlen,
    const volatile int *cancel);

#endif
