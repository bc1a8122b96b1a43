/* Stdio MCP server processes: spawning, pipes on the event loop, newline framing,
 * backpressure, stderr to the log, idle timeout, termination and reaping (see
 * include/stdioproc.h for the contract). */
#include "stdioproc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "child.h"
#include "text.h"

#define STDIOPROC_READ_CHUNK 65536
#define STDIOPROC_ERR_LINE 1024
#define STDIOPROC_ERR_LINES_PER_S 100

extern char **environ;

enum stdioproc_state { STDIOPROC_RUNNING, STDIOPROC_ENDING };

struct stdioproc {
	TAILQ_ENTRY(stdioproc) link;
	struct event_base *base;
	char *label;
	pid_t pid;
	int pidfd, fd_in, fd_out, fd_err;
	struct event *ev_pid, *ev_in, *ev_out, *ev_err;
	struct event *ev_timer;     /* termination stages, then the wait for stdout EOF */
	struct event *ev_idle, *ev_errwake, *ev_deliver;
	struct evbuffer *outq;      /* to the server's stdin */
	struct evbuffer *inbuf;     /* from its stdout, at most one partial line + a chunk */
	struct evbuffer *errbuf;
	struct stdioproc_cbs cbs;
	size_t max_msg, max_queued;
	int term_ms, kill_ms, idle_ms;
	int paused, discarding, err_discarding;
	int hold;
	struct timeval last;        /* last message either way */
	time_t err_sec;
	int err_lines;
	enum stdioproc_state state;
	int stage;                  /* while ENDING: 0 stdin closed, 1 SIGTERM, 2 SIGKILL */
	enum stdioproc_end reason;
	int eof_grace;              /* stdout ended while running: give it term_ms to exit */
	int reaped, out_eof, closed, exit_reported, in_cb;
	struct stdioproc_exit exit;
};

static pthread_mutex_t stdioproc_mu = PTHREAD_MUTEX_INITIALIZER;
static TAILQ_HEAD(stdioproc_list, stdioproc) stdioproc_all =
    TAILQ_HEAD_INITIALIZER(stdioproc_all);
static atomic_int stdioproc_live;

int
stdioproc_count(void)
{
	return atomic_load(&stdioproc_live);
}

pid_t
stdioproc_pid(const struct stdioproc *p)
{
	return p->pid;
}

const char *
stdioproc_label(const struct stdioproc *p)
{
	return p->label;
}

size_t
stdioproc_queued(const struct stdioproc *p)
{
	return p->outq != NULL ? evbuffer_get_length(p->outq) : 0;
}

/* ---- spawning (the pieces are child.c's) ---------------------------------------- */

static void stdioproc_pid_cb(evutil_socket_t, short, void *);
static void stdioproc_in_cb(evutil_socket_t, short, void *);
static void stdioproc_out_cb(evutil_socket_t, short, void *);
static void stdioproc_err_cb(evutil_socket_t, short, void *);
static void stdioproc_timer_cb(evutil_socket_t, short, void *);
static void stdioproc_idle_cb(evutil_socket_t, short, void *);
static void stdioproc_errwake_cb(evutil_socket_t, short, void *);
static void stdioproc_deliver_cb(evutil_socket_t, short, void *);

