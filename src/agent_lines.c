/* Newline-delimited messages on stdin/stdout (see include/agent_lines.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "agent_lines.h"
#include "log.h"

#define LINES_READ 65536

struct agent_lines {
	struct agent_lines_cbs cbs;
	void *arg;
	size_t max_line, out_high, out_low;
	int in_fd, in_poll, in_on, eof, discarding, delivering;
	struct event *in_ev;
	struct evbuffer *in;
	int out_fd, out_poll, broken;
	struct event *out_ev;
	struct evbuffer *out;
};

/* 1 when fd can be watched by the loop; *nonblock when it may be made non-blocking. */
static int
agent_lines_pollable(int fd, int *nonblock)
{
	struct stat st;

	*nonblock = 0;
	if (fstat(fd, &st) == -1)
		return 0;
	if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
		*nonblock = 1;
		return 1;
	}
	return isatty(fd);
}

static void
agent_lines_broken(struct agent_lines *l)
{
	if (l->broken)
		return;
	log_err("output: %s: the reader is gone", strerror(errno));
	l->broken = 1;
	evbuffer_drain(l->out, evbuffer_get_length(l->out));
	if (l->cbs.on_broken != NULL)
		l->cbs.on_broken(l->arg);
}

static void
agent_lines_out_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_lines *l = arg;

	if (evbuffer_write(l->out, fd) == -1 && errno != EAGAIN && errno != EINTR) {
		agent_lines_broken(l);
		return;
	}
	if (evbuffer_get_length(l->out) > 0)
		event_add(l->out_ev, NULL);
	if (evbuffer_get_length(l->out) < l->out_low && l->cbs.on_drained != NULL)
		l->cbs.on_drained(l->arg);
}

int
agent_lines_write(struct agent_lines *l, const char *p, size_t n)
{
	if (l->broken)
		return -1;
	if (evbuffer_add(l->out, p, n) == -1) {
		log_err("output: out of memory: a message was lost");
		return -1;
	}
	if (l->out_poll) {
		event_add(l->out_ev, NULL);
		return 0;
	}
	/* A terminal or a file: plain blocking writes. */
	while (evbuffer_get_length(l->out) > 0)
		if (evbuffer_write(l->out, l->out_fd) == -1 && errno != EINTR) {
			agent_lines_broken(l);
			return -1;
		}
	return 0;
}

int
agent_lines_out_full(const struct agent_lines *l)
{
	return evbuffer_get_length(l->out) > l->out_high;
}

size_t
agent_lines_pending(const struct agent_lines *l)
{
	return evbuffer_get_length(l->in);
}

int
agent_lines_eof(const struct agent_lines *l)
{
	return l->eof;
}

static int
agent_lines_busy(struct agent_lines *l)
{
	return l->cbs.busy != NULL && l->cbs.busy(l->arg);
}

/* Hands out the complete lines in the buffer while the consumer takes them. */
static void
agent_lines_deliver(struct agent_lines *l)
{
	struct evbuffer_ptr e;
	char *line;
	size_t n;

	/* on_line may lead back here (through agent_lines_poll). */
	if (l->delivering)
		return;
	l->delivering = 1;
	while (!agent_lines_busy(l)) {
		if (l->discarding) {
			e = evbuffer_search(l->in, "\n", 1, NULL);
			if (e.pos < 0) {
				evbuffer_drain(l->in, evbuffer_get_length(l->in));
				break;
			}
			evbuffer_drain(l->in, (size_t)e.pos + 1);
			l->discarding = 0;
			log_warn("a line longer than %zu bytes was dropped", l->max_line);
			if (l->cbs.on_too_long != NULL)
				l->cbs.on_too_long(l->arg);
			continue;
		}
		line = evbuffer_readln(l->in, &n, EVBUFFER_EOL_LF);
		if (line == NULL) {
			if (evbuffer_get_length(l->in) > l->max_line) {
				l->discarding = 1;
				continue;
			}
			if (!l->eof || (n = evbuffer_get_length(l->in)) == 0)
				break;
			/* The last line had no newline: take it anyway. */
			if ((line = malloc(n + 1)) == NULL)
				break;
			evbuffer_remove(l->in, line, n);
			line[n] = '\0';
		}
		if (n > l->max_line) {
			log_warn("a line longer than %zu bytes was dropped", l->max_line);
			if (l->cbs.on_too_long != NULL)
				l->cbs.on_too_long(l->arg);
		} else
			l->cbs.on_line(l->arg, line, n);
		free(line);
	}
	l->delivering = 0;
}

