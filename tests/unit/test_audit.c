/* audit: concurrent lines never interleave, every line is valid JSON with the
 * documented fields, escaping, write failures (/dev/full), rotation. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "check.h"
#include "metrics.h"

#define THREADS	4
#define PER	1000

static char tmpdir[] = "/tmp/certgate-audit-XXXXXX";

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t n = 0, cap = 0, r;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap + 1);
		}
		r = fread(buf + n, 1, cap - n, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static size_t
count_lines(const char *path)
{
	size_t len, n = 0, i;
	char *b = slurp(path, &len);

	if (b == NULL)
		return 0;
	for (i = 0; i < len; i++)
		n += b[i] == '\n';
	free(b);
	return n;
}

static int
ts_ok(const char *ts)
{
	int y, mo, d, h, mi, s, ms;
	char z;

	return ts && strlen(ts) == 24 &&
	    sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z) == 8 &&
	    z == 'Z' && ts[4] == '-' && ts[10] == 'T' && ts[19] == '.';
}

static void *
writer(void *arg)
{
	int t = (int)(long)arg, i, fails = 0;
	char agent[32], name[64];
	struct audit_rec r = { 0 };

	snprintf(agent, sizeof(agent), "agent-%d", t);
	r.agent = agent;
	r.serial = "0A1B";
	r.peer = "127.0.0.1:5555";
	r.method = "tools/call";
	r.decision = "allow";
	r.status = 200;
	r.duration_ms = 1.5;
	r.name = name;
	for (i = 0; i < PER; i++) {
		/* long-ish names make interleaving visible if writes were split */
		snprintf(name, sizeof(name), "tool-%d-%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", t, i);
		if (audit_write(&r) != 0)
			fails++;
	}
	return (void *)(long)fails;
}

static void
test_concurrent(void)
{
	char path[256], *buf, *line, *save = NULL;
	static char seen[THREADS][PER];
	pthread_t th[THREADS];
	size_t len, lines = 0, bad = 0, dup = 0;
	struct stat st;
	void *rv;
	long fails = 0;
	int i;

	snprintf(path, sizeof(path), "%s/audit.jsonl", tmpdir);
	CHECK(audit_open(path) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	for (i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, writer, (void *)(long)i);
	for (i = 0; i < THREADS; i++) {
		pthread_join(th[i], &rv);
		fails += (long)rv;
	}
	CHECK(fails == 0);
	CHECK(audit_failing() == 0);
	buf = slurp(path, &len);
	CHECK(buf != NULL);
	if (buf == NULL)
		return;
	CHECK(len > 0 && buf[len - 1] == '\n');
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_error_t e;
		json_t *j = json_loads(line, 0, &e);
		int t, n;
		lines++;
		if (j == NULL || !json_is_object(j) ||
		    !ts_ok(json_string_value(json_object_get(j, "ts"))) ||
		    !json_is_string(json_object_get(j, "agent")) ||
		    strcmp(json_string_value(json_object_get(j, "serial")), "0A1B") != 0 ||
		    strcmp(json_string_value(json_object_get(j, "peer")), "127.0.0.1:5555") != 0 ||
		    strcmp(json_string_value(json_object_get(j, "method")), "tools/call") != 0 ||
		    strcmp(json_string_value(json_object_get(j, "decision")), "allow") != 0 ||
		    json_integer_value(json_object_get(j, "status")) != 200 ||
		    json_number_value(json_object_get(j, "duration_ms")) != 1.5 ||
		    json_object_get(j, "reason") != NULL || json_object_get(j, "session") != NULL ||
		    sscanf(json_string_value(json_object_get(j, "name")), "tool-%d-%d", &t, &n) != 2 ||
		    t < 0 || t >= THREADS || n < 0 || n >= PER) {
			bad++;
		} else if (seen[t][n]++)
			dup++;
		json_decref(j);
	}
	CHECK(lines == THREADS * PER);
	CHECK(bad == 0);
	CHECK(dup == 0);
	free(buf);
	CHECK(unlink(path) == 0);
}

