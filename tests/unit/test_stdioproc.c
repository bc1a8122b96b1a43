/* stdioproc.c against real programs: sh and coreutils for the process-level cases
 * (echo, exit at once, ignoring SIGTERM, flooding stdout, flooding stderr, long lines,
 * a server that never reads), and @modelcontextprotocol/server-everything and
 * server-filesystem over stdio for MCP round trips. Checks the sandbox through /proc
 * (environment, descriptors, working directory, process group, signal state), and
 * that no child, zombie or descriptor is left after each case. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "stdioproc.h"

static struct event_base *base;

struct rec {
	int nmsg, nerr, exited;
	json_t *msgs;              /* every message received (small cases only) */
	int keep;
	struct stdioproc_exit ex;
	int pause_at;              /* pause when nmsg reaches it */
	int close_on_msg, close_on_exit;
	struct stdioproc *p;
	char lasterr[128];
};

static void
rec_msg(struct stdioproc *p, json_t *msg, void *arg)
{
	struct rec *r = arg;

	r->nmsg++;
	if (r->keep)
		json_array_append(r->msgs, msg);
	if (r->pause_at > 0 && r->nmsg == r->pause_at)
		stdioproc_pause(p, 1);
	if (r->close_on_msg) {
		stdioproc_close(p);
		r->p = NULL;
	}
}

static void
rec_err(struct stdioproc *p, const char *what, void *arg)
{
	struct rec *r = arg;

	r->nerr++;
	snprintf(r->lasterr, sizeof(r->lasterr), "%s", what);
}

