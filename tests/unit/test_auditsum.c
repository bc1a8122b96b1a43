/* auditsum: time parsing (table), aggregation per agent over a window, malformed
 * lines, the bound on distinct values, and both output formats. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditsum.h"
#include "check.h"

#define NOW 1800000000000LL     /* 2027-01-15T08:00:00Z */

static void
test_times(void)
{
	static const struct {
		const char *s;
		int ok;
		long long ms;
	} cases[] = {
		{ "2027-01-15T08:00:00Z", 1, NOW },
		{ "2027-01-15T08:00:00.250Z", 1, NOW + 250 },
		{ "2027-01-15T09:30:00+01:30", 1, NOW },
		{ "2027-01-15T06:00:00-02:00", 1, NOW },
		{ "2027-01-15", 1, NOW - 8 * 3600000LL },
		{ "1970-01-01T00:00:00Z", 1, 0 },
		{ "2000-02-29T00:00:00Z", 1, 951782400000LL },
		{ "90m", 1, NOW - 90 * 60000LL },
		{ "24h", 1, NOW - 24 * 3600000LL },
		{ "7d", 1, NOW - 7 * 86400000LL },
		{ "2w", 1, NOW - 14 * 86400000LL },
		{ "1.5h", 1, NOW - 90 * 60000LL },
		{ "7", 0, 0 },
		{ "7x", 0, 0 },
		{ "-1d", 0, 0 },
		{ "d", 0, 0 },
		{ "2027-13-01", 0, 0 },
		{ "2027-01-15T25:00:00Z", 0, 0 },
		{ "2027-01-15T08:00:00", 0, 0 },       /* no zone */
		{ "2027-01-15T08:00:00Zjunk", 0, 0 },
		{ "", 0, 0 },
	};
	long long ms;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms = -1;
		CHECK((auditsum_parse_time(cases[i].s, NOW, &ms) == 0) == cases[i].ok);
		if (cases[i].ok && ms != cases[i].ms)
			fprintf(stderr, "case %zu (%s): %lld != %lld\n", i, cases[i].s, ms,
			    cases[i].ms);
		if (cases[i].ok)
			CHECK(ms == cases[i].ms);
	}
}

static const char *const lines[] = {
	"{\"ts\":\"2027-01-10T00:00:00.000Z\",\"agent\":\"bot\",\"peer\":\"10.0.0.1:5000\","
	    "\"method\":\"tools/call\",\"name\":\"echo\",\"decision\":\"allow\",\"status\":200}",
	"{\"ts\":\"2027-01-10T00:00:01.000Z\",\"agent\":\"bot\",\"peer\":\"10.0.0.1:5001\","
	    "\"method\":\"tools/call\",\"name\":\"echo\",\"decision\":\"allow\",\"status\":200}",
	"{\"ts\":\"2027-01-10T00:00:02.000Z\",\"agent\":\"bot\",\"peer\":\"10.0.0.2:5001\","
	    "\"method\":\"tools/call\",\"name\":\"rm\",\"decision\":\"deny\",\"reason\":\"missing scope\","
	    "\"status\":403}",
	"{\"ts\":\"2027-01-10T00:00:03.000Z\",\"agent\":\"bot\",\"peer\":\"[::1]:6000\","
	    "\"method\":\"tools/list\",\"name\":null,\"decision\":\"allow\",\"status\":200}",
	"{\"ts\":\"2027-01-10T00:00:04.000Z\",\"agent\":\"bot\",\"peer\":\"10.0.0.1:5002\","
	    "\"method\":\"initialize\",\"decision\":\"deny\",\"reason\":\"rate limited\",\"status\":429}\n",
	"{\"ts\":\"2027-01-10T00:00:05.000Z\",\"agent\":null,\"peer\":\"192.0.2.9:1\","
	    "\"method\":\"tls\",\"decision\":\"deny\",\"reason\":\"no_certificate\",\"status\":0}",
	/* outside the window */
	"{\"ts\":\"2027-01-01T00:00:00.000Z\",\"agent\":\"bot\",\"peer\":\"10.9.9.9:1\","
	    "\"method\":\"tools/call\",\"name\":\"old\",\"decision\":\"allow\",\"status\":200}",
	"{\"ts\":\"2027-01-20T00:00:00.000Z\",\"agent\":\"late\",\"peer\":\"10.9.9.9:1\","
	    "\"method\":\"ping\",\"decision\":\"allow\",\"status\":200}",
	/* not audit records */
	"not json",
	"{\"agent\":\"bot\",\"decision\":\"allow\"}",
	"{\"ts\":\"yesterday\",\"decision\":\"allow\"}",
	"[1,2]",
	"",
};

