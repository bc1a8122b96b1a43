/* Server-sent events, client side (see include/agent_sse.h). */
#include <stdlib.h>
#include <string.h>

#include "agent_sse.h"
#include "buf.h"

#define SSE_DEFAULT_MAX   (16u << 20)
#define SSE_MAX_ID        1024
#define SSE_MAX_TYPE      256

struct agent_sse {
	size_t max_event;
	struct buf line;      /* the line being read */
	struct buf data;      /* data buffer of the event being assembled */
	struct buf type;      /* event type buffer */
	struct buf id;        /* last event ID buffer */
	long retry_ms;
	int after_cr;         /* the previous byte ended a line with CR */
	int bom_checked;      /* a leading U+FEFF has been looked for */
	size_t bom_seen;      /* bytes of a possible BOM matched so far */
	const char *error;
};

struct agent_sse *
agent_sse_new(size_t max_event)
{
	struct agent_sse *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->max_event = max_event ? max_event : SSE_DEFAULT_MAX;
	buf_init(&s->line);
	buf_init(&s->data);
	buf_init(&s->type);
	buf_init(&s->id);
	s->type.max = SSE_MAX_TYPE;
	s->id.max = SSE_MAX_ID;
	s->retry_ms = -1;
	return s;
}

void
agent_sse_free(struct agent_sse *s)
{
	if (s == NULL)
		return;
	buf_free(&s->line);
	buf_free(&s->data);
	buf_free(&s->type);
	buf_free(&s->id);
	free(s);
}

const char *
agent_sse_last_id(const struct agent_sse *s)
{
	return s->id.len ? s->id.p : "";
}

int
agent_sse_set_last_id(struct agent_sse *s, const char *id)
{
	buf_reset(&s->id);
	if (id == NULL || *id == '\0')
		return 0;
	return buf_adds(&s->id, id);
}

long
agent_sse_retry_ms(const struct agent_sse *s)
{
	return s->retry_ms;
}

const char *
agent_sse_error(const struct agent_sse *s)
{
	return s->error;
}

static int
agent_sse_fail(struct agent_sse *s, const char *why)
{
	if (s->error == NULL)
		s->error = why;
	return -1;
}

static int
agent_sse_dispatch(struct agent_sse *s, agent_sse_fn fn, void *arg)
{
	struct agent_sse_event ev;
	int rv = 0;

	if (s->data.len > 0) {
		/* The data buffer always ends with the LF appended after each line. */
		s->data.len--;
		s->data.p[s->data.len] = '\0';
		ev.type = s->type.len ? buf_str(&s->type) : "message";
		ev.data = buf_str(&s->data);
		ev.len = s->data.len;
		ev.id = agent_sse_last_id(s);
		if (fn != NULL && fn(arg, &ev) != 0)
			rv = agent_sse_fail(s, "stopped");
	}
	buf_reset(&s->data);
	buf_reset(&s->type);
	return rv;
}

static int
agent_sse_digits(const char *v, size_t n)
{
	size_t i;

	if (n == 0 || n > 9)
		return 0;
	for (i = 0; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return 0;
	return 1;
}

static int
agent_sse_field(struct agent_sse *s, const char *l, size_t n)
{
	const char *colon, *v;
	size_t fn, vn;

	if ((colon = memchr(l, ':', n)) == NULL) {
		fn = n;
		v = l + n;
		vn = 0;
	} else {
		fn = (size_t)(colon - l);
		v = colon + 1;
		vn = n - fn - 1;
		if (vn > 0 && *v == ' ') {
			v++;
			vn--;
		}
	}
	if (fn == 4 && memcmp(l, "data", 4) == 0) {
		if (s->data.len + vn + 1 > s->max_event)
			return agent_sse_fail(s, "event too large");
		buf_add(&s->data, v, vn);
		buf_addc(&s->data, '\n');
		if (buf_failed(&s->data))
			return agent_sse_fail(s, "out of memory");
	} else if (fn == 5 && memcmp(l, "event", 5) == 0) {
		buf_reset(&s->type);
		/* An over-long type is not an event certgate relays: keep it empty. */
		if (buf_add(&s->type, v, vn) == -1)
			buf_reset(&s->type);
	} else if (fn == 2 && memcmp(l, "id", 2) == 0) {
		if (memchr(v, '\0', vn) == NULL) {
			buf_reset(&s->id);
			if (buf_add(&s->id, v, vn) == -1)
				return agent_sse_fail(s, "event id too long");
		}
	} else if (fn == 5 && memcmp(l, "retry", 5) == 0) {
		if (agent_sse_digits(v, vn))
			s->retry_ms = strtol(v, NULL, 10);
	}
	/* Other fields are ignored, as the standard says. */
	return 0;
}

static int
agent_sse_line(struct agent_sse *s, agent_sse_fn fn, void *arg)
{
	const char *l = s->line.p;
	size_t n = s->line.len;
	int rv;

	if (n == 0)
		rv = agent_sse_dispatch(s, fn, arg);
	else if (l[0] == ':')
		rv = 0;
	else
		rv = agent_sse_field(s, l, n);
	buf_reset(&s->line);
	return rv;
}

int
agent_sse_feed(struct agent_sse *s, const char *p, size_t n, agent_sse_fn fn, void *arg)
{
	static const unsigned char bom[3] = { 0xef, 0xbb, 0xbf };
	size_t i = 0, run;

	if (s->error != NULL)
		return -1;
	/* A byte order mark at the very start is not part of the first line. A
	 * partial match that then differs is ordinary text. */
	while (!s->bom_checked && i < n) {
		if ((unsigned char)p[i] == bom[s->bom_seen]) {
			i++;
			if (++s->bom_seen == sizeof(bom))
				s->bom_checked = 1;
			continue;
		}
		s->bom_checked = 1;
		if (s->bom_seen > 0 && buf_add(&s->line, bom, s->bom_seen) == -1)
			return agent_sse_fail(s, "out of memory");
	}
	while (i < n) {
		if (s->after_cr) {
			s->after_cr = 0;
			if (p[i] == '\n') {
				i++;
				continue;
			}
		}
		if (p[i] == '\n' || p[i] == '\r') {
			s->after_cr = p[i] == '\r';
			i++;
			if (agent_sse_line(s, fn, arg) == -1)
				return -1;
			continue;
		}
		for (run = i; run < n && p[run] != '\n' && p[run] != '\r'; run++)
			;
		if (s->line.len + (run - i) + s->data.len > s->max_event)
			return agent_sse_fail(s, "event too large");
		if (buf_add(&s->line, p + i, run - i) == -1)
			return agent_sse_fail(s, "out of memory");
		i = run;
	}
	return 0;
}
