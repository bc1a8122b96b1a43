/* The CA service: a libevent loop on a Unix socket in front of caops (caserve.h). */
#include "caserve.h"

#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "buf.h"
#include "cabatch.h"
#include "caops.h"
#include "caproto.h"
#include "config.h"
#include "file.h"
#include "log.h"
#include "p11.h"

#define CASERVE_MAX_CONNS	256
#define CASERVE_IDLE_S		60	/* a connection without a request for this long */
#define CASERVE_WRITE_S		10	/* a reply not taken within this */

struct caserve;

struct caserve_conn {
	struct caserve *srv;
	struct bufferevent *bev;
	struct caserve_conn *prev, *next;
	int closing;          /* reply queued, close once written */
};

/* An enrollment or renewal read and waiting for the next batch. */
struct caserve_pending {
	struct caserve_conn *c;   /* NULL when the connection went away meanwhile */
	struct caproto_req req;
};

struct caserve {
	const struct config *cfg;
	struct event_base *base;
	struct evconnlistener *lst;
	struct event *sigterm, *sigint, *watch;
	struct caops *ops;
	struct caserve_conn *conns;
	size_t nconns;
	uid_t uid;
	/* Group commit: requests read in one turn of the loop are queued, and a
	 * zero-timeout event (run after the reads of that turn) answers up to
	 * CABATCH_MAX of them as one batch (caops_handle_batch). At most one request
	 * per connection is queued (reading stops until its reply is sent), so the
	 * queue never holds more than CASERVE_MAX_CONNS. */
	struct event *flush;
	struct caserve_pending *q;
	size_t nq;
};

static void
caserve_conn_free(struct caserve_conn *c)
{
	struct caserve *s = c->srv;
	size_t i;

	for (i = 0; i < s->nq; i++)
		if (s->q[i].c == c)
			s->q[i].c = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	bufferevent_free(c->bev);
	free(c);
}

/* Queues the reply. Returns -1 when c was freed (nothing could be queued). */
static int
caserve_send(struct caserve_conn *c, const struct caproto_reply *rep)
{
	struct buf b;
	int rc = 0;

	buf_init(&b);
	if (caproto_reply_encode(rep, &b) == -1 ||
	    bufferevent_write(c->bev, b.p, b.len) == -1) {
		log_err("cannot encode or queue a reply: closing the connection");
		rc = -1;
	}
	buf_free(&b);
	if (rc == -1) {
		caserve_conn_free(c);
		return -1;
	}
	/* One request at a time per connection: the next is read once this is sent. */
	bufferevent_disable(c->bev, EV_READ);
	return 0;
}

static void
caserve_queue(struct caserve_conn *c, struct caproto_req *req)
{
	struct caserve *s = c->srv;
	struct caproto_reply rep;
	struct timeval now = { 0, 0 };

	if (s->nq >= CASERVE_MAX_CONNS) {	/* cannot happen: one per connection */
		caproto_req_clear(req);
		memset(&rep, 0, sizeof(rep));
		caproto_reply_error(&rep, CAPROTO_E_UNAVAILABLE, "busy");
		(void)caserve_send(c, &rep);
		caproto_reply_clear(&rep);
		return;
	}
	s->q[s->nq].c = c;
	s->q[s->nq++].req = *req;
	memset(req, 0, sizeof(*req));
	/* One request at a time per connection: the next is read once this is answered. */
	bufferevent_disable(c->bev, EV_READ);
	if (!evtimer_pending(s->flush, NULL))
		evtimer_add(s->flush, &now);
}

/* Answers the first CABATCH_MAX queued requests as one batch; a request deferred
 * by caops_handle_batch (its token or agent was in use by an earlier one) and the
 * rest wait for the next batch, which starts at once. */
static void
caserve_flush(evutil_socket_t fd, short what, void *arg)
{
	struct caserve *s = arg;
	const struct caproto_req *reqs[CABATCH_MAX];
	struct caproto_reply reps[CABATCH_MAX];
	int deferred[CABATCH_MAX];
	struct timeval now = { 0, 0 };
	size_t i, n, keep = 0;

	(void)fd;
	(void)what;
	if ((n = s->nq < CABATCH_MAX ? s->nq : CABATCH_MAX) == 0)
		return;
	for (i = 0; i < n; i++)
		reqs[i] = &s->q[i].req;
	if (n > 1)
		log_debug("answering %zu queued requests as one batch", n);
	caops_handle_batch(s->ops, reqs, reps, deferred, n);
	for (i = 0; i < n; i++) {
		if (deferred[i] && s->q[i].c != NULL) {
			s->q[keep++] = s->q[i];
			continue;
		}
		if (s->q[i].c != NULL && !deferred[i])
			(void)caserve_send(s->q[i].c, &reps[i]);
		caproto_reply_clear(&reps[i]);
		caproto_req_clear(&s->q[i].req);
	}
	memmove(&s->q[keep], &s->q[n], (s->nq - n) * sizeof(*s->q));
	s->nq = keep + (s->nq - n);
	if (s->nq > 0)
		evtimer_add(s->flush, &now);
}