static void
rec_exit(struct stdioproc *p, const struct stdioproc_exit *e, void *arg)
{
	struct rec *r = arg;

	r->exited++;
	r->ex = *e;
	if (r->close_on_exit) {
		stdioproc_close(p);
		r->p = NULL;
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until *flag >= want (or, with flag NULL, for secs). 1 when reached. */
static int
run_until(const int *flag, int want, double secs)
{
	struct timeval tv = { 0, 50000 };
	struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	double end = now_s() + secs;
	int ok = 0;

	event_add(tick, &tv);
	while (now_s() < end) {
		if (flag != NULL && *flag >= want) {
			ok = 1;
			break;
		}
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(tick);
	return flag == NULL || ok;
}

static int zero;

/* Waits until every process is reaped; checks no child of ours is left at all. */
static void
expect_clean(const char *what)
{
	double end = now_s() + 20;
	int st;

	while (stdioproc_count() > 0 && now_s() < end)
		run_until(NULL, 0, 0.05);
	if (stdioproc_count() != 0)
		fprintf(stderr, "%s: %d processes left\n", what, stdioproc_count());
	CHECK(stdioproc_count() == 0);
	/* no zombie: nothing to wait for */
	errno = 0;
	CHECK(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD);
}

static struct stdioproc *
spawn(char *const *argv, struct stdioproc_conf *extra, struct rec *r, const char *label)
{
	struct stdioproc_conf c = { .argv = argv, .max_processes = 64 };
	struct stdioproc_cbs cbs = { rec_msg, rec_err, rec_exit, r };
	struct stdioproc *p;
	char err[256];

	if (extra != NULL) {
		c = *extra;
		c.argv = argv;
		if (c.max_processes == 0)
			c.max_processes = 64;
	}
	p = stdioproc_spawn(base, &c, label, &cbs, err, sizeof(err));
	if (p == NULL)
		fprintf(stderr, "spawn %s: %s\n", argv[0], err);
	if (r != NULL)
		r->p = p;
	return p;
}

static int
count_fds(pid_t pid, char *list, size_t len)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	if (list != NULL)
		list[0] = '\0';
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (list != NULL && strlen(list) + strlen(de->d_name) + 2 < len) {
			strcat(list, de->d_name);
			strcat(list, " ");
		}
		n++;
	}
	closedir(d);
	/* our own count includes the directory handle */
	return pid == getpid() ? n - 1 : n;
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

/* ---- cases ------------------------------------------------------------------------ */

static void
test_echo(void)
{
	char *argv[] = { "sh", "-c", "while IFS= read -r l; do printf '%s\\n' \"$l\"; done", NULL };
	struct rec r = { .keep = 1, .msgs = json_array() };
	struct stdioproc *p = spawn(argv, NULL, &r, "echo");
	json_t *m = json_pack("{s:s,s:i,s:s}", "jsonrpc", "2.0", "id", 1, "method", "ping");

	CHECK(p != NULL);
	if (p == NULL)
		goto done;
	CHECK(stdioproc_count() == 1);
	CHECK(stdioproc_pid(p) > 0);
	CHECK_STR(stdioproc_label(p), "echo");
	CHECK(stdioproc_send(p, m) == 0);
	CHECK(stdioproc_send_raw(p, "{\"a\":\n1}", 8) == -1 && errno == EINVAL);
	CHECK(stdioproc_send_raw(p, "[{\"jsonrpc\":\"2.0\",\"method\":\"b\"}]", 32) == 0);
	CHECK(run_until(&r.nmsg, 2, 20));
	CHECK(json_equal(json_array_get(r.msgs, 0), m));
	CHECK(json_is_array(json_array_get(r.msgs, 1)));
	CHECK(r.nerr == 0 && r.exited == 0);
	stdioproc_close(p);
done:
	json_decref(m);
	json_decref(r.msgs);
	expect_clean("echo");
}

/* The sandbox as seen in /proc while the child runs: environment, descriptors,
 * working directory, process group, signal mask and dispositions. */
static void
test_sandbox(void)
{
	char *argv[] = { "cat", NULL };
	char *env[] = { "FOO=bar baz", "HOME=/nonexistent-home", NULL };
	struct stdioproc_conf c = { .env = env };
	struct rec r = { 0 };
	struct stdioproc *p;
	char path[64], buf[8192], fds[256], link[PATH_MAX], want[4200];
	const char *s, *gwpath = getenv("PATH");
	ssize_t n;
	long pgrp = 0;
	int fd, nvars = 0;

	setenv("CERTGATE_SECRET_PIN", "1234", 1);
	p = spawn(argv, &c, &r, "sandbox");
	unsetenv("CERTGATE_SECRET_PIN");
	CHECK(p != NULL);
	if (p == NULL)
		return;
	snprintf(path, sizeof(path), "/proc/%ld/environ", (long)stdioproc_pid(p));
	/* wait until cat has exec'd (its environ is the new one) */
	run_until(NULL, 0, 0.3);
	CHECK((fd = open(path, O_RDONLY)) >= 0);
	n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	CHECK(n > 0);
	if (n > 0) {
		buf[n] = '\0';
		snprintf(want, sizeof(want), "PATH=%s", gwpath ? gwpath : "/usr/local/bin:/usr/bin:/bin");
		for (s = buf; s < buf + n; s += strlen(s) + 1) {
			nvars++;
			if (strcmp(s, want) != 0 && strcmp(s, "FOO=bar baz") != 0 &&
			    strcmp(s, "HOME=/nonexistent-home") != 0) {
				fprintf(stderr, "sandbox: unexpected variable %s\n", s);
				CHECK(0);
			}
		}
		CHECK(nvars == 3);
	}
	CHECK(count_fds(stdioproc_pid(p), fds, sizeof(fds)) == 3);
	CHECK_STR(fds, "0 1 2 ");
	snprintf(path, sizeof(path), "/proc/%ld/cwd", (long)stdioproc_pid(p));
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n == 1 && link[0] == '/');
	CHECK(getpgid(stdioproc_pid(p)) == stdioproc_pid(p));
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)stdioproc_pid(p));
	{
		FILE *f = fopen(path, "r");

		if (f != NULL && fgets(buf, sizeof(buf), f) != NULL &&
		    (s = strrchr(buf, ')')) != NULL)
			sscanf(s + 2, "%*c %*d %ld", &pgrp);
		if (f != NULL)
			fclose(f);
	}
	CHECK(pgrp == stdioproc_pid(p));
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)stdioproc_pid(p));
	{
		FILE *f = fopen(path, "r");
		int blk = 0, ign = 0;

		while (f != NULL && fgets(buf, sizeof(buf), f) != NULL) {
			if (strncmp(buf, "SigBlk:", 7) == 0)
				blk = strcmp(buf + 7, "\t0000000000000000\n") == 0;
			/* glibc's posix_spawn leaves its two internal signals (32, 33)
			 * ignored; a glibc program re-installs them at start */
			if (strncmp(buf, "SigIgn:", 7) == 0)
				ign = (strtoull(buf + 8, NULL, 16) & ~0x180000000ULL) == 0;
		}
		if (f != NULL)
			fclose(f);
		/* the test ignores SIGPIPE like the gateway: the child must not */
		CHECK(blk == 1 && ign == 1);
	}
	stdioproc_close(p);
	expect_clean("sandbox");

	/* PATH from the config wins, and is where the program is looked up */
	{
		char *env2[] = { "PATH=/nonexistent", NULL };
		struct stdioproc_conf c2 = { .env = env2 };
		struct rec r2 = { 0 };

		CHECK(spawn(argv, &c2, &r2, "nopath") == NULL && errno == ENOENT);
	}
}