static void
test_summary(void)
{
	struct auditsum *s;
	long long since, until;
	struct buf b;
	json_t *j, *bot, *un;
	size_t i;
	int counted = 0, outside = 0, bad = 0, r;

	CHECK(auditsum_parse_time("2027-01-05", NOW, &since) == 0);
	CHECK(auditsum_parse_time("2027-01-15", NOW, &until) == 0);
	CHECK((s = auditsum_new(since, until)) != NULL);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		r = auditsum_line(s, lines[i], strlen(lines[i]));
		counted += r == 0;
		outside += r == 1;
		bad += r == -1;
	}
	CHECK(counted == 6);
	CHECK(outside == 3);    /* two outside the window, one blank line */
	CHECK(bad == 4);

	buf_init(&b);
	CHECK(auditsum_format(s, 0, &b) == 0);
	CHECK(strstr(buf_str(&b), "6 records from 2027-01-10T00:00:00Z to 2027-01-10T00:00:05Z, "
	    "2 agents (2 outside the window) (4 lines are not audit records)\n") != NULL);
	CHECK(strstr(buf_str(&b), "agent bot: 5 calls, 3 allowed, 2 denied\n") != NULL);
	CHECK(strstr(buf_str(&b), "  tools:     echo 2, rm (denied) 1\n") != NULL);
	CHECK(strstr(buf_str(&b), "  methods:   tools/call 3, initialize 1, tools/list 1\n") != NULL);
	CHECK(strstr(buf_str(&b), "  denials:   missing scope 1, rate limited 1\n") != NULL);
	CHECK(strstr(buf_str(&b), "  from:      10.0.0.1 3, 10.0.0.2 1, ::1 1\n") != NULL);
	CHECK(strstr(buf_str(&b), "agent (unmapped): 1 calls, 0 allowed, 1 denied\n") != NULL);
	CHECK(strstr(buf_str(&b), "  denials:   no_certificate 1\n") != NULL);
	CHECK(strstr(buf_str(&b), "old") == NULL && strstr(buf_str(&b), "late") == NULL);
	buf_free(&b);

	buf_init(&b);
	CHECK(auditsum_format(s, 1, &b) == 0);
	j = json_loads(buf_str(&b), 0, NULL);
	CHECK(j != NULL);
	CHECK(json_integer_value(json_object_get(j, "records")) == 6);
	bot = json_array_get(json_object_get(j, "agents"), 1);
	un = json_array_get(json_object_get(j, "agents"), 0);
	CHECK_STR(json_string_value(json_object_get(un, "agent")), "(unmapped)");
	CHECK_STR(json_string_value(json_object_get(bot, "agent")), "bot");
	CHECK(json_integer_value(json_object_get(json_object_get(bot, "tools"), "echo")) == 2);
	CHECK(json_integer_value(json_object_get(json_object_get(bot, "denials"),
	    "missing scope")) == 1);
	CHECK(json_integer_value(json_object_get(json_object_get(bot, "addresses"),
	    "10.0.0.1")) == 3);
	json_decref(j);
	buf_free(&b);
	auditsum_free(s);
}

/* A client that calls many tool names cannot grow the summary without bound. */
static void
test_bound(void)
{
	struct auditsum *s = auditsum_new(0, 0);
	char line[256];
	struct buf b;
	json_t *j, *tools;
	int i;

	CHECK(s != NULL);
	for (i = 0; i < AUDITSUM_MAX_KEYS + 500; i++) {
		snprintf(line, sizeof(line), "{\"ts\":\"2027-01-10T00:00:00Z\",\"agent\":\"bot\","
		    "\"peer\":\"1.2.3.4:1\",\"method\":\"tools/call\",\"name\":\"t%d\","
		    "\"decision\":\"allow\"}", i);
		CHECK(auditsum_line(s, line, strlen(line)) == 0);
	}
	buf_init(&b);
	CHECK(auditsum_format(s, 1, &b) == 0);
	j = json_loads(buf_str(&b), 0, NULL);
	tools = json_object_get(json_array_get(json_object_get(j, "agents"), 0), "tools");
	CHECK(json_object_size(tools) == AUDITSUM_MAX_KEYS + 1);
	CHECK(json_integer_value(json_object_get(tools, "(other)")) == 500);
	json_decref(j);
	buf_free(&b);
	auditsum_free(s);
}

int
main(void)
{
	test_times();
	test_summary();
	test_bound();
	CHECK_DONE();
}
