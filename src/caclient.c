/* Requests to the CA service over its Unix socket (caclient.h). */
#include "caclient.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "buf.h"

struct caclient {
	struct event_base *base;
	char *path;
	int timeout_ms;
	struct caclient_req *reqs;
	size_t n;
};

struct caclient_req {
	struct caclient *c;
	struct caclient_req *prev, *next;
	struct bufferevent *bev;
	struct event *timer;      /* the whole exchange; also fires at once for early errors */
	caclient_cb cb;
	void *arg;
	char fail[320];           /* set: report this failure when the timer fires */
};

struct caclient *
caclient_new(struct event_base *base, const char *socket_path, int timeout_ms)
{
	struct caclient *c;

	if ((c = calloc(1, sizeof(*c))) == NULL || (c->path = strdup(socket_path)) == NULL) {
		free(c);
		return NULL;
	}
	c->base = base;
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
	return c;
}

static void
caclient_req_free(struct caclient_req *r)
{
	struct caclient *c = r->c;

	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	c->n--;
	if (r->bev)
		bufferevent_free(r->bev);
	if (r->timer)
		event_free(r->timer);
	free(r);
}

void
caclient_free(struct caclient *c)
{
	if (c == NULL)
		return;
	while (c->reqs)
		caclient_req_free(c->reqs);
	free(c->path);
	free(c);
}

size_t
caclient_pending(const struct caclient *c)
{
	return c->n;
}

void
caclient_cancel(struct caclient_req *r)
{
	if (r != NULL)
		caclient_req_free(r);
}

static void
caclient_finish(struct caclient_req *r, const struct caproto_reply *rep)
{
	caclient_cb cb = r->cb;
	void *arg = r->arg;

	/* Freed first: the callback may free the client or send a new request. */
	caclient_req_free(r);
	cb(rep, arg);
}

static void
caclient_fail(struct caclient_req *r, const char *msg)
{
	struct caproto_reply rep;

	memset(&rep, 0, sizeof(rep));
	caproto_reply_error(&rep, CAPROTO_E_UNAVAILABLE, "the CA service: %s", msg);
	caclient_finish(r, &rep);
}

static void
caclient_timer(evutil_socket_t fd, short what, void *arg)
{
	struct caclient_req *r = arg;

	(void)fd;
	(void)what;
	caclient_fail(r, r->fail[0] ? r->fail : "no answer in time");
}

/* Reports msg from the loop, not from the caller's stack. */
static void
caclient_fail_soon(struct caclient_req *r, const char *msg)
{
	struct timeval now = { 0, 0 };

	snprintf(r->fail, sizeof(r->fail), "%s", msg);
	if (r->bev) {
		bufferevent_free(r->bev);
		r->bev = NULL;
	}
	evtimer_add(r->timer, &now);
}

static void
caclient_read(struct bufferevent *bev, void *arg)
{
	struct caclient_req *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct caproto_reply rep;
	unsigned char hdr[4], *body;
	char err[256];
	size_t n;

	if (evbuffer_get_length(in) < 4)
		return;
	evbuffer_copyout(in, hdr, 4);
	if ((n = caproto_frame_len(hdr)) == 0) {
		caclient_fail(r, "bad frame length");
		return;
	}
	if (evbuffer_get_length(in) < 4 + n)
		return;
	if ((body = evbuffer_pullup(in, (ev_ssize_t)(4 + n))) == NULL) {
		caclient_fail(r, "out of memory");
		return;
	}
	if (caproto_reply_decode((const char *)body + 4, n, &rep, err, sizeof(err)) == -1) {
		caclient_fail(r, err);
		return;
	}
	caclient_finish(r, &rep);
	caproto_reply_clear(&rep);
}

static void
caclient_event(struct bufferevent *bev, short what, void *arg)
{
	struct caclient_req *r = arg;
	char msg[160];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_EOF)
		snprintf(msg, sizeof(msg), "connection closed before the answer");
	else
		snprintf(msg, sizeof(msg), "%s: %s", r->c->path,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	caclient_fail(r, msg);
}

/* The request as sent: enroll and renew carry the wall-clock moment this side stops
 * waiting, so the CA service does not spend a token for an answer nobody reads. */
static int
caclient_encode(const struct caproto_req *req, int timeout_ms, struct buf *out, char *err,
    size_t errlen)
{
	struct caproto_req r = *req;	/* shallow: only read by the encoder */
	struct timespec ts;

	if ((r.op == CAPROTO_ENROLL || r.op == CAPROTO_RENEW) && r.deadline_ms == 0 &&
	    clock_gettime(CLOCK_REALTIME, &ts) == 0)
		r.deadline_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
	return caproto_req_encode(&r, out, err, errlen);
}

