/* catool: drives the CA service for the integration tests without the gateway's HTTP
 * layer. It runs the same code the gateway runs: est.c for the HTTP request,
 * caclient.c to reach the CA service, caproc.c to start and supervise it.
 *
 *   catool ping SOCKET
 *   catool est SOCKET CAFILE METHOD PATH [--ctype CT] [--auth-file F] [--body F]
 *              [--cert PEM] [--peer P] [--out F] [--repeat N]
 *       prints "status N", "content-type CT", "retry-after N", "www-authenticate V",
 *       "allow V" (when set) and writes the body to --out. With --repeat N the same
 *       request is sent N times at once (caclient_send on one event loop) and one
 *       "status N" line is printed per answer.
 *   catool supervise CONFIG SECONDS
 *       caproc_start, caproc_wait_ready, then an asynchronous ping every 200 ms for
 *       SECONDS; prints "child PID" whenever the child changes, "ping ok PID" /
 *       "ping fail MESSAGE" for each ping; caproc_stop at the end.
 * Exit 0 when the tool ran (whatever the statuses), 1 on a usage or set-up error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/pem.h>

#include "caclient.h"
#include "caproc.h"
#include "config.h"
#include "est.h"
#include "file.h"
#include "log.h"

static int
usage(void)
{
	fprintf(stderr, "usage: catool ping SOCKET | est SOCKET CAFILE METHOD PATH [options] | "
	    "supervise CONFIG SECONDS\n");
	return 1;
}

static void
print_resp(const struct est_response *r, const char *out)
{
	printf("status %d\n", r->status);
	printf("content-type %s\n", r->content_type ? r->content_type : "-");
	if (r->retry_after > 0)
		printf("retry-after %d\n", r->retry_after);
	if (r->www_authenticate)
		printf("www-authenticate %s\n", r->www_authenticate);
	if (r->allow)
		printf("allow %s\n", r->allow);
	if (out != NULL && file_write_atomic(out, r->body ? r->body : "", r->body_len, 0600) == -1)
		fprintf(stderr, "catool: cannot write %s: %s\n", out, strerror(errno));
	fflush(stdout);
}

static int
cmd_ping(const char *sock)
{
	struct caproto_req req = { .op = CAPROTO_PING };
	struct caproto_reply rep;
	char err[512];

	if (caclient_call(sock, &req, &rep, 10000, err, sizeof(err)) == -1) {
		printf("fail %s\n", err);
		return 0;
	}
	printf("ok ca=%s pid=%lld\n", rep.ca, rep.pid);
	caproto_reply_clear(&rep);
	return 0;
}

struct pending {
	const struct est *e;
	struct est_call *call;
	int *left;
	struct event_base *base;
	const char *out;
};

static void
est_done(const struct caproto_reply *rep, void *arg)
{
	struct pending *p = arg;
	struct est_response resp;

	est_reply(p->e, p->call, rep, &resp);
	print_resp(&resp, p->out);
	est_response_clear(&resp);
	if (--*p->left == 0)
		event_base_loopbreak(p->base);
}

static int
cmd_est(int argc, char **argv)
{
	struct est_request r = { 0 };
	struct est_response resp;
	struct est_call *calls = NULL;
	struct pending *pend = NULL;
	struct event_base *base = NULL;
	struct caclient *cl = NULL;
	const char *sock = argv[2], *out = NULL;
	char err[512], *auth = NULL, *body = NULL, *certpem = NULL;
	size_t len, i;
	struct est *e;
	X509 *cert = NULL;
	int repeat = 1, left, rc = 1;
	BIO *bio;

	if ((e = est_new(argv[3], err, sizeof(err))) == NULL) {
		fprintf(stderr, "catool: %s\n", err);
		return 1;
	}
	r.method = argv[4];
	r.path = argv[5];
	for (i = 6; i < (size_t)argc; i += 2) {
		if (i + 1 >= (size_t)argc)
			goto usage;
		if (strcmp(argv[i], "--ctype") == 0)
			r.content_type = argv[i + 1];
		else if (strcmp(argv[i], "--auth-file") == 0) {
			if (file_read(argv[i + 1], 4096, &auth, &len) == -1)
				goto usage;
			auth[strcspn(auth, "\r\n")] = '\0';
			r.authorization = auth;
		} else if (strcmp(argv[i], "--body") == 0) {
			if (file_read(argv[i + 1], 1 << 20, &body, &len) == -1)
				goto usage;
			r.body = (const unsigned char *)body;
			r.body_len = len;
		} else if (strcmp(argv[i], "--cert") == 0) {
			if (file_read(argv[i + 1], 1 << 20, &certpem, &len) == -1 ||
			    (bio = BIO_new_mem_buf(certpem, (int)len)) == NULL)
				goto usage;
			cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
			BIO_free(bio);
			if (cert == NULL)
				goto usage;
			r.client_cert = cert;
		} else if (strcmp(argv[i], "--peer") == 0)
			r.peer = argv[i + 1];
		else if (strcmp(argv[i], "--out") == 0)
			out = argv[i + 1];
		else if (strcmp(argv[i], "--repeat") == 0)
			repeat = atoi(argv[i + 1]);
		else
			goto usage;
	}
	if (repeat < 1 || repeat > 64)
		goto usage;
	if ((calls = calloc((size_t)repeat, sizeof(*calls))) == NULL ||
	    (pend = calloc((size_t)repeat, sizeof(*pend))) == NULL ||
	    (base = event_base_new()) == NULL || (cl = caclient_new(base, sock, 15000)) == NULL)
		goto out;
	left = 0;
	for (i = 0; i < (size_t)repeat; i++) {
		if (est_handle(e, &r, &resp, &calls[i]) == EST_RESPOND) {
			print_resp(&resp, out);
			est_response_clear(&resp);
			continue;
		}
		est_response_clear(&resp);
		pend[i] = (struct pending){ e, &calls[i], &left, base, out };
		if (caclient_send(cl, &calls[i].req, est_done, &pend[i]) == NULL) {
			fprintf(stderr, "catool: caclient_send refused the request\n");
			goto out;
		}
		left++;
	}
	if (left > 0)
		event_base_dispatch(base);
	rc = 0;
	goto out;
usage:
	rc = usage();
out:
	for (i = 0; calls && i < (size_t)repeat; i++)
		est_call_clear(&calls[i]);
	caclient_free(cl);
	if (base)
		event_base_free(base);
	free(calls);
	free(pend);
	free(auth);
	free(body);
	free(certpem);
	X509_free(cert);
	est_free(e);
	return rc;
}

struct sup {
	struct event_base *base;
	struct caproc *proc;
	struct caclient *cl;
	struct event *tick;
	int ticks, max;
	pid_t last;
};

static void
sup_pinged(const struct caproto_reply *rep, void *arg)
{
	(void)arg;
	if (rep->err == CAPROTO_OK)
		printf("ping ok %lld\n", rep->pid);
	else
		printf("ping fail %s\n", rep->message);
	fflush(stdout);
}

static void
sup_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sup *s = arg;
	struct caproto_req req = { .op = CAPROTO_PING };

	(void)fd;
	(void)what;
	if (caproc_pid(s->proc) != s->last) {
		s->last = caproc_pid(s->proc);
		printf("child %ld\n", (long)s->last);
		fflush(stdout);
	}
	if (++s->ticks > s->max) {
		event_base_loopbreak(s->base);
		return;
	}
	if (caclient_send(s->cl, &req, sup_pinged, s) == NULL)
		printf("ping fail send\n");
}

static int
cmd_supervise(const char *config, int seconds)
{
	struct timeval t = { 0, 200 * 1000 };
	struct strlist errs = { 0 };
	struct config *cfg = NULL;
	struct sup s = { 0 };
	char err[512];
	int rc = 1;

	if (config_load(config, 0, &cfg, &errs) == -1) {
		fprintf(stderr, "catool: %s\n", errs.n ? errs.v[0] : "bad config");
		strlist_free(&errs);
		return 1;
	}
	if ((s.base = event_base_new()) == NULL ||
	    (s.cl = caclient_new(s.base, cfg->ca.socket, 3000)) == NULL)
		goto out;
	if ((s.proc = caproc_start(s.base, cfg, getenv("CERTGATE_BIN"), err, sizeof(err))) == NULL) {
		fprintf(stderr, "catool: %s\n", err);
		goto out;
	}
	if (caproc_wait_ready(s.proc, 20000, err, sizeof(err)) == -1) {
		fprintf(stderr, "catool: not ready: %s\n", err);
		goto out;
	}
	printf("ready\n");
	fflush(stdout);
	s.max = seconds * 5;
	if ((s.tick = event_new(s.base, -1, EV_PERSIST, sup_tick, &s)) == NULL ||
	    event_add(s.tick, &t) == -1)
		goto out;
	event_base_dispatch(s.base);
	printf("starts %u\n", caproc_starts(s.proc));
	rc = 0;
out:
	caproc_stop(s.proc);
	printf("stopped\n");
	caclient_free(s.cl);
	if (s.tick)
		event_free(s.tick);
	if (s.base)
		event_base_free(s.base);
	config_free(cfg);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "ping") == 0)
		return cmd_ping(argv[2]);
	if (argc >= 6 && strcmp(argv[1], "est") == 0)
		return cmd_est(argc, argv);
	if (argc == 4 && strcmp(argv[1], "supervise") == 0)
		return cmd_supervise(argv[2], atoi(argv[3]));
	return usage();
}
