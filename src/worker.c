/* Worker threads: listeners, accept, the periodic sweep and draining (worker.h).
 *
 * Why SO_REUSEPORT and not one acceptor: a single acceptor would have to pass
 * descriptors across threads and becomes the bottleneck at handshake rates. */
#include "worker.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "ocspcheck.h"
#include "state.h"

#define WORKER_BACKLOG		1024
#define WORKER_ACCEPT_BATCH	64
#define WORKER_MAX		64
#define WORKER_MAX_LISTENERS	4
#define WORKER_DRAIN_TICK_MS	100

struct worker;

/* One listener on one worker. */
struct worker_sock {
	struct worker *w;
	int lfd;
	struct event *accept_ev;
	struct event *pause_timer;      /* EMFILE back-off */
	struct conn_home home;
};

struct worker {
	int idx;
	pthread_t thread;
	struct event_base *base;
	const struct config *cfg;
	struct worker_sock sock[WORKER_MAX_LISTENERS];
	int nsock;
	struct event *sweep_timer;      /* 1 s: revocation/identity/expiry re-check */
	struct event *recheck_ev;       /* activated by the main thread after a reload */
	struct event *stop_ev;          /* activated by the main thread on SIGTERM */
	struct event *drain_timer;
	struct timespec drain_deadline;
	uint64_t gen;                   /* state generation last swept */
	int draining;
	int ok;                         /* every application's worker state was made */
};

static struct {
	struct worker *w;
	int n, started;
	const struct worker_listener *ls;
	int nls;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int ready;
} wk = { .mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

int
worker_count(const struct config *cfg)
{
	long n = cfg->workers;

	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		n = 1;
	if (n > WORKER_MAX)
		n = WORKER_MAX;
	return (int)n;
}

/* ---- accept ---- */

static void
worker_pause_accept(struct worker_sock *ws, int err)
{
	struct timeval tv = { 1, 0 };

	log_warn("accept: %s; not accepting for 1 s", strerror(err));
	event_del(ws->accept_ev);
	evtimer_add(ws->pause_timer, &tv);
}

static void
worker_resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_sock *ws = arg;

	if (!ws->w->draining && ws->lfd != -1)
		event_add(ws->accept_ev, NULL);
}

static void
worker_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct worker_sock *ws = arg;
	struct sockaddr_storage ss;
	socklen_t sl;
	int i, fd;

	for (i = 0; i < WORKER_ACCEPT_BATCH && !ws->w->draining; i++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
				continue;
			case EAGAIN:
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				worker_pause_accept(ws, errno);
				return;
			default:
				log_warn("accept: %s", strerror(errno));
				return;
			}
		}
		conn_accept(&ws->home, fd, &ss);
	}
}

/* ---- sweep and drain ---- */

static void
worker_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct gw_state *st = NULL;
	uint64_t gen = state_generation();
	time_t now = time(NULL);
	int i;

	if (gen != w->gen)
		st = state_get();
	for (i = 0; i < w->nsock; i++)
		conn_sweep(&w->sock[i].home, st, now);
	w->gen = gen;
	state_put(st);
}

static void
worker_drain(struct worker *w)
{
	struct timespec now;
	unsigned left = 0;
	int i, force;

	clock_gettime(CLOCK_MONOTONIC, &now);
	force = now.tv_sec > w->drain_deadline.tv_sec ||
	    (now.tv_sec == w->drain_deadline.tv_sec &&
	    now.tv_nsec >= w->drain_deadline.tv_nsec);
	for (i = 0; i < w->nsock; i++)
		left += conn_drain(&w->sock[i].home, force);
	if (left == 0)
		event_base_loopbreak(w->base);
}

static void
worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	worker_drain(arg);
}

static void
worker_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, WORKER_DRAIN_TICK_MS * 1000 };
	long ns;
	int i;

	if (w->draining)
		return;
	w->draining = 1;
	for (i = 0; i < w->nsock; i++) {
		w->sock[i].home.draining = 1;
		event_del(w->sock[i].accept_ev);
		event_del(w->sock[i].pause_timer);
		if (w->sock[i].lfd != -1)
			close(w->sock[i].lfd);
		w->sock[i].lfd = -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &w->drain_deadline);
	ns = w->drain_deadline.tv_nsec + (long)(w->cfg->limits.grace_ms % 1000) * 1000000L;
	w->drain_deadline.tv_sec += w->cfg->limits.grace_ms / 1000 + ns / 1000000000L;
	w->drain_deadline.tv_nsec = ns % 1000000000L;
	event_add(w->drain_timer, &tv);
	worker_drain(w);
}