/* Frees everything a record holds (not its registry entry). */
static void
stdioproc_release(struct stdioproc *p)
{
	struct event **evs[] = { &p->ev_pid, &p->ev_in, &p->ev_out, &p->ev_err, &p->ev_timer,
	    &p->ev_idle, &p->ev_errwake, &p->ev_deliver };
	size_t i;

	for (i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (*evs[i] != NULL)
			event_free(*evs[i]);
	if (p->outq != NULL)
		evbuffer_free(p->outq);
	if (p->inbuf != NULL)
		evbuffer_free(p->inbuf);
	if (p->errbuf != NULL)
		evbuffer_free(p->errbuf);
	child_close_fd(&p->fd_in);
	child_close_fd(&p->fd_out);
	child_close_fd(&p->fd_err);
	child_close_fd(&p->pidfd);
	free(p->label);
	free(p);
}

/* Unregisters and frees; the caller holds stdioproc_mu when locked is 1. */
static void
stdioproc_free(struct stdioproc *p, int locked)
{
	if (!locked)
		pthread_mutex_lock(&stdioproc_mu);
	TAILQ_REMOVE(&stdioproc_all, p, link);
	if (!locked)
		pthread_mutex_unlock(&stdioproc_mu);
	stdioproc_release(p);
}

static int
stdioproc_events(struct stdioproc *p)
{
	struct timeval tv;

	p->ev_pid = event_new(p->base, p->pidfd, EV_READ, stdioproc_pid_cb, p);
	p->ev_in = event_new(p->base, p->fd_in, EV_WRITE | EV_PERSIST, stdioproc_in_cb, p);
	p->ev_out = event_new(p->base, p->fd_out, EV_READ | EV_PERSIST, stdioproc_out_cb, p);
	p->ev_err = event_new(p->base, p->fd_err, EV_READ | EV_PERSIST, stdioproc_err_cb, p);
	p->ev_timer = evtimer_new(p->base, stdioproc_timer_cb, p);
	p->ev_idle = evtimer_new(p->base, stdioproc_idle_cb, p);
	p->ev_errwake = evtimer_new(p->base, stdioproc_errwake_cb, p);
	p->ev_deliver = event_new(p->base, -1, 0, stdioproc_deliver_cb, p);
	p->outq = evbuffer_new();
	p->inbuf = evbuffer_new();
	p->errbuf = evbuffer_new();
	if (p->ev_pid == NULL || p->ev_in == NULL || p->ev_out == NULL || p->ev_err == NULL ||
	    p->ev_timer == NULL || p->ev_idle == NULL || p->ev_errwake == NULL ||
	    p->ev_deliver == NULL || p->outq == NULL || p->inbuf == NULL || p->errbuf == NULL)
		return -1;
	if (event_add(p->ev_pid, NULL) == -1 || event_add(p->ev_out, NULL) == -1 ||
	    event_add(p->ev_err, NULL) == -1)
		return -1;
	if (p->idle_ms > 0) {
		tv.tv_sec = p->idle_ms / 1000;
		tv.tv_usec = (p->idle_ms % 1000) * 1000;
		if (evtimer_add(p->ev_idle, &tv) == -1)
			return -1;
	}
	return 0;
}

struct stdioproc *
stdioproc_spawn(struct event_base *base, const struct stdioproc_conf *conf,
    const char *label, const struct stdioproc_cbs *cbs, char *err, size_t errlen)
{
	struct stdioproc *p = NULL;
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, errp[2] = { -1, -1 }, rc, e;
	char *prog = NULL, **envp = NULL, *owned[2] = { NULL, NULL };
	const char *path;
	siginfo_t si;

	if (conf == NULL || conf->argv == NULL || conf->argv[0] == NULL || conf->max_processes <= 0) {
		text_seterr(err, errlen, "no command configured");
		errno = EINVAL;
		return NULL;
	}
	if (atomic_fetch_add(&stdioproc_live, 1) >= conf->max_processes) {
		atomic_fetch_sub(&stdioproc_live, 1);
		text_seterr(err, errlen, "upstream.max_processes (%d) stdio servers are "
		    "running: refusing a new session", conf->max_processes);
		errno = EAGAIN;
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->label = strdup(label ? label :
	    "stdio")) == NULL)
		goto nomem;
	p->base = base;
	p->pidfd = p->fd_in = p->fd_out = p->fd_err = -1;
	p->max_msg = conf->max_message_bytes ? conf->max_message_bytes : 4u * 1024 * 1024;
	p->max_queued = conf->max_queued_bytes ? conf->max_queued_bytes : 8u * 1024 * 1024;
	p->term_ms = conf->term_ms > 0 ? conf->term_ms : 500;
	p->kill_ms = conf->kill_ms > 0 ? conf->kill_ms : 3000;
	p->idle_ms = conf->idle_timeout_ms > 0 ? conf->idle_timeout_ms : 0;
	if (cbs != NULL)
		p->cbs = *cbs;
	if ((envp = child_env(conf->env, owned, 2)) == NULL)
		goto nomem;
	path = child_env_get(envp, "PATH");
	if ((prog = child_resolve(conf->argv[0], path ? path : CHILD_DEFAULT_PATH)) ==
	    NULL) {
		e = errno;
		text_seterr(err, errlen, "%s: %s (PATH=%s)", conf->argv[0], strerror(e),
		    path ? path : CHILD_DEFAULT_PATH);
		goto fail_errno;
	}
	if (child_pipe(in) == -1 || child_pipe(out) == -1 || child_pipe(errp) == -1) {
		e = errno;
		text_seterr(err, errlen, "pipe: %s", strerror(e));
		goto fail_errno;
	}
	rc = child_exec(prog, conf->argv, envp, conf->cwd ? conf->cwd : "/", in[0], out[1],
	    errp[1], &p->pid);
	if (rc != 0) {
		e = rc;
		text_seterr(err, errlen, "cannot run %s: %s", prog, strerror(rc));
		goto fail_errno;
	}
	/* from here the child exists: every failure must kill and reap it */
	if ((p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0)) == -1) {
		e = errno;
		text_seterr(err, errlen, "pidfd_open: %s", strerror(e));
		kill(-p->pid, SIGKILL);
		waitid(P_PID, (id_t)p->pid, &si, WEXITED);
		goto fail_errno;
	}
	fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
	child_close_fd(&in[0]);
	child_close_fd(&out[1]);
	child_close_fd(&errp[1]);
	p->fd_in = in[1];
	p->fd_out = out[0];
	p->fd_err = errp[0];
	in[1] = out[0] = errp[0] = -1;
	if (fcntl(p->fd_in, F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(p->fd_out, F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(p->fd_err, F_SETFL, O_NONBLOCK) == -1 || stdioproc_events(p) == -1) {
		e = errno ? errno : ENOMEM;
		text_seterr(err, errlen, "cannot watch the server's pipes: %s", strerror(e));
		kill(-p->pid, SIGKILL);
		waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED);
		goto fail_errno;
	}
	event_base_gettimeofday_cached(base, &p->last);
	pthread_mutex_lock(&stdioproc_mu);
	TAILQ_INSERT_TAIL(&stdioproc_all, p, link);
	pthread_mutex_unlock(&stdioproc_mu);
	log_info("%s: started stdio server %s (pid %ld)", p->label, prog, (long)p->pid);
	free(prog);
	free(envp);
	free(owned[0]);
	free(owned[1]);
	return p;
nomem:
	e = ENOMEM;
	text_seterr(err, errlen, "out of memory");
fail_errno:
	child_close_fd(&in[0]);
	child_close_fd(&in[1]);
	child_close_fd(&out[0]);
	child_close_fd(&out[1]);
	child_close_fd(&errp[0]);
	child_close_fd(&errp[1]);
	if (p != NULL)
		stdioproc_release(p);   /* not in the registry yet */
	free(prog);
	free(envp);
	free(owned[0]);
	free(owned[1]);
	atomic_fetch_sub(&stdioproc_live, 1);
	errno = e;
	return NULL;
}