static void
test_exit_at_once(void)
{
	char *argv[] = { "sh", "-c", "echo '{\"jsonrpc\":\"2.0\",\"method\":\"bye\"}'; exit 3", NULL };
	char *argv2[] = { "true", NULL };
	struct rec r = { .keep = 1, .msgs = json_array() };
	struct stdioproc *p = spawn(argv, NULL, &r, "exit3");

	CHECK(p != NULL);
	CHECK(run_until(&r.exited, 1, 20));
	CHECK(r.nmsg == 1);   /* the last line before exit is delivered */
	CHECK(r.ex.reason == STDIOPROC_END_EXITED && r.ex.si_code == CLD_EXITED &&
	    r.ex.status == 3);
	CHECK(stdioproc_count() == 0);   /* reaped */
	CHECK(stdioproc_send_raw(p, "{}", 2) == -1 && errno == EPIPE);
	stdioproc_close(p);
	json_decref(r.msgs);
	expect_clean("exit3");

	/* closing from inside on_exit */
	memset(&r, 0, sizeof(r));
	r.close_on_exit = 1;
	CHECK(spawn(argv2, NULL, &r, "true") != NULL);
	CHECK(run_until(&r.exited, 1, 20));
	CHECK(r.p == NULL && r.ex.status == 0);
	expect_clean("true");
}

static void
test_not_runnable(void)
{
	char *a1[] = { "certgate-no-such-program", NULL };
	char *a2[] = { "/nonexistent/server", NULL };
	char *a3[] = { "/etc/passwd", NULL };
	struct rec r = { 0 };

	CHECK(spawn(a1, NULL, &r, "x") == NULL && errno == ENOENT);
	CHECK(spawn(a2, NULL, &r, "x") == NULL && errno == ENOENT);
	CHECK(spawn(a3, NULL, &r, "x") == NULL && errno == EACCES);
	CHECK(stdioproc_count() == 0);
	expect_clean("not runnable");
}

static void
test_cap(void)
{
	char *argv[] = { "cat", NULL };
	struct stdioproc_conf c = { .max_processes = 2 };
	struct stdioproc_cbs cbs = { rec_msg, rec_err, rec_exit, NULL };
	struct stdioproc *a, *b, *d;
	struct rec ra = { 0 }, rb = { 0 }, rd = { 0 };
	char err[256];

	a = spawn(argv, &c, &ra, "a");
	b = spawn(argv, &c, &rb, "b");
	CHECK(a != NULL && b != NULL);
	c.argv = argv;
	cbs.arg = &rd;
	d = stdioproc_spawn(base, &c, "c", &cbs, err, sizeof(err));
	CHECK(d == NULL && errno == EAGAIN);
	CHECK(strstr(err, "upstream.max_processes (2)") != NULL);
	stdioproc_close(a);
	/* a counts until it is reaped */
	CHECK(stdioproc_count() == 2);
	while (stdioproc_count() > 1)
		run_until(NULL, 0, 0.05);
	d = spawn(argv, &c, &rd, "c");
	CHECK(d != NULL);
	stdioproc_close(b);
	stdioproc_close(d);
	expect_clean("cap");
}

/* A group that ignores SIGTERM gets SIGKILL after kill_ms. */
static void
test_ignore_term(void)
{
	char *argv[] = { "sh", "-c", "trap '' TERM; while :; do sleep 1; done", NULL };
	struct stdioproc_conf c = { .term_ms = 100, .kill_ms = 300 };
	struct rec r = { 0 };
	struct stdioproc *p = spawn(argv, &c, &r, "noterm");
	pid_t pid;
	double t0;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	run_until(NULL, 0, 0.3);
	pid = stdioproc_pid(p);
	t0 = now_s();
	stdioproc_close(p);
	expect_clean("noterm");
	/* 100 + 300 ms by design; bounded generously for a loaded machine */
	CHECK(now_s() - t0 < 10);
	CHECK(kill(pid, 0) == -1 && errno == ESRCH);
	/* no member of its group is left either (the sleeps, killed with it; an orphan's
	 * zombie is reaped by init, so allow it a moment) */
	for (t0 = now_s(); kill(-pid, 0) == 0 && now_s() - t0 < 10;)
		usleep(20000);
	CHECK(kill(-pid, 0) == -1 && errno == ESRCH);
}

