/* Newline-delimited messages on a pair of descriptors (stdin/stdout of certgate
 * agent stdio, the MCP stdio transport), on a libevent loop.
 *
 * Input: complete lines are handed to on_line (without the LF; a last line without
 * one at EOF too) as long as busy() says the consumer can take more; otherwise the
 * bytes wait and the descriptor is not read, so a producer that outpaces the
 * consumer is held back. A line longer than max_line is dropped whole (on_too_long),
 * never buffered beyond max_line.
 * Output: agent_lines_write queues a complete line, so lines never interleave; above
 * out_high the writer should pause its producers (agent_lines_out_full), and
 * on_drained tells it when the buffer is below out_low again. A write that fails
 * (the reader is gone) calls on_broken once and discards output from then on.
 *
 * Pipes and sockets are watched by the loop and made non-blocking; terminals are
 * watched but left blocking (they are shared with the parent); regular files and
 * /dev/null, which the loop cannot watch, are read and written directly.
 * Loop thread only. Callbacks may call any function here except agent_lines_free. */
#ifndef CERTGATE_AGENT_LINES_H
#define CERTGATE_AGENT_LINES_H
#include <event2/event.h>
#include <stddef.h>

struct agent_lines_cbs {
	int (*busy)(void *arg);                               /* 1: no line now */
	void (*on_line)(void *arg, const char *line, size_t n);
	void (*on_too_long)(void *arg);
	void (*on_eof)(void *arg);
	void (*on_drained)(void *arg);
	void (*on_broken)(void *arg);
};

struct agent_lines;

/* cbs is copied. NULL when out of memory. */
struct agent_lines *agent_lines_new(struct event_base *base, int in_fd, int out_fd,
    size_t max_line, size_t out_high, size_t out_low, const struct agent_lines_cbs *cbs,
    void *arg);

/* Writes what is still queued (blocking, unless the output is broken) and frees. */
void agent_lines_free(struct agent_lines *l);

/* Starts (or resumes) delivering lines: call once at start and whenever busy() may
 * have turned false. */
void agent_lines_poll(struct agent_lines *l);

/* Queues p[0..n), one or more complete lines. Returns 0, or -1 when out of memory
 * (logged) or the output is broken. */
int agent_lines_write(struct agent_lines *l, const char *p, size_t n);

/* 1 while more than out_high bytes wait for the reader. */
int agent_lines_out_full(const struct agent_lines *l);

/* Input bytes received and not yet delivered. */
size_t agent_lines_pending(const struct agent_lines *l);

/* 1 after the input ended. */
int agent_lines_eof(const struct agent_lines *l);

#endif