/* ---- ending --------------------------------------------------------------------- */

static void
stdioproc_ms(struct timeval *tv, int ms)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static void
stdioproc_maybe_free(struct stdioproc *p)
{
	if (p->closed && p->reaped && p->in_cb == 0)
		stdioproc_free(p, 0);
}

/* Starts the end: stdin closed now, SIGTERM after term_ms, SIGKILL after kill_ms. */
static void
stdioproc_begin_end(struct stdioproc *p, enum stdioproc_end reason)
{
	struct timeval tv;

	if (p->state != STDIOPROC_RUNNING || p->reaped)
		return;
	p->state = STDIOPROC_ENDING;
	p->reason = reason;
	p->stage = 0;
	event_del(p->ev_idle);
	event_del(p->ev_in);
	evbuffer_drain(p->outq, evbuffer_get_length(p->outq));
	child_close_fd(&p->fd_in);
	stdioproc_ms(&tv, p->term_ms);
	evtimer_add(p->ev_timer, &tv);
}

static void
stdioproc_report_exit(struct stdioproc *p)
{
	if (p->exit_reported)
		return;
	p->exit_reported = 1;
	if (p->closed || p->cbs.on_exit == NULL)
		return;
	p->in_cb++;
	p->cbs.on_exit(p, &p->exit, p->cbs.arg);
	p->in_cb--;
}