static void
test_idle(void)
{
	char *argv[] = { "cat", NULL };
	struct stdioproc_conf c = { .idle_timeout_ms = 300 };
	struct rec r = { 0 };
	struct stdioproc *p = spawn(argv, &c, &r, "idle");
	double t0 = now_s();

	CHECK(p != NULL);
	/* held: not idle */
	stdioproc_hold(p, 1);
	run_until(NULL, 0, 0.8);
	CHECK(r.exited == 0);
	stdioproc_hold(p, -1);
	CHECK(run_until(&r.exited, 1, 20));
	CHECK(r.ex.reason == STDIOPROC_END_IDLE);
	CHECK(r.ex.si_code == CLD_EXITED && r.ex.status == 0);   /* cat ends on stdin EOF */
	CHECK(now_s() - t0 >= 1.0);
	stdioproc_close(p);
	expect_clean("idle");
}

/* stdout flood: paused, the child blocks in write(2) and our memory stays flat. */
static void
test_flood(void)
{
	char *argv[] = { "yes", "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/flood\"}", NULL };
	struct rec r = { .pause_at = 2000 };
	struct stdioproc *p = spawn(argv, NULL, &r, "flood");
	char path[64], state = '?', wchan[64] = "";
	long rss0, rss1;
	int at, fd;
	ssize_t n;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	CHECK(run_until(&r.nmsg, 2000, 20));
	at = r.nmsg;
	rss0 = rss_kib();
	run_until(NULL, 0, 2.0);
	rss1 = rss_kib();
	CHECK(r.nmsg == at);                  /* nothing delivered while paused */
	CHECK(rss1 - rss0 < 4096);             /* not buffered */
	fprintf(stderr, "flood: paused at %d messages, RSS %ld -> %ld KiB over 2 s\n", at,
	    rss0, rss1);
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)stdioproc_pid(p));
	{
		FILE *f = fopen(path, "r");
		char line[512], *s;

		if (f != NULL && fgets(line, sizeof(line), f) != NULL && (s = strrchr(line, ')')))
			state = s[2];
		if (f != NULL)
			fclose(f);
	}
	CHECK(state == 'S');                   /* blocked, not spinning */
	snprintf(path, sizeof(path), "/proc/%ld/wchan", (long)stdioproc_pid(p));
	if ((fd = open(path, O_RDONLY)) >= 0) {
		n = read(fd, wchan, sizeof(wchan) - 1);
		wchan[n > 0 ? n : 0] = '\0';
		close(fd);
		/* some kernels hide wchan ("0"); only a real value is asserted */
		if (wchan[0] != '\0' && strcmp(wchan, "0") != 0)
			CHECK(strstr(wchan, "pipe") != NULL);
	}
	stdioproc_pause(p, 0);
	CHECK(run_until(&r.nmsg, at + 5000, 20));
	stdioproc_close(p);
	expect_clean("flood");
}

static void
test_lines(void)
{
	char *argv[] = { "sh", "-c", "head -c 200000 /dev/zero | tr '\\000' a; echo; "
	    "echo 'not json'; echo '\"a string\"'; echo; printf '{\"crlf\":1}\\r\\n'; "
	    "echo '{\"ok\":1}'; exec cat", NULL };
	struct stdioproc_conf c = { .max_message_bytes = 1000 };
	struct rec r = { .keep = 1, .msgs = json_array() };
	struct stdioproc *p = spawn(argv, &c, &r, "lines");

	CHECK(p != NULL);
	CHECK(run_until(&r.nmsg, 2, 20));
	CHECK(r.nerr == 3);   /* the long line, "not json", a JSON string */
	CHECK(json_integer_value(json_object_get(json_array_get(r.msgs, 0), "crlf")) == 1);
	CHECK(json_integer_value(json_object_get(json_array_get(r.msgs, 1), "ok")) == 1);
	stdioproc_close(p);
	json_decref(r.msgs);
	expect_clean("lines");
}

