/* procstat: /proc/PID/stat parsing (command names with spaces and parentheses,
 * negative fields, malformed texts) and a read of our own process. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "procstat.h"

/* Fields 3..24 after the command: utime 14 = 250, stime 15 = 50, starttime 22 =
 * 1000, vsize 23 = 123456789, rss 24 = 300. */
#define TAIL " S 1 2 3 0 -1 4194304 10 0 0 0 250 50 0 0 20 -5 4 0 1000 123456789 300 " \
	"18446744073709551615 1 2 3 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"

static void
test_parse(void)
{
	static const struct {
		const char *text;
		int ok;
	} cases[] = {
		{ "1234 (certgate)" TAIL, 1 },
		{ "1234 (cert gate) x)" TAIL, 1 },      /* fields count after the last ')' */
		{ "1234 ((sd-pam))" TAIL, 1 },
		{ "1234 (certgate)", 0 },
		{ "1234 certgate" TAIL, 0 },
		{ "1234 (certgate) S 1 2 3\n", 0 },
		{ "1234 (certgate) S 1 2 3 0 -1 4194304 10 0 0 0 x 50 0 0 20 0 4 0 1000 1 1\n", 0 },
		{ "", 0 },
	};
	struct procstat ps;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&ps, 0, sizeof(ps));
		CHECK((procstat_parse_stat(cases[i].text, strlen(cases[i].text), 100, 4096,
		    1700000000.0, &ps) == 0) == cases[i].ok);
		if (!cases[i].ok)
			continue;
		CHECK(ps.cpu_seconds == 3.0);
		CHECK(ps.start_time == 1700000010.0);
		CHECK(ps.vsize == 123456789ULL);
		CHECK(ps.rss == 300ULL * 4096);
	}
	CHECK(procstat_parse_stat("1 (x)" TAIL, strlen("1 (x)" TAIL), 0, 4096, 0, &ps) == -1);
}

static void
test_self(void)
{
	struct procstat ps;
	double now = (double)time(NULL);

	CHECK(procstat_read(&ps) == 0);
	CHECK(ps.rss > 0 && ps.vsize >= ps.rss);
	CHECK(ps.open_fds >= 3);
	CHECK(ps.max_fds > 0);
	/* started in the last 10 minutes, not in the future (boot time from the clocks) */
	CHECK(ps.start_time <= now + 1 && ps.start_time > now - 600);
}

int
main(void)
{
	test_parse();
	test_self();
	CHECK_DONE();
}