static void
stdioproc_stdout_done(struct stdioproc *p)
{
	p->out_eof = 1;
	event_del(p->ev_out);
	child_close_fd(&p->fd_out);
}

static void
stdioproc_pid_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;
	struct timeval tv;
	siginfo_t si;

	/* the leader is a zombie now: its pid (the group id) cannot be reused yet */
	kill(-p->pid, SIGKILL);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED) == -1)
		log_warn("%s: waitid: %s", p->label, strerror(errno));
	p->reaped = 1;
	atomic_fetch_sub(&stdioproc_live, 1);
	child_close_fd(&p->pidfd);
	event_del(p->ev_timer);
	event_del(p->ev_idle);
	p->exit.reason = p->state == STDIOPROC_ENDING ? p->reason : STDIOPROC_END_EXITED;
	p->exit.si_code = si.si_code;
	p->exit.status = si.si_status;
	if (si.si_code == CLD_EXITED)
		log_info("%s: stdio server (pid %ld) exited with status %d", p->label,
		    (long)p->pid, si.si_status);
	else
		log_info("%s: stdio server (pid %ld) ended by signal %d", p->label, (long)p->pid,
		    si.si_status);
	p->state = STDIOPROC_ENDING;
	event_del(p->ev_in);
	child_close_fd(&p->fd_in);
	if (p->closed)
		stdioproc_stdout_done(p);
	if (p->out_eof)
		stdioproc_report_exit(p);
	else {
		/* the last lines may still be in the pipe: wait a little for EOF */
		stdioproc_ms(&tv, p->kill_ms);
		evtimer_add(p->ev_timer, &tv);
	}
	stdioproc_maybe_free(p);
}

static void
stdioproc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;
	struct timeval tv;

	if (p->reaped) {
		/* waiting for stdout EOF after the exit: a paused consumer may still read */
		if (p->paused && !p->closed) {
			stdioproc_ms(&tv, p->kill_ms);
			evtimer_add(p->ev_timer, &tv);
			return;
		}
		stdioproc_stdout_done(p);
		stdioproc_report_exit(p);
		stdioproc_maybe_free(p);
		return;
	}
	if (p->state == STDIOPROC_RUNNING) {
		if (p->eof_grace) {
			log_warn("%s: stdio server closed its stdout but still runs: ending it",
			    p->label);
			stdioproc_begin_end(p, STDIOPROC_END_TRANSPORT);
		}
		return;
	}
	if (p->stage == 0) {
		log_info("%s: stdio server (pid %ld) still running %d ms after stdin closed: "
		    "SIGTERM", p->label, (long)p->pid, p->term_ms);
		kill(-p->pid, SIGTERM);
		p->stage = 1;
		stdioproc_ms(&tv, p->kill_ms);
		evtimer_add(p->ev_timer, &tv);
	} else if (p->stage == 1) {
		log_warn("%s: stdio server (pid %ld) ignored SIGTERM for %d ms: SIGKILL",
		    p->label, (long)p->pid, p->kill_ms);
		kill(-p->pid, SIGKILL);
		p->stage = 2;
	}
}

static void
stdioproc_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;
	struct timeval now, due, tv;

	if (p->state != STDIOPROC_RUNNING)
		return;
	event_base_gettimeofday_cached(p->base, &now);
	stdioproc_ms(&tv, p->idle_ms);
	timeradd(&p->last, &tv, &due);
	if (p->hold > 0 || timercmp(&now, &due, <)) {
		if (p->hold == 0)
			timersub(&due, &now, &tv);
		evtimer_add(p->ev_idle, &tv);
		return;
	}
	log_info("%s: stdio server idle for %d ms: ending it", p->label, p->idle_ms);
	stdioproc_begin_end(p, STDIOPROC_END_IDLE);
}