static json_t *
last_line(const char *path, char **raw)
{
	size_t len;
	char *buf = slurp(path, &len), *p;
	json_t *j;

	if (buf == NULL || len == 0)
		return NULL;
	buf[len - 1] = '\0';
	p = strrchr(buf, '\n');
	p = p ? p + 1 : buf;
	j = json_loads(p, 0, NULL);
	if (raw)
		*raw = strdup(p);
	free(buf);
	return j;
}

static void
test_fields_and_escaping(void)
{
	struct audit_rec r = { 0 };
	char path[256], *raw = NULL;
	json_t *j;

	snprintf(path, sizeof(path), "%s/esc.jsonl", tmpdir);
	CHECK(audit_open(path) == 0);
	r.agent = "a\"b\\c\nd\te\x01" "f";
	r.name = "tool \"x\"\r\n\x7f end \xff\xfe ok \xc3\xa9";
	r.method = "POST /mcp";
	r.decision = "deny";
	r.reason = "scope \"tools:x\" missing";
	r.status = 403;
	r.duration_ms = 12.5;
	r.session = "sess-1";
	CHECK(audit_write(&r) == 0);
	j = last_line(path, &raw);
	CHECK(j != NULL);
	if (j) {
		CHECK_STR(json_string_value(json_object_get(j, "agent")), "a\"b\\c\nd\te\x01" "f");
		/* invalid UTF-8 becomes U+FFFD, valid multibyte passes through */
		CHECK_STR(json_string_value(json_object_get(j, "name")),
		    "tool \"x\"\r\n\x7f end \xef\xbf\xbd\xef\xbf\xbd ok \xc3\xa9");
		CHECK(json_is_null(json_object_get(j, "serial")));
		CHECK(json_is_null(json_object_get(j, "peer")));
		CHECK_STR(json_string_value(json_object_get(j, "reason")), "scope \"tools:x\" missing");
		CHECK_STR(json_string_value(json_object_get(j, "session")), "sess-1");
		CHECK_STR(json_string_value(json_object_get(j, "decision")), "deny");
		CHECK(json_integer_value(json_object_get(j, "status")) == 403);
	}
	CHECK(raw && strstr(raw, "\"duration_ms\":12.500") != NULL);
	CHECK(raw && strchr(raw, '\x01') == NULL && strchr(raw, '\x7f') == NULL);
	CHECK(raw && strncmp(raw, "{\"ts\":\"", 7) == 0);
	json_decref(j);
	free(raw);
	raw = NULL;

	/* durations and statuses are formatted by hand: the %.3f / %d results */
	{
		static const struct { double ms; int status; const char *want; } d[] = {
			{ 0, 200, ",\"status\":200,\"duration_ms\":0.000}" },
			{ 0.0006, 0, ",\"status\":0,\"duration_ms\":0.001}" },
			{ 1234.5678, 502, ",\"status\":502,\"duration_ms\":1234.568}" },
			{ 99.9996, 99, ",\"status\":99,\"duration_ms\":100.000}" },
			{ 1e12, -1, ",\"status\":-1,\"duration_ms\":1000000000000.000}" },
		};
		size_t k;

		for (k = 0; k < sizeof(d) / sizeof(d[0]); k++) {
			memset(&r, 0, sizeof(r));
			r.decision = "allow";
			r.duration_ms = d[k].ms;
			r.status = d[k].status;
			CHECK(audit_write(&r) == 0);
			j = last_line(path, &raw);
			CHECK(j != NULL);
			CHECK(raw && strstr(raw, d[k].want) != NULL);
			/* "ts": milliseconds always three digits */
			CHECK(raw && strlen(raw) > 32 && raw[26] == '.' && raw[30] == 'Z');
			json_decref(j);
			free(raw);
			raw = NULL;
		}
	}

	/* NaN duration still yields valid JSON */
	memset(&r, 0, sizeof(r));
	r.decision = "allow";
	r.duration_ms = 0.0 / 0.0;
	CHECK(audit_write(&r) == 0);
	j = last_line(path, &raw);
	CHECK(j != NULL);
	if (j) {
		CHECK(json_is_null(json_object_get(j, "agent")));
		CHECK(json_is_null(json_object_get(j, "name")));
		CHECK(json_object_get(j, "reason") == NULL);
		CHECK(json_object_get(j, "session") == NULL);
		CHECK(json_number_value(json_object_get(j, "duration_ms")) == 0);
	}
	json_decref(j);
	free(raw);
	CHECK(count_lines(path) == 7);
	unlink(path);
}

