/* Stdio MCP servers as upstreams (README "Stdio upstreams"): one child process per
 * MCP session, its stdin/stdout the transport (newline-delimited JSON-RPC, as the MCP
 * stdio transport specifies), driven from a worker's libevent loop. This layer knows
 * processes, pipes and framing; what a message means (which HTTP response it belongs
 * to) is stdiomap.h's business, and the proxy wires the two.
 *
 * Process handling:
 * - Started with posix_spawn (never fork: PKCS#11 is not fork-safe; glibc runs only
 *   the file actions between its clone and exec): own process group (pgid = pid),
 *   default signal dispositions and an empty signal mask (the gateway ignores
 *   SIGPIPE; the server must not inherit that), working directory conf->cwd ("/" by
 *   default, so relative paths never land in the gateway's state directory), and no
 *   descriptor but 0, 1, 2 (closefrom 3).
 * - Environment: nothing of the gateway's except PATH and HOME (defaults
 *   /usr/local/bin:/usr/bin:/bin and /), then conf->env, which overrides those two.
 *   So PINs (pin_env), SOFTHSM2_CONF and the rest never reach a server.
 * - argv[0] without a '/' is looked up in the child's PATH (not the gateway's).
 * - Reaping uses a pidfd per child watched on the owning loop, and waitid(P_PIDFD):
 *   no SIGCHLD handler and no waitpid(-1), so no other part of the gateway can lose a
 *   child's status to this module or the reverse. No zombie outlives its record.
 * - Ending (stdioproc_close, idle timeout, a dead transport): stdin is closed (MCP's
 *   "close the input stream"), after term_ms the process group gets SIGTERM, after
 *   kill_ms more SIGKILL. When the leader exits, whatever is left in its group gets
 *   SIGKILL before the leader is reaped (while its pid, hence the group id, cannot be
 *   reused). A descendant that leaves the group (setsid) escapes this; so does one
 *   that outlives a gateway killed by SIGKILL (there is no PR_SET_PDEATHSIG without
 *   code between fork and exec) -- a well-behaved server exits on stdin EOF.
 * - At most conf->max_processes processes exist at once over the whole gateway
 *   (counting ones being terminated until they are reaped); beyond that spawning
 *   fails with EAGAIN.
 *
 * Transport:
 * - Messages to the server: stdioproc_send (one JSON value, written compact with a
 *   '\n'); at most max_queued_bytes wait for the server to read, beyond that sending
 *   fails with ENOBUFS (the proxy refuses the request).
 * - Messages from the server: one line of stdout each, at most max_message_bytes
 *   (longer lines are discarded as they stream in, never buffered whole, and reported
 *   with on_error); CRLF accepted; blank lines ignored; a line that is not a JSON
 *   object or array is reported and dropped.
 * - Backpressure: stdioproc_pause(p, 1) stops reading stdout (and delivering lines
 *   already read); the pipe fills and a flooding server blocks in write(2). Memory per
 *   process stays below max_message_bytes + 64 KiB + the stdin queue.
 * - stderr: each line goes to the gateway log as "LABEL: stderr: TEXT" (control bytes
 *   shown as '?', lines cut at 1024 bytes); beyond 100 lines a second the pipe is not
 *   read until the next second, so a chatty server slows down instead of flooding.
 *
 * Threading: a process belongs to the loop (thread) it was spawned on; every call on
 * it, and every callback, happens on that thread. stdioproc_count may be called from
 * any thread; stdioproc_shutdown once, when no loop runs. */
#ifndef CERTGATE_STDIOPROC_H
#define CERTGATE_STDIOPROC_H
#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct stdioproc;

struct stdioproc_conf {
	char *const *argv;          /* argv[0] is the program, NULL-terminated; required */
	char *const *env;           /* "NAME=VALUE" entries, NULL-terminated, or NULL */
	const char *cwd;            /* NULL: "/" */
	int max_processes;          /* > 0 */
	int idle_timeout_ms;        /* 0: no idle timeout */
	size_t max_message_bytes;   /* one stdout line; 0: 4 MiB */
	size_t max_queued_bytes;    /* waiting for the server's stdin; 0: 8 MiB */
	int term_ms;                /* stdin closed -> SIGTERM; 0: 500 */
	int kill_ms;                /* SIGTERM -> SIGKILL; 0: 3000 */
};