static void
caserve_read(struct bufferevent *bev, void *arg)
{
	struct caserve_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct caproto_req req;
	struct caproto_reply rep;
	unsigned char hdr[4], *body;
	char err[256];
	size_t n;

	if (c->closing || evbuffer_get_length(in) < 4)
		return;
	evbuffer_copyout(in, hdr, 4);
	memset(&rep, 0, sizeof(rep));
	if ((n = caproto_frame_len(hdr)) == 0) {
		caproto_reply_error(&rep, CAPROTO_E_BAD_REQUEST, "bad frame length (1 to %d bytes)",
		    CAPROTO_MAX);
		c->closing = 1;
		(void)caserve_send(c, &rep);
		return;
	}
	if (evbuffer_get_length(in) < 4 + n)
		return;
	evbuffer_drain(in, 4);
	if ((body = evbuffer_pullup(in, (ev_ssize_t)n)) == NULL) {
		c->closing = 1;
		caproto_reply_error(&rep, CAPROTO_E_INTERNAL, "out of memory");
		(void)caserve_send(c, &rep);
		return;
	}
	if (caproto_req_decode((const char *)body, n, &req, err, sizeof(err)) == -1) {
		log_info("refused a malformed request: %s", err);
		caproto_reply_error(&rep, CAPROTO_E_BAD_REQUEST, "%s", err);
	} else if (req.op == CAPROTO_ENROLL || req.op == CAPROTO_RENEW) {
		/* Answered with the others of this turn of the loop (caserve_flush). */
		evbuffer_drain(in, n);
		caserve_queue(c, &req);
		return;
	} else {
		caops_handle(c->srv->ops, &req, &rep);
		caproto_req_clear(&req);
	}
	evbuffer_drain(in, n);
	(void)caserve_send(c, &rep);
	caproto_reply_clear(&rep);
}

