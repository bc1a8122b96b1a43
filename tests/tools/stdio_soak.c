/* stdio_soak: runs many stdio MCP sessions through stdioproc.c, a few at a time, and
 * checks that nothing is left behind: no child, no zombie, no member of any process
 * group it created (no orphan), no descriptor; prints processes, descriptors and RSS
 * before and after.
 *
 * Sessions cycle through six kinds of server:
 *   filesystem  @modelcontextprotocol/server-filesystem: initialize, tools/call
 *   everything  @modelcontextprotocol/server-everything: initialize, tools/list
 *   echo        sh read/printf loop: initialize round trip
 *   flood       yes(1) printing JSON-RPC notifications: 100 read, then paused, closed
 *   noterm      sh ignoring SIGTERM (and its sleep children): needs SIGKILL
 *   exit        a program that exits at once
 * usage: stdio_soak --sessions N [--concurrency C] [--js DIR] [--node-every K]
 *   --js DIR         tests/js/node_modules/@modelcontextprotocol (default from
 *                    CERTGATE_SOURCE_DIR); without it the node kinds are skipped
 * Exit 0 when every session completed and nothing leaked. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stdioproc.h"

enum kind { K_FS, K_EVERYTHING, K_ECHO, K_FLOOD, K_NOTERM, K_EXIT, K_N };
static const char *const kind_names[] = { "filesystem", "everything", "echo", "flood",
	"noterm", "exit" };

struct slot {
	int used;
	enum kind kind;
	struct stdioproc *p;
	int phase, nmsg;
	double t0;
	long idx;
};

static struct event_base *base;
static char fs_prog[1200], ev_prog[1200], fs_dir[] = "/tmp/stdio_soak_XXXXXX";
static long completed, failed, refused_cap;
static long done_by_kind[K_N];
static double last_refusal;
static pid_t *groups;
static size_t ngroups;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
send_str(struct stdioproc *p, const char *s)
{
	if (stdioproc_send_raw(p, s, strlen(s)) == -1)
		fprintf(stderr, "send: %s\n", strerror(errno));
}

#define INIT "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{" \
	"\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":" \
	"\"soak\",\"version\":\"1\"}}}"

static void
finish(struct slot *s, int ok)
{
	if (s->p != NULL)
		stdioproc_close(s->p);
	s->p = NULL;
	s->used = 0;
	if (ok) {
		completed++;
		done_by_kind[s->kind]++;
	} else {
		failed++;
		fprintf(stderr, "session %ld (%s) failed in phase %d\n", s->idx,
		    kind_names[s->kind], s->phase);
	}
}

static void
on_message(struct stdioproc *p, json_t *msg, void *arg)
{
	struct slot *s = arg;
	json_int_t id = json_integer_value(json_object_get(msg, "id"));
	int is_resp = json_object_get(msg, "method") == NULL;

	s->nmsg++;
	switch (s->kind) {
	case K_FS:
	case K_EVERYTHING:
		if (s->phase == 0 && is_resp && id == 1) {
			if (!json_is_object(json_object_get(msg, "result"))) {
				finish(s, 0);
				return;
			}
			send_str(p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
			send_str(p, s->kind == K_FS ? "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
			    "\"tools/call\",\"params\":{\"name\":\"list_allowed_directories\","
			    "\"arguments\":{}}}" : "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
			    "\"tools/list\"}");
			s->phase = 1;
		} else if (s->phase == 1 && is_resp && id == 2)
			finish(s, json_is_object(json_object_get(msg, "result")));
		break;
	case K_ECHO:
		if (id == 1)
			finish(s, 1);
		break;
	case K_FLOOD:
		if (s->nmsg == 100) {
			stdioproc_pause(p, 1);
			finish(s, 1);
		}
		break;
	case K_NOTERM:
		if (json_is_string(json_object_get(msg, "method")))
			finish(s, 1);
		break;
	default:
		break;
	}
}

static void
on_exit_cb(struct stdioproc *p, const struct stdioproc_exit *e, void *arg)
{
	struct slot *s = arg;

	finish(s, s->kind == K_EXIT && e->si_code == CLD_EXITED && e->status == 0);
}

static int
start(struct slot *s, long idx, enum kind k, int max)
{
	char *fs[] = { "node", fs_prog, fs_dir, NULL };
	char *ev[] = { "node", ev_prog, "stdio", NULL };
	char *echo[] = { "sh", "-c", "while IFS= read -r l; do printf '%s\\n' \"$l\"; done",
	    NULL };
	char *flood[] = { "yes", "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/flood\"}", NULL };
	char *noterm[] = { "sh", "-c", "trap '' TERM; echo '{\"jsonrpc\":\"2.0\",\"method\":"
	    "\"ready\"}'; while :; do sleep 1; done", NULL };
	char *ex[] = { "true", NULL };
	char *const *argv[] = { fs, ev, echo, flood, noterm, ex };
	struct stdioproc_conf c = { .max_processes = max, .term_ms = 200, .kill_ms = 500 };
	struct stdioproc_cbs cbs = { on_message, NULL, on_exit_cb, s };
	char err[256], label[32];
	pid_t *ng;

	c.argv = argv[k];
	snprintf(label, sizeof(label), "soak-%ld", idx);
	memset(s, 0, sizeof(*s));
	s->kind = k;
	s->idx = idx;
	s->t0 = now_s();
	s->used = 1;
	if ((s->p = stdioproc_spawn(base, &c, label, &cbs, err, sizeof(err))) == NULL) {
		s->used = 0;
		if (errno == EAGAIN) {
			refused_cap++;
			last_refusal = now_s();
			return 0;
		}
		fprintf(stderr, "spawn %s: %s\n", kind_names[k], err);
		failed++;
		return 1;
	}
	if ((ng = reallocarray(groups, ngroups + 1, sizeof(*ng))) != NULL) {
		groups = ng;
		groups[ngroups++] = stdioproc_pid(s->p);
	}
	if (k == K_ECHO)
		send_str(s->p, INIT);
	else if (k == K_FS || k == K_EVERYTHING)
		send_str(s->p, INIT);
	return 1;
}

static int
count_fds(void)
{
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	return n - 1;
}

static long
rss_kib(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f != NULL)
		fclose(f);
	return kb;
}

/* Our children (ppid == us), zombies among them, and processes anywhere in a group we
 * created (orphans once the session is over). */
