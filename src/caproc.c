/* Spawning and supervising the CA service (caproc.h). */
#include "caproc.h"

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "caclient.h"
#include "caproto.h"
#include "config.h"
#include "log.h"

#define CAPROC_WATCH_FD		3
#define CAPROC_BACKOFF_MAX	30
#define CAPROC_STOP_MS		5000

extern char **environ;

struct caproc {
	struct event_base *base;
	const struct config *cfg;
	const char *exe;
	int external;
	pid_t pid;
	int watch_wr;            /* write end of the child's watch pipe, -1 */
	struct event *tick;      /* 1 s: reap, restart */
	time_t started;          /* when the current child was started */
	time_t restart_at;       /* 0: no restart pending */
	int backoff;
	unsigned starts;
};

static int
caproc_spawn(struct caproc *p, char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	char *argv[8];
	int pipefd[2] = { -1, -1 }, rc = -1, e;

	if (pipe2(pipefd, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	argv[0] = "certgate";
	argv[1] = "ca";
	argv[2] = "serve";
	argv[3] = "-c";
	argv[4] = p->cfg->path;
	argv[5] = "--watch-fd";
	argv[6] = "3";
	argv[7] = NULL;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	/* dup2 onto 3 clears close-on-exec there; everything else of ours is O_CLOEXEC or
	 * closed by the child itself at start-up. stdout goes to stderr with the logs. */
	if ((e = posix_spawn_file_actions_adddup2(&fa, pipefd[0], CAPROC_WATCH_FD)) != 0 ||
	    (e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, 2, 1)) != 0 ||
	    (e = posix_spawnattr_setsigmask(&at, &none)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&at, &all)) != 0 ||
	    (e = posix_spawnattr_setpgroup(&at, 0)) != 0 ||
	    (e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
	    POSIX_SPAWN_SETPGROUP)) != 0) {
		snprintf(err, errlen, "posix_spawn set-up: %s", strerror(e));
		goto out;
	}
	if ((e = posix_spawn(&p->pid, p->exe, &fa, &at, argv, environ)) != 0) {
		p->pid = 0;
		snprintf(err, errlen, "cannot start the CA service (%s ca serve): %s", p->exe,
		    strerror(e));
		goto out;
	}
	p->watch_wr = pipefd[1];
	pipefd[1] = -1;
	p->started = time(NULL);
	p->starts++;
	log_info("started the CA service (pid %ld) on %s", (long)p->pid, p->cfg->ca.socket);
	rc = 0;
out:
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (pipefd[0] != -1)
		close(pipefd[0]);
	if (pipefd[1] != -1)
		close(pipefd[1]);
	return rc;
}

/* Reaps the child if it ended; returns 1 when it did. */
static int
caproc_reap(struct caproc *p, int block)
{
	int st;
	pid_t r;

	if (p->pid <= 0)
		return 0;
	do
		r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
	while (r == -1 && errno == EINTR);
	if (r == 0)
		return 0;
	if (r == p->pid) {
		if (WIFSIGNALED(st))
			log_warn("the CA service (pid %ld) was killed by signal %d", (long)p->pid,
			    WTERMSIG(st));
		else
			log_warn("the CA service (pid %ld) exited with status %d", (long)p->pid,
			    WEXITSTATUS(st));
	}
	p->pid = 0;
	if (p->watch_wr != -1) {
		close(p->watch_wr);
		p->watch_wr = -1;
	}
	return 1;
}