/* ---- threads ---- */

static void
worker_ready(void)
{
	pthread_mutex_lock(&wk.mtx);
	wk.ready++;
	pthread_cond_broadcast(&wk.cv);
	pthread_mutex_unlock(&wk.mtx);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	const struct conn_app *app;
	int i;

	w->ok = 1;
	for (i = 0; i < w->nsock; i++) {
		app = w->sock[i].home.app;
		if (app->worker_new == NULL)
			continue;
		if ((w->sock[i].home.app_wdata = app->worker_new(w->base, w->cfg)) == NULL) {
			log_err("worker %d: cannot set up %s", w->idx, app->name);
			w->ok = 0;
		}
	}
	worker_ready();
	if (w->ok)
		event_base_dispatch(w->base);
	for (i = 0; i < w->nsock; i++) {
		(void)conn_drain(&w->sock[i].home, 1);
		app = w->sock[i].home.app;
		if (app->worker_free != NULL && w->sock[i].home.app_wdata != NULL)
			app->worker_free(w->sock[i].home.app_wdata);
		w->sock[i].home.app_wdata = NULL;
	}
	ocspcheck_worker_end(w->base);
	/* bufferevents freed above with deferred callbacks are finalized by the loop:
	 * run it once more so nothing is left for event_base_free to leak. */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	return NULL;
}

/* Binds one listening socket; reuseport lets every worker bind its own. */
static int
worker_listen_socket(const struct worker_listener *l, int reuseport)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[16];
	int fd = -1, one = 1, rc, err = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)l->port);
	if ((rc = getaddrinfo(l->host, port, &hints, &res)) != 0) {
		log_err("listen address %s: %s", l->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1) {
			err = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		    sizeof(one)) == -1) {
			err = errno;
			close(fd);
			fd = -1;
			continue;
		}
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    (!reuseport || listen(fd, WORKER_BACKLOG) == 0))
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		if (err == EACCES && l->port < 1024)
			log_err("cannot listen on %s:%s: %s (a port below 1024 needs "
			    "CAP_NET_BIND_SERVICE: AmbientCapabilities=CAP_NET_BIND_SERVICE in "
			    "the systemd unit, or setcap cap_net_bind_service=+ep on the binary)",
			    l->host, port, strerror(err));
		else
			log_err("cannot listen on %s:%s: %s (%s)", l->host, port, strerror(err),
			    l->app->name);
	}
	return fd;
}

/* The worker's loop with conn.h's priorities: handshake steps after everything
 * else, one per iteration. */
static struct event_base *
worker_base_new(void)
{
	struct event_config *ec;
	struct event_base *base = NULL;

	if ((ec = event_config_new()) == NULL ||
	    event_config_set_max_dispatch_interval(ec, NULL, 1, CONN_PRI_HANDSHAKE) == -1 ||
	    (base = event_base_new_with_config(ec)) == NULL) {
		log_err("cannot make a worker's event loop");
		goto out;
	}
	if (event_base_priority_init(base, CONN_PRIORITIES) == -1) {
		log_err("cannot set a worker's event priorities");
		event_base_free(base);
		base = NULL;
	}
out:
	if (ec != NULL)
		event_config_free(ec);
	return base;
}

