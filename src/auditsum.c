/* `certgate audit summary` (auditsum.h): per-agent counts over audit.jsonl. */
#include "auditsum.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "hash.h"

#define AUDITSUM_OTHER		"(other)"
#define AUDITSUM_UNMAPPED	"(unmapped)"
#define AUDITSUM_LINE_MAX	(1024 * 1024)

/* A counter per distinct string, open addressing. */
struct auditsum_ctr_ent {
	char *key;
	long long n;
};
struct ctr {
	struct auditsum_ctr_ent *v;
	size_t n, cap;
};

enum { F_TOOL, F_METHOD, F_REASON, F_ADDR, F_COUNT };
static const char *const auditsum_field_names[F_COUNT] = {
	"tools", "methods", "denials", "addresses"
};

struct agent_sum {
	char *id;
	long long calls, allowed, denied;
	long long first_ms, last_ms;
	struct ctr f[F_COUNT];
};

struct auditsum {
	long long since_ms, until_ms;
	long long lines, counted, outside, malformed;
	long long first_ms, last_ms;
	struct ctr agents_idx;          /* agent id -> index + 1 into agents */
	struct agent_sum *agents;
	size_t nagents, cap;
	int oom;
};

/* ---- counters ---- */

static void
auditsum_ctr_free(struct ctr *c)
{
	size_t i;

	for (i = 0; i < c->cap; i++)
		free(c->v[i].key);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static struct auditsum_ctr_ent *
auditsum_ctr_slot(struct ctr *c, const char *key)
{
	size_t i = hash_str(key) & (c->cap - 1);

	while (c->v[i].key != NULL && strcmp(c->v[i].key, key) != 0)
		i = (i + 1) & (c->cap - 1);
	return &c->v[i];
}

static int
auditsum_ctr_grow(struct ctr *c)
{
	struct ctr old = *c;
	size_t i;

	c->cap = old.cap ? old.cap * 2 : 16;
	if ((c->v = calloc(c->cap, sizeof(*c->v))) == NULL) {
		*c = old;
		return -1;
	}
	for (i = 0; i < old.cap; i++)
		if (old.v[i].key != NULL)
			*auditsum_ctr_slot(c, old.v[i].key) = old.v[i];
	free(old.v);
	return 0;
}

/* The entry for key (made when missing; past max keys, the "(other)" one). */
static struct auditsum_ctr_ent *
auditsum_ctr_get(struct ctr *c, const char *key, size_t max)
{
	struct auditsum_ctr_ent *e;

	if (c->cap > 0 && (e = auditsum_ctr_slot(c, key))->key != NULL)
		return e;
	if (max > 0 && c->n >= max && strcmp(key, AUDITSUM_OTHER) != 0)
		return auditsum_ctr_get(c, AUDITSUM_OTHER, 0);
	if ((c->n + 1) * 10 > c->cap * 7 && auditsum_ctr_grow(c) == -1)
		return NULL;
	e = auditsum_ctr_slot(c, key);
	if ((e->key = strdup(key)) == NULL)
		return NULL;
	c->n++;
	return e;
}

static int
auditsum_ctr_add(struct ctr *c, const char *key, long long n)
{
	struct auditsum_ctr_ent *e = auditsum_ctr_get(c, key, AUDITSUM_MAX_KEYS);

	if (e == NULL)
		return -1;
	e->n += n;
	return 0;
}

static int
auditsum_ctr_ent_cmp(const void *a, const void *b)
{
	const struct auditsum_ctr_ent *x = *(struct auditsum_ctr_ent *const *)a, *y = *(struct auditsum_ctr_ent *const *)b;

	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* The entries, most frequent first; NULL when empty or out of memory. */
static struct auditsum_ctr_ent **
auditsum_ctr_sorted(const struct ctr *c)
{
	struct auditsum_ctr_ent **v;
	size_t i, n = 0;

	if (c->n == 0 || (v = calloc(c->n, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < c->cap; i++)
		if (c->v[i].key != NULL)
			v[n++] = &c->v[i];
	qsort(v, n, sizeof(*v), auditsum_ctr_ent_cmp);
	return v;
}

/* ---- times ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (no libc time zone state). */
static long long
auditsum_days(int y, int m, int d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	long long yoe = y - era * 400;
	long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static int
auditsum_digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* RFC 3339 or a date; -1 when neither. */
static int
auditsum_rfc3339(const char *s, long long *out_ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, oh, om, sign;
	long long ms = 0, scale = 100;
	const char *p;

	if (strlen(s) < 10 || auditsum_digits(s, 4, &y) || s[4] != '-' ||
	    auditsum_digits(s + 5, 2, &mo) || s[7] != '-' || auditsum_digits(s + 8, 2, &d) ||
	    mo < 1 || mo > 12 || d < 1 || d > 31)
		return -1;
	p = s + 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		if (strlen(p) < 9 || auditsum_digits(p + 1, 2, &h) || p[3] != ':' ||
		    auditsum_digits(p + 4, 2, &mi) || p[6] != ':' ||
		    auditsum_digits(p + 7, 2, &sec) || h > 23 || mi > 59 || sec > 60)
			return -1;
		p += 9;
		if (*p == '.') {
			for (p++; *p >= '0' && *p <= '9'; p++) {
				ms += (*p - '0') * scale;
				scale /= 10;
			}
		}
		if (*p == 'Z' || *p == 'z')
			p++;
		else if (*p == '+' || *p == '-') {
			sign = *p == '-' ? -1 : 1;
			if (strlen(p) != 6 || auditsum_digits(p + 1, 2, &oh) || p[3] != ':' ||
			    auditsum_digits(p + 4, 2, &om))
				return -1;
			/* local = UTC + offset, so UTC = local - offset */
			h -= sign * oh;
			mi -= sign * om;
			p += 6;
		} else
			return -1;
	}
	if (*p != '\0')
		return -1;
	*out_ms = ((auditsum_days(y, mo, d) * 86400LL) + h * 3600LL + mi * 60LL + sec) *
	    1000LL + ms;
	return 0;
}

int
auditsum_parse_time(const char *s, long long now_ms, long long *out_ms)
{
	char *end;
	double n;
	long long unit;

	if (s == NULL || *s == '\0')
		return -1;
	if (auditsum_rfc3339(s, out_ms) == 0)
		return 0;
	errno = 0;
	n = strtod(s, &end);
	if (errno != 0 || end == s || !(n >= 0) || end[0] == '\0' || end[1] != '\0')
		return -1;
	switch (end[0]) {
	case 'm': unit = 60000LL; break;
	case 'h': unit = 3600000LL; break;
	case 'd': unit = 86400000LL; break;
	case 'w': unit = 7 * 86400000LL; break;
	default: return -1;
	}
	if (n > 1e6)
		return -1;
	*out_ms = now_ms - (long long)(n * (double)unit);
	return 0;
}

/* ---- aggregation ---- */

struct auditsum *
auditsum_new(long long since_ms, long long until_ms)
{
	struct auditsum *s = calloc(1, sizeof(*s));

	if (s != NULL) {
		s->since_ms = since_ms;
		s->until_ms = until_ms;
	}
	return s;
}

void
auditsum_free(struct auditsum *s)
{
	size_t i, k;

	if (s == NULL)
		return;
	for (i = 0; i < s->nagents; i++) {
		free(s->agents[i].id);
		for (k = 0; k < F_COUNT; k++)
			auditsum_ctr_free(&s->agents[i].f[k]);
	}
	free(s->agents);
	auditsum_ctr_free(&s->agents_idx);
	free(s);
}

static struct agent_sum *
auditsum_agent(struct auditsum *s, const char *id)
{
	struct auditsum_ctr_ent *e;
	struct agent_sum *a;

	if (s->nagents >= AUDITSUM_MAX_AGENTS && (e = auditsum_ctr_slot(&s->agents_idx, id))->key == NULL)
		id = AUDITSUM_OTHER;
	if ((e = auditsum_ctr_get(&s->agents_idx, id, 0)) == NULL)
		return NULL;
	if (e->n > 0)
		return &s->agents[e->n - 1];
	if (s->nagents == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		void *nv = realloc(s->agents, ncap * sizeof(*s->agents));

		if (nv == NULL)
			return NULL;
		s->agents = nv;
		s->cap = ncap;
	}
	a = &s->agents[s->nagents];
	memset(a, 0, sizeof(*a));
	if ((a->id = strdup(id)) == NULL)
		return NULL;
	e->n = (long long)++s->nagents;
	return a;
}

static const char *
auditsum_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* "ip" of "ip:port" or "[v6]:port", into buf. */
static const char *
auditsum_addr(const char *peer, char *buf, size_t len)
{
	const char *c;

	if (peer == NULL)
		return "?";
	if (peer[0] == '[' && (c = strchr(peer, ']')) != NULL) {
		snprintf(buf, len, "%.*s", (int)(c - peer - 1), peer + 1);
		return buf;
	}
	if ((c = strrchr(peer, ':')) != NULL && strchr(peer, ':') == c) {
		snprintf(buf, len, "%.*s", (int)(c - peer), peer);
		return buf;
	}
	return peer;
}

int
auditsum_line(struct auditsum *s, const char *line, size_t len)
{
	const char *ts, *agent, *method, *name, *decision, *reason;
	struct agent_sum *a;
	json_t *o;
	long long t;
	char addr[64], key[512];
	int deny, rc = -1;

	s->lines++;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 0) {
		s->lines--;     /* blank lines are not records */
		return 1;
	}
	if ((o = json_loadb(line, len, 0, NULL)) == NULL || !json_is_object(o) ||
	    (ts = auditsum_str(o, "ts")) == NULL || auditsum_rfc3339(ts, &t) == -1 ||
	    (decision = auditsum_str(o, "decision")) == NULL) {
		s->malformed++;
		json_decref(o);
		return -1;
	}
	if ((s->since_ms != 0 && t < s->since_ms) || (s->until_ms != 0 && t >= s->until_ms)) {
		s->outside++;
		json_decref(o);
		return 1;
	}
	agent = auditsum_str(o, "agent");
	method = auditsum_str(o, "method");
	name = auditsum_str(o, "name");
	reason = auditsum_str(o, "reason");
	deny = strcmp(decision, "deny") == 0;
	if ((a = auditsum_agent(s, agent ? agent : AUDITSUM_UNMAPPED)) == NULL)
		goto oom;
	a->calls++;
	if (deny)
		a->denied++;
	else
		a->allowed++;
	if (a->first_ms == 0 || t < a->first_ms)
		a->first_ms = t;
	if (t > a->last_ms)
		a->last_ms = t;
	if (s->first_ms == 0 || t < s->first_ms)
		s->first_ms = t;
	if (t > s->last_ms)
		s->last_ms = t;
	if (method != NULL && strcmp(method, "tools/call") == 0) {
		snprintf(key, sizeof(key), "%s%s", name ? name : "?", deny ? " (denied)" : "");
		if (auditsum_ctr_add(&a->f[F_TOOL], key, 1) == -1)
			goto oom;
	}
	if (auditsum_ctr_add(&a->f[F_METHOD], method ? method : "?", 1) == -1)
		goto oom;
	if (deny && auditsum_ctr_add(&a->f[F_REASON], reason ? reason : "?", 1) == -1)
		goto oom;
	if (auditsum_ctr_add(&a->f[F_ADDR], auditsum_addr(auditsum_str(o, "peer"), addr,
	    sizeof(addr)), 1) == -1)
		goto oom;
	s->counted++;
	rc = 0;
	json_decref(o);
	return rc;
oom:
	s->oom = 1;
	json_decref(o);
	return -1;
}

/* ---- output ---- */

static void
auditsum_ts(struct buf *b, long long ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char s[32];

	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_adds(b, s);
}

static int
auditsum_agent_cmp(const void *x, const void *y)
{
	const struct agent_sum *a = *(struct agent_sum *const *)x;
	const struct agent_sum *b = *(struct agent_sum *const *)y;

	return strcmp(a->id, b->id);
}

static void
auditsum_text_field(struct buf *b, const char *title, const struct ctr *c)
{
	struct auditsum_ctr_ent **v = auditsum_ctr_sorted(c);
	size_t i;

	if (v == NULL)
		return;
	buf_addf(b, "  %-10s", title);
	for (i = 0; i < c->n; i++)
		buf_addf(b, "%s%s %lld", i ? ", " : " ", v[i]->key, v[i]->n);
	buf_addc(b, '\n');
	free(v);
}

static void
auditsum_json_field(json_t *o, const char *key, const struct ctr *c)
{
	struct auditsum_ctr_ent **v = auditsum_ctr_sorted(c);
	json_t *m = json_object();
	size_t i;

	for (i = 0; v != NULL && m != NULL && i < c->n; i++)
		json_object_set_new(m, v[i]->key, json_integer(v[i]->n));
	json_object_set_new(o, key, m ? m : json_null());
	free(v);
}

int
auditsum_format(const struct auditsum *s, int json, struct buf *b)
{
	struct agent_sum **order = NULL;
	size_t i, k;

	if (s->oom)
		return -1;
	if (s->nagents > 0 && (order = calloc(s->nagents, sizeof(*order))) == NULL)
		return -1;
	for (i = 0; i < s->nagents; i++)
		order[i] = &s->agents[i];
	if (s->nagents > 1)
		qsort(order, s->nagents, sizeof(*order), auditsum_agent_cmp);
	if (json) {
		json_t *root = json_object(), *arr = json_array(), *o;
		char *text;

		json_object_set_new(root, "records", json_integer(s->counted));
		json_object_set_new(root, "outside_window", json_integer(s->outside));
		json_object_set_new(root, "malformed", json_integer(s->malformed));
		for (i = 0; i < s->nagents; i++) {
			o = json_object();
			json_object_set_new(o, "agent", json_string(order[i]->id));
			json_object_set_new(o, "calls", json_integer(order[i]->calls));
			json_object_set_new(o, "allowed", json_integer(order[i]->allowed));
			json_object_set_new(o, "denied", json_integer(order[i]->denied));
			for (k = 0; k < F_COUNT; k++)
				auditsum_json_field(o, auditsum_field_names[k], &order[i]->f[k]);
			json_array_append_new(arr, o);
		}
		json_object_set_new(root, "agents", arr);
		text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(root);
		free(order);
		if (text == NULL)
			return -1;
		buf_adds(b, text);
		buf_addc(b, '\n');
		free(text);
		return buf_failed(b) ? -1 : 0;
	}
	buf_addf(b, "%lld records", s->counted);
	if (s->counted > 0) {
		buf_adds(b, " from ");
		auditsum_ts(b, s->first_ms);
		buf_adds(b, " to ");
		auditsum_ts(b, s->last_ms);
	}
	buf_addf(b, ", %zu agent%s", s->nagents, s->nagents == 1 ? "" : "s");
	if (s->outside)
		buf_addf(b, " (%lld outside the window)", s->outside);
	if (s->malformed)
		buf_addf(b, " (%lld lines are not audit records)", s->malformed);
	buf_addc(b, '\n');
	for (i = 0; i < s->nagents; i++) {
		const struct agent_sum *a = order[i];

		buf_addf(b, "\nagent %s: %lld calls, %lld allowed, %lld denied\n", a->id, a->calls,
		    a->allowed, a->denied);
		auditsum_text_field(b, "tools:", &a->f[F_TOOL]);
		auditsum_text_field(b, "methods:", &a->f[F_METHOD]);
		auditsum_text_field(b, "denials:", &a->f[F_REASON]);
		auditsum_text_field(b, "from:", &a->f[F_ADDR]);
	}
	free(order);
	return buf_failed(b) ? -1 : 0;
}

/* ---- command ---- */

static void
auditsum_usage(FILE *f)
{
	fprintf(f, "usage: certgate audit summary [-c CONFIG | -f FILE]... [--since TIME] "
	    "[--until TIME] [--json]\n\n"
	    "Per agent: calls by tool and by method, denials by reason, source addresses,\n"
	    "from the request audit log (audit.file of CONFIG, or each FILE; - is stdin).\n"
	    "TIME is RFC 3339 (2026-05-01T12:00:00Z), a date (2026-05-01, UTC) or a\n"
	    "duration before now (90m, 24h, 7d, 2w): --since 7d is the last week.\n"
	    "Rotated logs: zcat audit.jsonl.*.gz | certgate audit summary -f -\n");
}

/* Streams one file into s. Returns 0/-1 (message printed). */
static int
auditsum_file(struct auditsum *s, const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	if (f == NULL) {
		fprintf(stderr, "certgate audit summary: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) != -1) {
		if (n > AUDITSUM_LINE_MAX) {
			s->malformed++;
			continue;
		}
		(void)auditsum_line(s, line, (size_t)n);
	}
	if (ferror(f)) {
		fprintf(stderr, "certgate audit summary: %s: %s\n", path, strerror(errno));
		rc = -1;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

int
auditsum_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "file", required_argument, NULL, 'f' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct strlist files = { 0 }, errs = { 0 };
	struct auditsum *s = NULL;
	struct config *cfg = NULL;
	long long since = 0, until = 0, now;
	const char *config = NULL;
	struct timespec ts;
	struct buf out;
	int ch, json = 0, rc = 2;
	size_t i;

	buf_init(&out);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (argc < 2 || strcmp(argv[1], "summary") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
			auditsum_usage(stdout);
			return 0;
		}
		fprintf(stderr, "certgate audit: %s\n", argc < 2 ? "missing subcommand" :
		    "unknown subcommand (only `summary`)");
		auditsum_usage(stderr);
		return 2;
	}
	optind = 1;
	while ((ch = getopt_long(argc - 1, argv + 1, "c:f:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 'f':
			if (strlist_addf(&files, "%s", optarg) == -1)
				goto oom;
			break;
		case 's':
		case 'u':
			if (auditsum_parse_time(optarg, now, ch == 's' ? &since : &until) == -1) {
				fprintf(stderr, "certgate audit summary: --%s %s: not a time (RFC "
				    "3339, YYYY-MM-DD, or Nm/Nh/Nd/Nw)\n", ch == 's' ? "since" :
				    "until", optarg);
				goto out;
			}
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			auditsum_usage(stdout);
			rc = 0;
			goto out;
		default:
			auditsum_usage(stderr);
			goto out;
		}
	}
	if (optind < argc - 1) {
		fprintf(stderr, "certgate audit summary: unexpected argument '%s'\n",
		    argv[optind + 1]);
		goto out;
	}
	if (config == NULL && files.n == 0) {
		fprintf(stderr, "certgate audit summary: give -c CONFIG or -f FILE\n");
		auditsum_usage(stderr);
		goto out;
	}
	rc = 1;
	if (config != NULL) {
		if (config_load(config, 0, &cfg, &errs) == -1) {
			for (i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.v[i]);
			goto out;
		}
		if (cfg->audit_file == NULL) {
			fprintf(stderr, "certgate audit summary: %s: audit.file is stderr; "
			    "give the file with -f\n", config);
			goto out;
		}
		if (strlist_addf(&files, "%s", cfg->audit_file) == -1)
			goto oom;
	}
	if ((s = auditsum_new(since, until)) == NULL)
		goto oom;
	for (i = 0; i < files.n; i++)
		if (auditsum_file(s, files.v[i]) == -1)
			goto out;
	if (auditsum_format(s, json, &out) == -1)
		goto oom;
	fputs(buf_str(&out), stdout);
	rc = 0;
	goto out;
oom:
	fprintf(stderr, "certgate audit summary: out of memory\n");
	rc = 1;
out:
	auditsum_free(s);
	config_free(cfg);
	strlist_free(&files);
	strlist_free(&errs);
	buf_free(&out);
	return rc;
}