void
stdioproc_close(struct stdioproc *p)
{
	if (p == NULL || p->closed)
		return;
	p->closed = 1;
	p->paused = 0;
	if (!p->reaped) {
		stdioproc_begin_end(p, STDIOPROC_END_EXITED);
		/* keep draining stdout so the server is not stuck writing while it ends */
		if (p->fd_out >= 0)
			event_add(p->ev_out, NULL);
		return;
	}
	stdioproc_maybe_free(p);
}

/* ---- stdout --------------------------------------------------------------------- */

static void
stdioproc_error(struct stdioproc *p, const char *what)
{
	log_warn("%s: %s", p->label, what);
	if (p->closed || p->cbs.on_error == NULL)
		return;
	p->in_cb++;
	p->cbs.on_error(p, what, p->cbs.arg);
	p->in_cb--;
}

static void
stdioproc_line(struct stdioproc *p, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *msg;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0 || p->closed)
		return;
	msg = json_loadb(line, len, 0, &jerr);
	if (!json_is_object(msg) && !json_is_array(msg)) {
		json_decref(msg);
		stdioproc_error(p, "stdout line is not a JSON-RPC message: dropped");
		return;
	}
	event_base_gettimeofday_cached(p->base, &p->last);
	if (p->cbs.on_message != NULL) {
		p->in_cb++;
		p->cbs.on_message(p, msg, p->cbs.arg);
		p->in_cb--;
	}
	json_decref(msg);
}

/* Delivers complete lines while nobody paused us; an over-long line is discarded as
 * it arrives. */
static void
stdioproc_deliver(struct stdioproc *p)
{
	struct evbuffer_ptr eol;
	size_t eol_len, len;
	char msg[96];
	char *line;

	while (!p->paused || p->closed) {
		len = evbuffer_get_length(p->inbuf);
		if (len == 0)
			return;
		eol = evbuffer_search_eol(p->inbuf, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (p->discarding || p->closed) {
			if (eol.pos < 0) {
				evbuffer_drain(p->inbuf, len);
				return;
			}
			evbuffer_drain(p->inbuf, (size_t)eol.pos + eol_len);
			p->discarding = 0;
			continue;
		}
		if (eol.pos < 0) {
			if (len > p->max_msg) {
				p->discarding = 1;
				evbuffer_drain(p->inbuf, len);
				snprintf(msg, sizeof(msg), "stdout line over %zu bytes: discarded",
				    p->max_msg);
				stdioproc_error(p, msg);
				continue;
			}
			if (!p->out_eof)
				return;
			eol.pos = (ev_ssize_t)len;   /* EOF ends the last line */
			eol_len = 0;
		}
		if ((size_t)eol.pos > p->max_msg) {
			evbuffer_drain(p->inbuf, (size_t)eol.pos + eol_len);
			snprintf(msg, sizeof(msg), "stdout line over %zu bytes: discarded", p->max_msg);
			stdioproc_error(p, msg);
			continue;
		}
		line = (char *)evbuffer_pullup(p->inbuf, eol.pos + (ev_ssize_t)eol_len);
		if (line == NULL) {
			stdioproc_error(p, "out of memory reading stdout");
			return;
		}
		stdioproc_line(p, line, (size_t)eol.pos);
		evbuffer_drain(p->inbuf, (size_t)eol.pos + eol_len);
	}
}

static void
stdioproc_out_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;
	int n;

	n = evbuffer_read(p->inbuf, p->fd_out, STDIOPROC_READ_CHUNK);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		stdioproc_stdout_done(p);
		p->in_cb++;
		stdioproc_deliver(p);
		p->in_cb--;
		if (!p->reaped && p->state == STDIOPROC_RUNNING) {
			/* usually the server is exiting: let the pidfd tell, unless it lingers */
			struct timeval tv;

			p->eof_grace = 1;
			stdioproc_ms(&tv, p->term_ms);
			evtimer_add(p->ev_timer, &tv);
		} else if (p->reaped) {
			event_del(p->ev_timer);
			stdioproc_report_exit(p);
		}
		stdioproc_maybe_free(p);
		return;
	}
	if (n > 0) {
		p->in_cb++;
		stdioproc_deliver(p);
		p->in_cb--;
	}
	stdioproc_maybe_free(p);
}