static void
caproc_tick(evutil_socket_t fd, short what, void *arg)
{
	struct caproc *p = arg;
	char err[512];
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	if (p->pid > 0 && caproc_reap(p, 0)) {
		/* A child that ran a while gets a fresh back-off. */
		if (now - p->started > 60)
			p->backoff = 0;
		p->backoff = p->backoff ? p->backoff * 2 : 1;
		if (p->backoff > CAPROC_BACKOFF_MAX)
			p->backoff = CAPROC_BACKOFF_MAX;
		p->restart_at = now + p->backoff;
		log_warn("restarting the CA service in %d s", p->backoff);
	}
	if (p->pid == 0 && p->restart_at != 0 && now >= p->restart_at) {
		p->restart_at = 0;
		if (caproc_spawn(p, err, sizeof(err)) == -1) {
			log_err("%s", err);
			p->backoff = p->backoff ? p->backoff * 2 : 1;
			if (p->backoff > CAPROC_BACKOFF_MAX)
				p->backoff = CAPROC_BACKOFF_MAX;
			p->restart_at = now + p->backoff;
		}
	}
}

struct caproc *
caproc_start(struct event_base *base, const struct config *cfg, const char *exe, char *err,
    size_t errlen)
{
	struct timeval sec = { 1, 0 };
	struct caproc *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->base = base;
	p->cfg = cfg;
	p->exe = exe ? exe : "/proc/self/exe";
	p->watch_wr = -1;
	p->external = cfg->ca.service_external;
	if (p->external) {
		log_info("using the CA service the operator runs on %s", cfg->ca.socket);
		return p;
	}
	if (cfg->path == NULL) {
		snprintf(err, errlen, "the configuration has no file path to give the CA service");
		goto fail;
	}
	if ((p->tick = event_new(base, -1, EV_PERSIST, caproc_tick, p)) == NULL ||
	    event_add(p->tick, &sec) == -1) {
		snprintf(err, errlen, "cannot add the CA service timer");
		goto fail;
	}
	if (caproc_spawn(p, err, errlen) == -1)
		goto fail;
	return p;
fail:
	if (p->tick)
		event_free(p->tick);
	free(p);
	return NULL;
}

int
caproc_wait_ready(struct caproc *p, int timeout_ms, char *err, size_t errlen)
{
	struct caproto_req req = { .op = CAPROTO_PING };
	struct caproto_reply rep;
	struct timespec ts, pause = { 0, 50 * 1000000 };
	long long deadline, now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
	for (;;) {
		if (caclient_call(p->cfg->ca.socket, &req, &rep, 2000, err, errlen) == 0) {
			caproto_reply_clear(&rep);
			if (rep.err == CAPROTO_OK)
				return 0;
			snprintf(err, errlen, "the CA service refused a ping: %s", rep.message);
			return -1;
		}
		if (!p->external && p->pid > 0 && caproc_reap(p, 0)) {
			snprintf(err, errlen, "the CA service exited during start-up (see its log above)");
			p->restart_at = time(NULL) + 1;
			return -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		if (now >= deadline)
			return -1;
		nanosleep(&pause, NULL);
	}
}

const char *
caproc_socket(const struct caproc *p)
{
	return p->cfg->ca.socket;
}

pid_t
caproc_pid(const struct caproc *p)
{
	return p->pid;
}

unsigned
caproc_starts(const struct caproc *p)
{
	return p->starts;
}

void
caproc_stop(struct caproc *p)
{
	struct timespec pause = { 0, 20 * 1000000 };
	int waited = 0;

	if (p == NULL)
		return;
	if (p->tick)
		event_free(p->tick);
	if (p->pid > 0) {
		/* End of file on the watch pipe stops it; SIGTERM in case it is not reading. */
		if (p->watch_wr != -1) {
			close(p->watch_wr);
			p->watch_wr = -1;
		}
		(void)kill(p->pid, SIGTERM);
		while (!caproc_reap(p, 0) && waited < CAPROC_STOP_MS) {
			nanosleep(&pause, NULL);
			waited += 20;
		}
		if (p->pid > 0) {
			log_warn("the CA service (pid %ld) did not stop in %d ms: killing it",
			    (long)p->pid, CAPROC_STOP_MS);
			(void)kill(p->pid, SIGKILL);
			(void)caproc_reap(p, 1);
		}
	}
	if (p->watch_wr != -1)
		close(p->watch_wr);
	free(p);
}