static void
test_failure(void)
{
	struct audit_rec r = { .decision = "allow", .status = 200 };
	char path[256];
	long before = metrics_get(M_AUDIT_WRITE_FAIL);

	CHECK(audit_open("/dev/full") == 0);
	CHECK(audit_write(&r) == -1);
	CHECK(audit_failing() == 1);
	CHECK(metrics_get(M_AUDIT_WRITE_FAIL) == before + 1);
	CHECK(audit_write(&r) == -1);	/* counted again, logged once */
	CHECK(metrics_get(M_AUDIT_WRITE_FAIL) == before + 2);
	snprintf(path, sizeof(path), "%s/ok.jsonl", tmpdir);
	CHECK(audit_open(path) == 0);
	CHECK(audit_write(&r) == 0);
	CHECK(audit_failing() == 0);
	CHECK(metrics_get(M_AUDIT_WRITE_FAIL) == before + 2);
	/* an unopenable path fails and keeps the previous descriptor */
	CHECK(audit_open("/nonexistent-dir/x.jsonl") == -1);
	CHECK(audit_write(&r) == 0);
	CHECK(count_lines(path) == 2);
	unlink(path);
}

static void
test_rotation(void)
{
	struct audit_rec r = { .decision = "allow", .status = 200 };
	char path[256], rot[256];

	snprintf(path, sizeof(path), "%s/rot.jsonl", tmpdir);
	snprintf(rot, sizeof(rot), "%s/rot.jsonl.1", tmpdir);
	CHECK(audit_open(path) == 0);
	CHECK(audit_write(&r) == 0);
	CHECK(audit_write(&r) == 0);
	CHECK(audit_check_file() == 0);	/* unchanged */
	CHECK(rename(path, rot) == 0);
	CHECK(audit_write(&r) == 0);	/* still goes to the renamed file */
	CHECK(audit_reopen() == 0);
	CHECK(audit_write(&r) == 0);
	CHECK(count_lines(rot) == 3);
	CHECK(count_lines(path) == 1);

	/* the file watcher path: rename, then unlink */
	CHECK(rename(path, rot) == 0);
	CHECK(audit_check_file() == 1);
	CHECK(audit_check_file() == 0);
	CHECK(audit_write(&r) == 0);
	CHECK(count_lines(path) == 1);
	CHECK(unlink(path) == 0);
	CHECK(audit_check_file() == 1);
	CHECK(audit_write(&r) == 0);
	CHECK(count_lines(path) == 1);
	audit_close();
	CHECK(audit_write(&r) == -1);	/* closed */
	unlink(path);
	unlink(rot);

	/* stderr mode: reopen and check are no-ops */
	CHECK(audit_open("-") == 0);
	CHECK(audit_reopen() == 0);
	CHECK(audit_check_file() == 0);
	audit_close();
}

/* request_id, rpc_id (scalar, from a request object, from a batch, absent for a
 * notification), subject and uri only for records without an agent. */