static void
stdioproc_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;

	p->in_cb++;
	stdioproc_deliver(p);
	p->in_cb--;
	stdioproc_maybe_free(p);
}

void
stdioproc_pause(struct stdioproc *p, int paused)
{
	if (p->closed || p->paused == !!paused)
		return;
	p->paused = !!paused;
	if (p->paused) {
		event_del(p->ev_out);
		return;
	}
	if (p->fd_out >= 0)
		event_add(p->ev_out, NULL);
	event_active(p->ev_deliver, 0, 0);
}

/* ---- stdin ---------------------------------------------------------------------- */

static void
stdioproc_in_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;

	if (evbuffer_write(p->outq, p->fd_in) < 0 && errno != EAGAIN && errno != EINTR) {
		log_warn("%s: writing to the stdio server: %s", p->label, strerror(errno));
		event_del(p->ev_in);
		evbuffer_drain(p->outq, evbuffer_get_length(p->outq));
		stdioproc_begin_end(p, STDIOPROC_END_TRANSPORT);
		return;
	}
	if (evbuffer_get_length(p->outq) == 0)
		event_del(p->ev_in);
}

int
stdioproc_send_raw(struct stdioproc *p, const char *msg, size_t len)
{
	if (memchr(msg, '\n', len) != NULL) {
		errno = EINVAL;
		return -1;
	}
	if (p->closed || p->fd_in < 0 || p->state != STDIOPROC_RUNNING) {
		errno = EPIPE;
		return -1;
	}
	if (evbuffer_get_length(p->outq) + len + 1 > p->max_queued) {
		errno = ENOBUFS;
		return -1;
	}
	if (evbuffer_add(p->outq, msg, len) == -1 || evbuffer_add(p->outq, "\n", 1) == -1) {
		errno = ENOMEM;
		return -1;
	}
	event_base_gettimeofday_cached(p->base, &p->last);
	/* written from the loop, never from inside this call: a failure must not end the
	 * process under the caller's feet */
	if (event_add(p->ev_in, NULL) == -1) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

int
stdioproc_send(struct stdioproc *p, json_t *msg)
{
	char *s;
	int rc, e;

	if ((s = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rc = stdioproc_send_raw(p, s, strlen(s));
	e = errno;
	free(s);
	errno = e;
	return rc;
}

void
stdioproc_touch(struct stdioproc *p)
{
	event_base_gettimeofday_cached(p->base, &p->last);
}

void
stdioproc_hold(struct stdioproc *p, int delta)
{
	p->hold += delta;
	if (p->hold < 0)
		p->hold = 0;
	if (p->hold == 0)
		stdioproc_touch(p);
}

/* ---- stderr --------------------------------------------------------------------- */

static void
stdioproc_err_line(struct stdioproc *p, char *s, size_t len, int cut)
{
	size_t i;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	if (len == 0)
		return;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
	log_info("%s: stderr: %.*s%s", p->label, (int)len, s, cut ? " [cut]" : "");
}

/* 1 when another stderr line may be logged this second; else reading pauses. */
static int
stdioproc_err_budget(struct stdioproc *p)
{
	struct timeval now, tv;

	event_base_gettimeofday_cached(p->base, &now);
	if (now.tv_sec != p->err_sec) {
		p->err_sec = now.tv_sec;
		p->err_lines = 0;
	}
	if (p->err_lines < STDIOPROC_ERR_LINES_PER_S) {
		p->err_lines++;
		return 1;
	}
	/* held until the next second starts */
	event_del(p->ev_err);
	tv.tv_sec = 0;
	tv.tv_usec = 1000000 - now.tv_usec;
	evtimer_add(p->ev_errwake, &tv);
	return 0;
}

static void
stdioproc_err_drain(struct stdioproc *p, int eof)
{
	struct evbuffer_ptr eol;
	size_t eol_len, len, take;
	char *s;

	for (;;) {
		len = evbuffer_get_length(p->errbuf);
		if (len == 0)
			return;
		eol = evbuffer_search_eol(p->errbuf, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (p->err_discarding) {
			if (eol.pos < 0) {
				evbuffer_drain(p->errbuf, len);
				return;
			}
			evbuffer_drain(p->errbuf, (size_t)eol.pos + eol_len);
			p->err_discarding = 0;
			continue;
		}
		if (eol.pos < 0 && len < STDIOPROC_ERR_LINE && !eof)
			return;
		if (!stdioproc_err_budget(p))
			return;
		if (eol.pos >= 0 && (size_t)eol.pos <= STDIOPROC_ERR_LINE) {
			take = (size_t)eol.pos;
			if ((s = (char *)evbuffer_pullup(p->errbuf, (ev_ssize_t)(take +
			    eol_len))) == NULL)
				return;
			stdioproc_err_line(p, s, take, 0);
			evbuffer_drain(p->errbuf, take + eol_len);
			continue;
		}
		take = len < STDIOPROC_ERR_LINE ? len : STDIOPROC_ERR_LINE;
		if ((s = (char *)evbuffer_pullup(p->errbuf, (ev_ssize_t)take)) == NULL)
			return;
		stdioproc_err_line(p, s, take, take == STDIOPROC_ERR_LINE);
		evbuffer_drain(p->errbuf, take);
		p->err_discarding = take == STDIOPROC_ERR_LINE;
	}
}

static void
stdioproc_err_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;
	int n;

	n = evbuffer_read(p->errbuf, p->fd_err, 4096);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		event_del(p->ev_err);
		child_close_fd(&p->fd_err);
		stdioproc_err_drain(p, 1);
		return;
	}
	stdioproc_err_drain(p, 0);
}

static void
stdioproc_errwake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdioproc *p = arg;

	stdioproc_err_drain(p, p->fd_err < 0);
	if (p->fd_err >= 0 && !evtimer_pending(p->ev_errwake, NULL))
		event_add(p->ev_err, NULL);
}

/* ---- shutdown ------------------------------------------------------------------- */

static void
stdioproc_reap_now(struct stdioproc *p)
{
	siginfo_t si;

	kill(-p->pid, SIGKILL);
	if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED) == -1)
		log_warn("%s: waitid: %s", p->label, strerror(errno));
	p->reaped = 1;
	atomic_fetch_sub(&stdioproc_live, 1);
	child_close_fd(&p->pidfd);
}