static void
agent_lines_in_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_lines *l = arg;
	int n;

	if (l->eof)
		return;
	if (agent_lines_busy(l)) {
		if (l->in_poll && l->in_on) {
			event_del(l->in_ev);
			l->in_on = 0;
		}
		return;
	}
	n = evbuffer_read(l->in, l->in_fd, LINES_READ);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (n == -1)
			log_warn("input: %s", strerror(errno));
		l->eof = 1;
		if (l->in_poll && l->in_on)
			event_del(l->in_ev);
		l->in_on = 0;
		agent_lines_deliver(l);
		if (l->cbs.on_eof != NULL)
			l->cbs.on_eof(l->arg);
		return;
	}
	agent_lines_deliver(l);
	if (!l->in_poll)
		agent_lines_poll(l);
}

void
agent_lines_poll(struct agent_lines *l)
{
	agent_lines_deliver(l);
	if (l->eof || agent_lines_busy(l))
		return;
	if (l->in_poll) {
		if (!l->in_on && event_add(l->in_ev, NULL) == 0)
			l->in_on = 1;
	} else
		event_active(l->in_ev, EV_READ, 0);
}

struct agent_lines *
agent_lines_new(struct event_base *base, int in_fd, int out_fd, size_t max_line,
    size_t out_high, size_t out_low, const struct agent_lines_cbs *cbs, void *arg)
{
	struct agent_lines *l;
	int nb;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->cbs = *cbs;
	l->arg = arg;
	l->max_line = max_line;
	l->out_high = out_high;
	l->out_low = out_low;
	l->in_fd = in_fd;
	l->out_fd = out_fd;
	if ((l->in = evbuffer_new()) == NULL || (l->out = evbuffer_new()) == NULL)
		goto fail;
	l->in_poll = agent_lines_pollable(in_fd, &nb);
	if (nb)
		(void)fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
	l->in_ev = l->in_poll ? event_new(base, in_fd, EV_READ | EV_PERSIST,
	    agent_lines_in_cb, l) : event_new(base, -1, 0, agent_lines_in_cb, l);
	/* Output is watched only when it can be non-blocking: a terminal shared with
	 * the parent stays blocking, and then writes simply block. */
	(void)agent_lines_pollable(out_fd, &nb);
	l->out_poll = nb;
	if (nb)
		(void)fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
	if (l->in_ev == NULL || (l->out_ev = event_new(base, out_fd, EV_WRITE,
	    agent_lines_out_cb, l)) == NULL)
		goto fail;
	return l;
fail:
	agent_lines_free(l);
	return NULL;
}

void
agent_lines_free(struct agent_lines *l)
{
	int fl;

	if (l == NULL)
		return;
	if (l->out != NULL && !l->broken && evbuffer_get_length(l->out) > 0) {
		fl = fcntl(l->out_fd, F_GETFL);
		(void)fcntl(l->out_fd, F_SETFL, fl & ~O_NONBLOCK);
		while (evbuffer_get_length(l->out) > 0 && evbuffer_write(l->out, l->out_fd) > 0)
			;
	}
	if (l->in_ev != NULL)
		event_free(l->in_ev);
	if (l->out_ev != NULL)
		event_free(l->out_ev);
	if (l->in != NULL)
		evbuffer_free(l->in);
	if (l->out != NULL)
		evbuffer_free(l->out);
	free(l);
}