static int
worker_init(struct worker *w, int idx, const struct config *cfg, int async_sign)
{
	struct worker_sock *ws;
	struct timeval sec = { 1, 0 };
	int i;

	memset(w, 0, sizeof(*w));
	w->idx = idx;
	w->cfg = cfg;
	w->gen = state_generation();
	for (i = 0; i < WORKER_MAX_LISTENERS; i++)
		w->sock[i].lfd = -1;
	if ((w->base = worker_base_new()) == NULL)
		return -1;
	for (i = 0; i < wk.nls; i++) {
		ws = &w->sock[i];
		w->nsock++;
		ws->w = w;
		ws->home.base = w->base;
		ws->home.cfg = cfg;
		ws->home.app = wk.ls[i].app;
		ws->home.async_sign = async_sign;
		TAILQ_INIT(&ws->home.conns);
		if ((ws->lfd = worker_listen_socket(&wk.ls[i], 1)) == -1)
			return -1;
		ws->accept_ev = event_new(w->base, ws->lfd, EV_READ | EV_PERSIST,
		    worker_accept_cb, ws);
		ws->pause_timer = evtimer_new(w->base, worker_resume_accept_cb, ws);
		if (ws->accept_ev == NULL || ws->pause_timer == NULL ||
		    event_add(ws->accept_ev, NULL) == -1) {
			log_err("cannot set up worker %d events", idx);
			return -1;
		}
	}
	w->sweep_timer = event_new(w->base, -1, EV_PERSIST, worker_sweep_cb, w);
	w->recheck_ev = event_new(w->base, -1, 0, worker_sweep_cb, w);
	w->stop_ev = event_new(w->base, -1, 0, worker_stop_cb, w);
	w->drain_timer = event_new(w->base, -1, EV_PERSIST, worker_drain_cb, w);
	if (w->sweep_timer == NULL || w->recheck_ev == NULL || w->stop_ev == NULL ||
	    w->drain_timer == NULL || event_add(w->sweep_timer, &sec) == -1) {
		log_err("cannot set up worker %d events", idx);
		return -1;
	}
	return 0;
}

static void
worker_free(struct worker *w)
{
	int i;

	for (i = 0; i < w->nsock; i++) {
		if (w->sock[i].accept_ev != NULL)
			event_free(w->sock[i].accept_ev);
		if (w->sock[i].pause_timer != NULL)
			event_free(w->sock[i].pause_timer);
		if (w->sock[i].lfd != -1)
			close(w->sock[i].lfd);
	}
	if (w->sweep_timer != NULL)
		event_free(w->sweep_timer);
	if (w->recheck_ev != NULL)
		event_free(w->recheck_ev);
	if (w->stop_ev != NULL)
		event_free(w->stop_ev);
	if (w->drain_timer != NULL)
		event_free(w->drain_timer);
	if (w->base != NULL)
		event_base_free(w->base);
	memset(w, 0, sizeof(*w));
}

int
worker_start(const struct config *cfg, const struct worker_listener *ls, int nls,
    int async_sign)
{
	int i, fd, failed = 0;

	if (nls < 1 || nls > WORKER_MAX_LISTENERS) {
		log_err("%d listeners configured, 1..%d supported", nls, WORKER_MAX_LISTENERS);
		return -1;
	}
	wk.ls = ls;
	wk.nls = nls;
	/* SO_REUSEPORT would silently share a port with another gateway of the same
	 * user: bind once without it first, so a port in use is an error. */
	for (i = 0; i < nls; i++) {
		if ((fd = worker_listen_socket(&ls[i], 0)) == -1)
			return -1;
		close(fd);
	}
	wk.n = worker_count(cfg);
	if ((wk.w = calloc((size_t)wk.n, sizeof(*wk.w))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		wk.n = 0;
		return -1;
	}
	for (i = 0; i < wk.n; i++)
		if (worker_init(&wk.w[i], i, cfg, async_sign) == -1)
			return -1;
	for (i = 0; i < wk.n; i++) {
		if ((errno = pthread_create(&wk.w[i].thread, NULL, worker_main, &wk.w[i])) != 0) {
			log_err("pthread_create: %s", strerror(errno));
			return -1;
		}
		wk.started++;
	}
	pthread_mutex_lock(&wk.mtx);
	while (wk.ready < wk.started)
		pthread_cond_wait(&wk.cv, &wk.mtx);
	pthread_mutex_unlock(&wk.mtx);
	for (i = 0; i < wk.started; i++)
		if (!wk.w[i].ok)
			failed = 1;
	return failed ? -1 : 0;
}

void
worker_wake(void)
{
	int i;

	for (i = 0; i < wk.started; i++)
		event_active(wk.w[i].recheck_ev, EV_TIMEOUT, 0);
}

void
worker_stop(void)
{
	int i;

	for (i = 0; i < wk.started; i++)
		event_active(wk.w[i].stop_ev, EV_TIMEOUT, 0);
}

void
worker_join(void)
{
	int i;

	worker_stop();
	for (i = 0; i < wk.started; i++)
		pthread_join(wk.w[i].thread, NULL);
	for (i = 0; wk.w != NULL && i < wk.n; i++)
		worker_free(&wk.w[i]);
	free(wk.w);
	wk.w = NULL;
	wk.n = wk.started = wk.ready = 0;
}