static void
count_procs(int *children, int *zombies, int *in_groups)
{
	struct dirent *de;
	char path[300], buf[1024], *s, state;
	long ppid, pgrp;
	size_t i;
	DIR *d = opendir("/proc");
	FILE *f;

	*children = *zombies = *in_groups = 0;
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL && (s = strrchr(buf, ')')) != NULL &&
		    sscanf(s + 2, "%c %ld %ld", &state, &ppid, &pgrp) == 3) {
			if (ppid == getpid()) {
				(*children)++;
				*zombies += state == 'Z';
			}
			for (i = 0; i < ngroups; i++)
				if (pgrp == groups[i]) {
					(*in_groups)++;
					break;
				}
		}
		fclose(f);
	}
	if (d != NULL)
		closedir(d);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

int
main(int argc, char **argv)
{
	long sessions = 0, next = 0, i;
	int conc = 4, node_every = 1, c0, z0, g0, c1, z1, g1, fd0, fd1, active, st;
	const char *js = NULL, *src = getenv("CERTGATE_SOURCE_DIR");
	char jsbuf[1100];
	struct slot *slots;
	struct event *tick;
	struct timeval tv = { 0, 100000 };
	struct stat sb;
	long rss0, rss1;
	double t0, t1;
	int have_node;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sessions") == 0 && i + 1 < argc)
			sessions = atol(argv[++i]);
		else if (strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc)
			conc = atoi(argv[++i]);
		else if (strcmp(argv[i], "--js") == 0 && i + 1 < argc)
			js = argv[++i];
		else if (strcmp(argv[i], "--node-every") == 0 && i + 1 < argc)
			node_every = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: stdio_soak --sessions N [--concurrency C] "
			    "[--js DIR] [--node-every K]\n");
			return 2;
		}
	}
	if (sessions <= 0 || conc <= 0 || node_every <= 0) {
		fprintf(stderr, "stdio_soak: --sessions N (> 0) is required\n");
		return 2;
	}
	if (js == NULL && src != NULL) {
		snprintf(jsbuf, sizeof(jsbuf), "%s/tests/js/node_modules/@modelcontextprotocol", src);
		js = jsbuf;
	}
	have_node = js != NULL && stat(js, &sb) == 0;
	snprintf(fs_prog, sizeof(fs_prog), "%s/server-filesystem/dist/index.js", js ? js : ".");
	snprintf(ev_prog, sizeof(ev_prog), "%s/server-everything/dist/index.js", js ? js : ".");
	if (mkdtemp(fs_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	setenv("CERTGATE_LOG_LEVEL", "warn", 0);
	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);
	/* two slots more than max_processes allows, so that the cap is exercised */
	slots = calloc((size_t)conc + 2, sizeof(*slots));

	count_procs(&c0, &z0, &g0);
	fd0 = count_fds();
	rss0 = rss_kib();
	t0 = now_s();
	for (;;) {
		active = 0;
		for (i = 0; i < conc + 2; i++) {
			/* after a refusal, wait a moment for the reaping instead of spinning */
			if (!slots[i].used && next < sessions && now_s() - last_refusal > 0.05) {
				enum kind k = (enum kind)(next % K_N);

				/* node servers are the slow part: optionally only every Kth round */
				if ((k == K_FS || k == K_EVERYTHING) && (!have_node ||
				    (next / K_N) % node_every != 0))
					k = K_ECHO;
				if (start(&slots[i], next, k, conc))
					next++;
			}
			if (slots[i].used && now_s() - slots[i].t0 > 60) {
				slots[i].phase = 99;
				finish(&slots[i], 0);
			}
			active += slots[i].used;
		}
		if (next >= sessions && active == 0)
			break;
		event_base_loop(base, EVLOOP_ONCE);
	}
	/* the last closes are still ending: wait for the reaping */
	while (stdioproc_count() > 0 && now_s() - t0 < 3600)
		event_base_loop(base, EVLOOP_ONCE);
	t1 = now_s();
	/* orphans that init reaps (killed grandchildren) may take a moment */
	for (i = 0; i < 50; i++) {
		count_procs(&c1, &z1, &g1);
		if (g1 == 0)
			break;
		usleep(100000);
	}
	fd1 = count_fds();
	rss1 = rss_kib();
	errno = 0;
	st = waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
	printf("stdio_soak: %ld sessions in %.1f s (concurrency %d): %ld completed, %ld failed, "
	    "%ld spawns refused by max_processes=%d and retried\n", sessions, t1 - t0, conc,
	    completed, failed, refused_cap, conc);
	printf("stdio_soak: by kind:");
	for (i = 0; i < K_N; i++)
		printf(" %s %ld", kind_names[i], done_by_kind[i]);
	printf("\n");
	printf("stdio_soak: children %d -> %d (zombies %d -> %d), processes in the %zu "
	    "groups created %d -> %d, live %d, nothing to wait for: %s\n", c0, c1, z0, z1,
	    ngroups, g0, g1, stdioproc_count(), st ? "yes" : "NO");
	printf("stdio_soak: descriptors %d -> %d, RSS %ld -> %ld KiB\n", fd0, fd1, rss0, rss1);
	event_free(tick);
	event_base_free(base);
	free(slots);
	free(groups);
	rmdir(fs_dir);
	return failed == 0 && completed == sessions && c1 == 0 && g1 == 0 && fd1 == fd0 && st ?
	    0 : 1;
}