static void
test_ids_and_unmapped(void)
{
	static const struct {
		const char *id_json;    /* rpc_id, or NULL */
		const char *msg_json;   /* rpc_msg, or NULL */
		const char *want;       /* the rpc_id field as JSON, NULL: absent */
	} cases[] = {
		{ "7", NULL, "7" },
		{ "0", NULL, "0" },
		{ "-7", NULL, "-7" },
		{ "-9223372036854775808", NULL, "-9223372036854775808" },
		{ "9223372036854775807", NULL, "9223372036854775807" },
		{ "\"a\\\"b\"", NULL, "\"a\\\"b\"" },
		{ "null", NULL, "null" },
		{ "1.5", NULL, "1.5" },
		{ "{\"x\":1}", NULL, "null" },        /* not an id: null, never an object */
		{ NULL, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}", "3" },
		{ NULL, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", NULL },
		{ NULL, "[{\"id\":1,\"method\":\"a\"},{\"method\":\"n\"},{\"id\":\"x\",\"method\":\"b\"}]",
		  "[1,\"x\"]" },
		{ "9", "{\"id\":3}", "9" },           /* rpc_id wins */
		{ NULL, NULL, NULL },
	};
	struct audit_rec r;
	char path[256], rid[64], rid2[64], *raw = NULL, *got;
	json_t *id, *msg, *j, *v;
	size_t i;

	snprintf(path, sizeof(path), "%s/ids.jsonl", tmpdir);
	CHECK(audit_open(path) == 0);
	audit_request_id(rid, sizeof(rid), 42, 3);
	audit_request_id(rid2, sizeof(rid2), 42, 0);
	CHECK(strlen(rid) == 8 + strlen("-42-3") && strcmp(rid + 8, "-42-3") == 0);
	CHECK(strncmp(rid, rid2, 8) == 0 && strcmp(rid2 + 8, "-42-0") == 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		id = cases[i].id_json ? json_loads(cases[i].id_json, JSON_DECODE_ANY, NULL) : NULL;
		msg = cases[i].msg_json ? json_loads(cases[i].msg_json, 0, NULL) : NULL;
		memset(&r, 0, sizeof(r));
		r.decision = "allow";
		r.agent = "bot";
		r.request_id = rid;
		r.rpc_id = id;
		r.rpc_msg = msg;
		r.subject = "CN=bot";
		CHECK(audit_write(&r) == 0);
		j = last_line(path, &raw);
		CHECK(j != NULL);
		v = j ? json_object_get(j, "rpc_id") : NULL;
		if (cases[i].want == NULL)
			CHECK(v == NULL);
		else {
			got = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
			CHECK_STR(got, cases[i].want);
			free(got);
		}
		CHECK(j && json_is_string(json_object_get(j, "request_id")));
		CHECK(j && json_object_get(j, "subject") == NULL);   /* mapped: no subject */
		json_decref(j);
		json_decref(id);
		json_decref(msg);
		free(raw);
		raw = NULL;
	}
	memset(&r, 0, sizeof(r));
	r.decision = "deny";
	r.reason = "no_certificate";
	r.method = "tls";
	r.serial = "0A";
	r.subject = "CN=stranger,O=<x>";
	r.uri = "spiffe://other/agent/x";
	CHECK(audit_write(&r) == 0);
	j = last_line(path, &raw);
	CHECK(j != NULL);
	if (j) {
		CHECK_STR(json_string_value(json_object_get(j, "subject")), "CN=stranger,O=<x>");
		CHECK_STR(json_string_value(json_object_get(j, "uri")), "spiffe://other/agent/x");
		CHECK_STR(json_string_value(json_object_get(j, "method")), "tls");
		CHECK(json_is_null(json_object_get(j, "agent")));
	}
	json_decref(j);
	free(raw);
	unlink(path);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_concurrent();
	test_fields_and_escaping();
	test_failure();
	test_rotation();
	test_ids_and_unmapped();
	rmdir(tmpdir);
	CHECK_DONE();
}