static void
caserve_written(struct bufferevent *bev, void *arg)
{
	struct caserve_conn *c = arg;

	if (c->closing) {
		caserve_conn_free(c);
		return;
	}
	bufferevent_enable(bev, EV_READ);
	/* A pipelined request may be waiting already. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		caserve_read(bev, c);
}

static void
caserve_event(struct bufferevent *bev, short what, void *arg)
{
	struct caserve_conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("closing an idle or stalled connection");
	caserve_conn_free(c);
}

static void
caserve_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct caserve *s = arg;
	struct caserve_conn *c;
	struct timeval rd = { CASERVE_IDLE_S, 0 }, wr = { CASERVE_WRITE_S, 0 };
	struct ucred cred;
	socklen_t cl = sizeof(cred);

	(void)l;
	(void)sa;
	(void)salen;
	/* The socket is 0600 already; a peer of another user is a configuration mistake. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.uid != s->uid &&
	    cred.uid != 0) {
		log_warn("refusing a connection from uid %u (the CA service runs as uid %u)",
		    (unsigned)cred.uid, (unsigned)s->uid);
		evutil_closesocket(fd);
		return;
	}
	if (s->nconns >= CASERVE_MAX_CONNS) {
		log_warn("%d connections open: refusing one more", CASERVE_MAX_CONNS);
		evutil_closesocket(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(c);
		evutil_closesocket(fd);
		return;
	}
	c->srv = s;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	bufferevent_setcb(c->bev, caserve_read, caserve_written, caserve_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, 4 + CAPROTO_MAX);
	bufferevent_set_timeouts(c->bev, &rd, &wr);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
caserve_signal(evutil_socket_t sig, short what, void *arg)
{
	struct caserve *s = arg;

	(void)what;
	log_info("signal %d: stopping the CA service", (int)sig);
	event_base_loopbreak(s->base);
}

static void
caserve_watch(evutil_socket_t fd, short what, void *arg)
{
	struct caserve *s = arg;
	char b[64];
	ssize_t r;

	(void)what;
	r = read(fd, b, sizeof(b));
	if (r > 0 || (r == -1 && (errno == EINTR || errno == EAGAIN)))
		return;
	log_info("the gateway that started the CA service has gone: stopping");
	event_base_loopbreak(s->base);
}

/* Everything but 0-2 and keep: descriptors a parent leaked (listeners, the token's)
 * must not live on in the CA. */
static void
caserve_close_inherited(int keep)
{
	if (keep < 3) {
		(void)close_range(3, ~0U, 0);
		return;
	}
	if (keep > 3)
		(void)close_range(3, (unsigned)keep - 1, 0);
	(void)close_range((unsigned)keep + 1, ~0U, 0);
}

/* Binds the socket: its directory private, one service per socket (an flock on
 * SOCKET.lock), a stale socket file replaced. Returns the listening fd or -1. */
static int
caserve_bind(const char *path, int *lockfd)
{
	struct sockaddr_un sa;
	struct stat st;
	unsigned salen;
	char *dir = NULL, *lockpath = NULL, pid[32];
	int fd = -1;

	*lockfd = -1;
	if (caproto_sockaddr(path, &sa, &salen) == -1) {
		log_err("ca.socket %s: too long for a Unix socket (at most %zu bytes): set a "
		    "shorter ca.socket", path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	if ((dir = file_dirname(path)) == NULL || asprintf(&lockpath, "%s.lock", path) < 0) {
		lockpath = NULL;
		goto fail;
	}
	if (stat(dir, &st) == -1) {
		if (file_mkdirs(dir, 0700) == -1 || chmod(dir, 0700) == -1) {
			log_err("cannot create %s: %s", dir, strerror(errno));
			goto fail;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		log_err("%s is not a directory", dir);
		goto fail;
	}
	if ((*lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		log_err("cannot open %s: %s", lockpath, strerror(errno));
		goto fail;
	}
	if (flock(*lockfd, LOCK_EX | LOCK_NB) == -1) {
		log_err("another CA service is running on %s (it holds %s): stop it first, or "
		    "let the gateway use it (\"ca\": {\"service\": \"external\"})", path, lockpath);
		goto fail;
	}
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(*lockfd, 0) == 0 && write(*lockfd, pid, strlen(pid)) < 0)
		log_debug("cannot write the pid to %s", lockpath);
	if (unlink(path) == -1 && errno != ENOENT) {
		log_err("cannot remove the old socket %s: %s", path, strerror(errno));
		goto fail;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sa, salen) == -1 || chmod(path, 0600) == -1 ||
	    listen(fd, 64) == -1) {
		log_err("cannot listen on %s: %s", path, strerror(errno));
		goto fail;
	}
	free(dir);
	free(lockpath);
	return fd;
fail:
	if (fd != -1)
		close(fd);
	if (*lockfd != -1)
		close(*lockfd);
	*lockfd = -1;
	free(dir);
	free(lockpath);
	return -1;
}

int
caserve_main(const struct config *cfg, int watch_fd)
{
	struct caserve s;
	struct caserve_conn *c;
	char err[1024];
	int fd = -1, lockfd = -1, rc = 1;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.uid = geteuid();
	caserve_close_inherited(watch_fd);
	signal(SIGPIPE, SIG_IGN);
	if ((fd = caserve_bind(cfg->ca.socket, &lockfd)) == -1)
		goto out;
	if ((s.ops = caops_new(cfg, err, sizeof(err))) == NULL) {
		log_err("cannot start the CA service: %s", err);
		goto out;
	}
	if ((s.base = event_base_new()) == NULL ||
	    (s.lst = evconnlistener_new(s.base, caserve_accept, &s,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd)) == NULL) {
		log_err("cannot set up the event loop");
		goto out;
	}
	fd = -1;
	if ((s.q = calloc(CASERVE_MAX_CONNS, sizeof(*s.q))) == NULL ||
	    (s.flush = evtimer_new(s.base, caserve_flush, &s)) == NULL) {
		log_err("cannot set up the request queue");
		goto out;
	}
	s.sigterm = evsignal_new(s.base, SIGTERM, caserve_signal, &s);
	s.sigint = evsignal_new(s.base, SIGINT, caserve_signal, &s);
	if (s.sigterm == NULL || s.sigint == NULL || evsignal_add(s.sigterm, NULL) == -1 ||
	    evsignal_add(s.sigint, NULL) == -1) {
		log_err("cannot handle signals");
		goto out;
	}
	if (watch_fd >= 0) {
		(void)fcntl(watch_fd, F_SETFD, FD_CLOEXEC);
		if ((s.watch = event_new(s.base, watch_fd, EV_READ | EV_PERSIST, caserve_watch,
		    &s)) == NULL || event_add(s.watch, NULL) == -1) {
			log_err("cannot watch descriptor %d", watch_fd);
			goto out;
		}
	}
	log_info("CA service ready on %s (pid %ld, CA %.16s...)", cfg->ca.socket, (long)getpid(),
	    caops_fingerprint(s.ops));
	if (event_base_dispatch(s.base) == -1)
		log_err("the event loop failed");
	rc = 0;
out:
	while ((c = s.conns) != NULL)
		caserve_conn_free(c);
	while (s.nq > 0)
		caproto_req_clear(&s.q[--s.nq].req);
	free(s.q);
	if (s.flush)
		event_free(s.flush);
	if (s.lst) {
		evconnlistener_free(s.lst);
		(void)unlink(cfg->ca.socket);
	}
	if (fd != -1)
		close(fd);
	if (s.sigterm)
		event_free(s.sigterm);
	if (s.sigint)
		event_free(s.sigint);
	if (s.watch)
		event_free(s.watch);
	caops_free(s.ops);
	if (s.base)
		event_base_free(s.base);
	if (lockfd != -1)
		close(lockfd);
	p11_shutdown();
	return rc;
}