struct caclient_req *
caclient_send(struct caclient *c, const struct caproto_req *req, caclient_cb cb, void *arg)
{
	struct timeval tv = { c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000 };
	struct caclient_req *r;
	struct sockaddr_un sa;
	unsigned salen;
	char err[300];
	struct buf b;

	buf_init(&b);
	if (caclient_encode(req, c->timeout_ms, &b, err, sizeof(err)) == -1) {
		buf_wipe(&b);
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		buf_wipe(&b);
		return NULL;
	}
	r->c = c;
	r->cb = cb;
	r->arg = arg;
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	c->n++;
	if ((r->timer = evtimer_new(c->base, caclient_timer, r)) == NULL) {
		caclient_req_free(r);
		buf_wipe(&b);
		return NULL;
	}
	evtimer_add(r->timer, &tv);
	if (caproto_sockaddr(c->path, &sa, &salen) == -1) {
		caclient_fail_soon(r, "ca.socket is too long for a Unix socket");
		goto out;
	}
	if ((r->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		caclient_fail_soon(r, "out of memory");
		goto out;
	}
	bufferevent_setcb(r->bev, caclient_read, NULL, caclient_event, r);
	bufferevent_setwatermark(r->bev, EV_READ, 0, 4 + CAPROTO_MAX);
	if (bufferevent_write(r->bev, b.p, b.len) == -1 ||
	    bufferevent_enable(r->bev, EV_READ | EV_WRITE) == -1) {
		caclient_fail_soon(r, "out of memory");
		goto out;
	}
	if (bufferevent_socket_connect(r->bev, (struct sockaddr *)&sa, (int)salen) == -1) {
		snprintf(err, sizeof(err), "cannot connect to %s: %s", c->path, strerror(errno));
		caclient_fail_soon(r, err);
	}
out:
	buf_wipe(&b);
	return r;
}

/* ---- blocking ------------------------------------------------------------------ */

static long long
caclient_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline. 0, or -1 (timeout or error). */
static int
caclient_wait(int fd, short events, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	long long left;
	int r;

	for (;;) {
		if ((left = deadline - caclient_ms()) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (r > 0)
			return 0;
		if (r == -1 && errno != EINTR)
			return -1;
	}
}

static int
caclient_io(int fd, unsigned char *p, size_t n, int writing, long long deadline)
{
	ssize_t r;

	while (n > 0) {
		if (caclient_wait(fd, writing ? POLLOUT : POLLIN, deadline) == -1)
			return -1;
		r = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
		if (r == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (r == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int
caclient_call(const char *socket_path, const struct caproto_req *req,
    struct caproto_reply *rep, int timeout_ms, char *err, size_t errlen)
{
	long long deadline = caclient_ms() + (timeout_ms > 0 ? timeout_ms : 10000);
	struct sockaddr_un sa;
	unsigned char hdr[4], *in = NULL;
	unsigned salen;
	struct buf b;
	size_t n;
	int fd = -1, rc = -1;

	memset(rep, 0, sizeof(*rep));
	buf_init(&b);
	if (caclient_encode(req, timeout_ms > 0 ? timeout_ms : 10000, &b, err, errlen) == -1)
		goto out;
	if (caproto_sockaddr(socket_path, &sa, &salen) == -1) {
		snprintf(err, errlen, "%s is too long for a Unix socket", socket_path);
		goto out;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sa, salen) == -1) {
		snprintf(err, errlen, "cannot connect to the CA service at %s: %s (is `certgate ca "
		    "serve` running?)", socket_path, strerror(errno));
		goto out;
	}
	if (fcntl(fd, F_SETFL, O_NONBLOCK) == -1 ||
	    caclient_io(fd, (unsigned char *)b.p, b.len, 1, deadline) == -1 ||
	    caclient_io(fd, hdr, 4, 0, deadline) == -1)
		goto ioerr;
	if ((n = caproto_frame_len(hdr)) == 0) {
		snprintf(err, errlen, "the CA service sent a bad frame length");
		goto out;
	}
	if ((in = malloc(n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (caclient_io(fd, in, n, 0, deadline) == -1)
		goto ioerr;
	if (caproto_reply_decode((const char *)in, n, rep, err, errlen) == -1)
		goto out;
	rc = 0;
	goto out;
ioerr:
	snprintf(err, errlen, "the CA service at %s: %s", socket_path,
	    errno == ETIMEDOUT ? "no answer in time" : strerror(errno));
out:
	if (fd != -1)
		close(fd);
	buf_wipe(&b);
	free(in);
	return rc;
}