/* A server that never reads stdin: the queue is bounded. */
static void
test_queue_cap(void)
{
	char *argv[] = { "sleep", "30", NULL };
	struct stdioproc_conf c = { .max_queued_bytes = 10000, .term_ms = 100 };
	struct rec r = { 0 };
	struct stdioproc *p = spawn(argv, &c, &r, "noread");
	char big[1001];
	int i, refused = 0;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	memset(big, 'x', 1000);
	big[0] = '"';
	big[999] = '"';
	big[1000] = '\0';
	for (i = 0; i < 500 && !refused; i++) {
		if (stdioproc_send_raw(p, big, 1000) == -1) {
			CHECK(errno == ENOBUFS);
			refused = 1;
		}
		run_until(NULL, 0, 0.01);
	}
	CHECK(refused);
	CHECK(stdioproc_queued(p) <= 10000);
	stdioproc_close(p);
	expect_clean("noread");
}

/* stderr goes to the log with the label, control bytes neutralized, at a bounded rate. */
static void
test_stderr(void)
{
	char *argv[] = { "sh", "-c", "echo 'hello from stderr' >&2; printf 'a\\033[31mb\\n' >&2; "
	    "yes 'spam spam spam' >&2", NULL };
	char tmpl[] = "/tmp/test_stdioproc_log_XXXXXX", line[512];
	struct rec r = { 0 };
	struct stdioproc *p;
	int fd, saved, hello = 0, esc = 0, spam = 0;
	double t0, secs;
	FILE *f;

	fd = mkstemp(tmpl);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	t0 = now_s();
	p = spawn(argv, NULL, &r, "session-4f2a");
	run_until(NULL, 0, 2.5);
	stdioproc_close(p);
	expect_clean("stderr");
	secs = now_s() - t0;
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	if ((f = fopen(tmpl, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			hello += strstr(line, "session-4f2a: stderr: hello from stderr") != NULL;
			esc += strstr(line, "session-4f2a: stderr: a?[31mb") != NULL;
			spam += strstr(line, "stderr: spam spam spam") != NULL;
		}
		fclose(f);
	}
	unlink(tmpl);
	fprintf(stderr, "stderr: %d spam lines logged in %.1f s\n", spam, secs);
	CHECK(hello == 1 && esc == 1);
	/* 100 lines per calendar second the process lived (a span of S seconds touches at
	 * most S + 1 of them), never the flood (yes writes millions) */
	CHECK(spam > 0 && spam <= 100 * ((int)secs + 2));
}

static void
test_close_in_callback(void)
{
	char *argv[] = { "yes", "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}", NULL };
	struct rec r = { .close_on_msg = 1 };

	CHECK(spawn(argv, NULL, &r, "closecb") != NULL);
	CHECK(run_until(&r.nmsg, 1, 20));
	CHECK(r.p == NULL);
	run_until(NULL, 0, 0.2);
	CHECK(r.nmsg == 1 && r.exited == 0);   /* no callback after close */
	expect_clean("close in callback");
}

/* ---- real MCP servers ------------------------------------------------------------- */

static const char *
js_dir(void)
{
	static char dir[1024];
	const char *src = getenv("CERTGATE_SOURCE_DIR");
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/tests/js/node_modules/@modelcontextprotocol",
	    src ? src : ".");
	return stat(dir, &st) == 0 ? dir : NULL;
}

/* Waits for the response with the given id; returns it (borrowed from r->msgs). */
static json_t *
wait_response(struct rec *r, int id, double secs)
{
	double end = now_s() + secs;
	json_t *m;
	size_t i;

	while (now_s() < end) {
		json_array_foreach(r->msgs, i, m)
			if (json_integer_value(json_object_get(m, "id")) == id &&
			    json_object_get(m, "method") == NULL)
				return m;
		run_until(NULL, 0, 0.05);
	}
	return NULL;
}

static void
send_json(struct stdioproc *p, const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	CHECK(j != NULL && stdioproc_send(p, j) == 0);
	json_decref(j);
}

#define INIT "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{" \
	"\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\"," \
	"\"version\":\"1\"}}}"

