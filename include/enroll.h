/* Enrollment over HTTP: the enroll listener's application (HTTPS, client certificates
 * optional) and the EST routes of the mTLS listener. The wire formats and every check
 * that can be made here are est.h's; what needs the CA key goes to the CA service
 * through caclient.h, asynchronously, on the worker's loop. Each request gets one
 * line in the gateway's audit log (the CA service writes its own, ca-audit.jsonl).
 *
 * Routes (est.h): GET /.well-known/est/cacerts, POST /.well-known/est/simpleenroll
 * (enroll listener), POST /.well-known/est/simplereenroll (both listeners, with the
 * current certificate), POST /ocsp and GET /ocsp/... (enroll listener). Requests
 * that start an enrollment are rate-limited per client address (429 with
 * Retry-After); the CA service rate-limits renewals per agent too.
 *
 * Threading: enroll_init/enroll_shutdown on the main thread; the rest on workers. */
#ifndef CERTGATE_ENROLL_H
#define CERTGATE_ENROLL_H
#include <openssl/x509.h>

#include "conn.h"
#include "est.h"

/* The enroll listener's application. */
extern const struct conn_app enroll_app;

/* Start-up: loads what EST serves (the CA certificate), once for every worker.
 * with_ca: a CA service is there to ask (enrollment configured); without one,
 * requests that need it get 404. Returns 0/-1 (logged). */
int enroll_init(const struct config *cfg, int with_ca);
void enroll_shutdown(void);

/* Per-worker state (the CA client on the worker's loop). */
struct enroll_worker;
struct enroll_worker *enroll_worker_new(struct event_base *base, const struct config *cfg);
void enroll_worker_free(struct enroll_worker *ew);

/* A request for the mTLS listener's EST routes, made by the proxy. */
struct enroll_pending;
typedef void (*enroll_done_fn)(void *arg, const struct est_response *resp);

/* 1 when path is an EST route this listener serves. */
int enroll_route(const char *path, int mtls);

/* Serves r. Returns 1 with *resp filled (answered at once: clear it with
 * est_response_clear), or 0 with *pending set: done(arg, resp) follows from the loop
 * (unless enroll_cancel is called first). */
int enroll_serve(struct enroll_worker *ew, const struct est_request *r,
    struct est_response *resp, enroll_done_fn done, void *arg,
    struct enroll_pending **pending);
void enroll_cancel(struct enroll_pending *p);

#endif