int
stdioproc_shutdown(int grace_ms)
{
	struct stdioproc *p;
	struct pollfd *pfd;
	struct stdioproc **who;
	struct timespec start, now;
	size_t n = 0, i, left;
	int killed = 0, waited;

	pthread_mutex_lock(&stdioproc_mu);
	TAILQ_FOREACH(p, &stdioproc_all, link) {
		child_close_fd(&p->fd_in);
		if (!p->reaped) {
			kill(-p->pid, SIGTERM);
			n++;
		}
	}
	pfd = calloc(n + 1, sizeof(*pfd));
	who = calloc(n + 1, sizeof(*who));
	clock_gettime(CLOCK_MONOTONIC, &start);
	left = n;
	while (left > 0 && pfd != NULL && who != NULL) {
		i = 0;
		TAILQ_FOREACH(p, &stdioproc_all, link)
			if (!p->reaped) {
				pfd[i].fd = p->pidfd;
				pfd[i].events = POLLIN;
				pfd[i].revents = 0;
				who[i++] = p;
			}
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (int)((now.tv_sec - start.tv_sec) * 1000 +
		    (now.tv_nsec - start.tv_nsec) / 1000000);
		if (waited >= grace_ms || poll(pfd, i, grace_ms - waited) <= 0)
			break;
		for (left = i; i-- > 0;)
			if (pfd[i].revents != 0) {
				stdioproc_reap_now(who[i]);
				left--;
			}
	}
	free(pfd);
	free(who);
	TAILQ_FOREACH(p, &stdioproc_all, link)
		if (!p->reaped) {
			log_warn("%s: stdio server (pid %ld) still running after %d ms: SIGKILL",
			    p->label, (long)p->pid, grace_ms);
			stdioproc_reap_now(p);
			killed++;
		}
	while ((p = TAILQ_FIRST(&stdioproc_all)) != NULL)
		stdioproc_free(p, 1);
	pthread_mutex_unlock(&stdioproc_mu);
	return killed;
}