static void
test_everything(void)
{
	char prog[1100];
	char *argv[] = { "node", prog, "stdio", NULL };
	struct rec r = { .keep = 1, .msgs = json_array() };
	struct stdioproc *p;
	json_t *m;
	const char *js = js_dir();

	if (js == NULL) {
		fprintf(stderr, "SKIP server-everything: tests/js/node_modules missing (npm ci)\n");
		CHECK(0);
		return;
	}
	snprintf(prog, sizeof(prog), "%s/server-everything/dist/index.js", js);
	p = spawn(argv, NULL, &r, "everything");
	CHECK(p != NULL);
	if (p == NULL)
		goto done;
	send_json(p, INIT);
	m = wait_response(&r, 1, 30);
	CHECK(m != NULL);
	CHECK(json_is_string(json_object_get(json_object_get(json_object_get(m, "result"),
	    "serverInfo"), "name")));
	send_json(p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
	send_json(p, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
	m = wait_response(&r, 2, 30);
	CHECK(m != NULL && json_array_size(json_object_get(json_object_get(m, "result"),
	    "tools")) >= 10);
	send_json(p, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":"
	    "{\"name\":\"echo\",\"arguments\":{\"message\":\"hi there\"}}}");
	m = wait_response(&r, 3, 30);
	CHECK(m != NULL);
	if (m != NULL) {
		char *s = json_dumps(m, 0);

		CHECK(s != NULL && strstr(s, "hi there") != NULL);
		free(s);
	}
	stdioproc_close(p);
done:
	json_decref(r.msgs);
	expect_clean("everything");
}

static void
test_filesystem(void)
{
	char prog[1100], dir[] = "/tmp/test_stdioproc_fs_XXXXXX", file[200], req[600];
	char *argv[] = { "node", prog, dir, NULL };
	struct rec r = { .keep = 1, .msgs = json_array() };
	struct stdioproc *p;
	json_t *m;
	const char *js = js_dir();
	FILE *f;

	if (js == NULL || mkdtemp(dir) == NULL) {
		fprintf(stderr, "SKIP server-filesystem: tests/js/node_modules missing (npm ci)\n");
		CHECK(0);
		json_decref(r.msgs);
		return;
	}
	snprintf(prog, sizeof(prog), "%s/server-filesystem/dist/index.js", js);
	snprintf(file, sizeof(file), "%s/hello.txt", dir);
	if ((f = fopen(file, "w")) != NULL) {
		fputs("contents of hello\n", f);
		fclose(f);
	}
	p = spawn(argv, NULL, &r, "filesystem");
	CHECK(p != NULL);
	if (p == NULL)
		goto done;
	send_json(p, INIT);
	CHECK(wait_response(&r, 1, 30) != NULL);
	send_json(p, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
	    "\"params\":{\"name\":\"read_text_file\",\"arguments\":{\"path\":\"%s\"}}}", file);
	send_json(p, req);
	m = wait_response(&r, 2, 30);
	CHECK(m != NULL);
	if (m != NULL) {
		char *s = json_dumps(m, 0);

		CHECK(s != NULL && strstr(s, "contents of hello") != NULL);
		free(s);
	}
	stdioproc_close(p);
done:
	json_decref(r.msgs);
	expect_clean("filesystem");
	unlink(file);
	rmdir(dir);
}

/* Gateway shutdown with processes in every state. */
static void
test_shutdown(void)
{
	char *a1[] = { "cat", NULL };
	char *a2[] = { "sh", "-c", "trap '' TERM; while :; do sleep 1; done", NULL };
	char *a3[] = { "yes", "{}", NULL };
	struct rec r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	struct stdioproc *p3;
	int killed;

	CHECK(spawn(a1, NULL, &r1, "s1") != NULL);
	CHECK(spawn(a2, NULL, &r2, "s2") != NULL);
	CHECK((p3 = spawn(a3, NULL, &r3, "s3")) != NULL);
	run_until(NULL, 0, 0.3);
	stdioproc_close(p3);   /* one already closing */
	CHECK(stdioproc_count() == 3);
	killed = stdioproc_shutdown(500);
	CHECK(killed == 1);
	CHECK(stdioproc_count() == 0);
	CHECK(r1.exited == 0 && r2.exited == 0);   /* no callbacks at shutdown */
	expect_clean("shutdown");
	CHECK(stdioproc_shutdown(100) == 0);
}

int
main(void)
{
	int fds0, fds1;
	long rss0;

	signal(SIGPIPE, SIG_IGN);   /* as the gateway does */
	base = event_base_new();
	fds0 = count_fds(getpid(), NULL, 0);
	rss0 = rss_kib();
	test_echo();
	test_sandbox();
	test_exit_at_once();
	test_not_runnable();
	test_cap();
	test_ignore_term();
	test_idle();
	test_flood();
	test_lines();
	test_queue_cap();
	test_stderr();
	test_close_in_callback();
	test_everything();
	test_filesystem();
	test_shutdown();
	fds1 = count_fds(getpid(), NULL, 0);
	fprintf(stderr, "descriptors %d -> %d, RSS %ld -> %ld KiB\n", fds0, fds1, rss0, rss_kib());
	CHECK(fds0 == fds1);
	(void)zero;
	event_base_free(base);
	CHECK_DONE();
}