enum stdioproc_end {
	STDIOPROC_END_EXITED = 0,   /* the server exited (or was killed) on its own */
	STDIOPROC_END_IDLE,         /* idle_timeout_ms without a message: terminated */
	STDIOPROC_END_TRANSPORT,    /* its stdout ended or a pipe failed: terminated */
};

struct stdioproc_exit {
	enum stdioproc_end reason;
	int si_code;                /* CLD_EXITED, CLD_KILLED or CLD_DUMPED */
	int status;                 /* exit status (CLD_EXITED) or signal number */
};

/* Callbacks run on the owning loop, never from inside a stdioproc_* call. Each may
 * call any stdioproc function on p, stdioproc_close included. */
struct stdioproc_cbs {
	/* One message from stdout: a JSON object (or array: a batch). msg is borrowed for
	 * the duration of the call (json_incref to keep it). */
	void (*on_message)(struct stdioproc *p, json_t *msg, void *arg);
	/* Something went wrong that did not end the process: a line over
	 * max_message_bytes, a line that is not a JSON-RPC message. what is a static or
	 * short-lived phrase for the log. May be NULL. */
	void (*on_error)(struct stdioproc *p, const char *what, void *arg);
	/* The process has exited and has been reaped, and stdout is drained (or given up
	 * on). Called at most once, and never after stdioproc_close; no callback follows.
	 * p stays valid until stdioproc_close. */
	void (*on_exit)(struct stdioproc *p, const struct stdioproc_exit *e, void *arg);
	void *arg;
};

/* Starts conf->argv on base. label (copied) prefixes log lines, e.g. "session 4f2a".
 * Returns the handle, or NULL with errno and a message in err: EAGAIN when
 * max_processes processes exist, ENOENT/EACCES when the program cannot be run
 * (posix_spawn reports exec failures), others for pipe or memory failures. The
 * returned handle must be released with stdioproc_close exactly once. Owning thread. */
struct stdioproc *stdioproc_spawn(struct event_base *base, const struct stdioproc_conf *conf,
    const char *label, const struct stdioproc_cbs *cbs, char *err, size_t errlen);

/* Queues one message for the server's stdin (json_dumps compact: no raw newline).
 * Returns 0, or -1 with errno: ENOBUFS over max_queued_bytes, EPIPE once stdin is
 * closed (the process is ending or gone), ENOMEM. Counts as activity (idle timer). */
int stdioproc_send(struct stdioproc *p, json_t *msg);

/* Same with an already serialized message of len bytes; EINVAL when it holds '\n'. */
int stdioproc_send_raw(struct stdioproc *p, const char *msg, size_t len);

/* Bytes queued for the server's stdin and not yet written. */
size_t stdioproc_queued(const struct stdioproc *p);

/* 1: stop reading the server's stdout (the consumer's buffer is above its high
 * watermark); 0: resume (delivery of lines already read restarts from the loop, not
 * from inside this call). */
void stdioproc_pause(struct stdioproc *p, int paused);

/* The idle timer counts from the last message either way; stdioproc_touch resets it
 * (e.g. for an HTTP request on the session that sent nothing yet), and while the hold
 * count is above 0 (stdioproc_hold(p, +1) ... (p, -1), e.g. around a request that
 * waits for a slow tool) the process is never idle. */
void stdioproc_touch(struct stdioproc *p);
void stdioproc_hold(struct stdioproc *p, int delta);

/* The server's pid (also its process group id) and the label. */
pid_t stdioproc_pid(const struct stdioproc *p);
const char *stdioproc_label(const struct stdioproc *p);

/* Releases the handle: the process is ended as described above (if it still runs)
 * and reaped in the background on the owning loop; no callback is called any more,
 * even from a callback in progress. p is invalid after the call. Owning thread. */
void stdioproc_close(struct stdioproc *p);

/* Processes that exist now (spawned and not yet reaped), over every loop. Any thread. */
int stdioproc_count(void);

/* Gateway shutdown: for every process still known (open or closing): stdin closed,
 * SIGTERM to its group, up to grace_ms to exit, then SIGKILL, reaped; every record
 * is freed and no callback is called. Call once, after every worker loop has stopped
 * and before their event bases are freed. Returns the number of processes that
 * needed SIGKILL. */
int stdioproc_shutdown(int grace_ms);

#endif
