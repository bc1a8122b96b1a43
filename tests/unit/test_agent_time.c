/* agent_time.c: renewal moment, phases, back-off, formatting (tables). */
#include <string.h>

#include "agent_time.h"
#include "certify.h"
#include "check.h"

struct phase_case {
	time_t nb, na, now;
	enum agent_time_phase want;
};

static const struct phase_case phases[] = {
	{ 1000, 1180, 1000, AGENT_TIME_FRESH },
	{ 1000, 1180, 1119, AGENT_TIME_FRESH },
	{ 1000, 1180, 1120, AGENT_TIME_DUE },      /* 2/3 of 180 s */
	{ 1000, 1180, 1149, AGENT_TIME_DUE },
	{ 1000, 1180, 1150, AGENT_TIME_LATE },     /* 5/6 */
	{ 1000, 1180, 1179, AGENT_TIME_LATE },
	{ 1000, 1180, 1180, AGENT_TIME_EXPIRED },
	{ 1000, 1180, 999999, AGENT_TIME_EXPIRED },
	{ 1000, 1180, 0, AGENT_TIME_FRESH },       /* before not_before */
	{ 1000, 1000, 1000, AGENT_TIME_EXPIRED },  /* empty window */
	{ 1000, 900, 950, AGENT_TIME_EXPIRED },
	/* a day from certgate's CA: notBefore backdated by 300 s, renewal at 2/3 of the
	 * 86,100 s from the issuance at 300 */
	{ 0, 86400, 57700, AGENT_TIME_DUE },
	{ 0, 86400, 57699, AGENT_TIME_FRESH },
	{ 0, 86400, 72050, AGENT_TIME_LATE },
	{ 0, 86400, 72049, AGENT_TIME_DUE },
	/* 3 minutes from certgate's CA, issued at 1000 */
	{ 700, 1180, 1000, AGENT_TIME_FRESH },
	{ 700, 1180, 1119, AGENT_TIME_FRESH },
	{ 700, 1180, 1120, AGENT_TIME_DUE },
	{ 700, 1180, 1150, AGENT_TIME_LATE },
	{ 700, 1180, 1180, AGENT_TIME_EXPIRED },
	/* 2 minutes (the shortest), issued at 1000: renewal at 1080, late at 1100 */
	{ 700, 1120, 1079, AGENT_TIME_FRESH },
	{ 700, 1120, 1080, AGENT_TIME_DUE },
	{ 700, 1120, 1100, AGENT_TIME_LATE },
	/* one second short of backdating + 2 minutes: counted from notBefore (419 s) */
	{ 700, 1119, 978, AGENT_TIME_FRESH },
	{ 700, 1119, 979, AGENT_TIME_DUE },
};

struct backoff_case {
	time_t nb, na, now;
	unsigned attempt, rnd;
	long want;
};

static const struct backoff_case backoffs[] = {
	/* 3 minutes: base 3 s, cap 15 s */
	{ 0, 180, 120, 1, 0, 3 },
	{ 0, 180, 120, 2, 0, 6 },
	{ 0, 180, 120, 3, 0, 12 },
	{ 0, 180, 120, 4, 0, 15 },
	{ 0, 180, 120, 40, 0, 15 },
	{ 0, 180, 120, 1, 1, 3 },       /* jitter up to 10 %: 3/10 = 0 */
	{ 0, 180, 120, 4, 1, 16 },      /* 15 + 1 % 2 */
	{ 0, 180, 178, 4, 0, 2 },       /* never past not_after */
	{ 0, 180, 180, 4, 0, 15 },      /* expired: keep the cap */
	{ 0, 180, 500, 1, 0, 3 },
	/* 3 minutes from certgate's CA (issued at 1000): the same as above */
	{ 700, 1180, 1120, 1, 0, 3 },
	{ 700, 1180, 1120, 4, 0, 15 },
	/* a day: base 60 s, cap 1 h */
	{ 0, 86400, 60000, 1, 0, 60 },
	{ 0, 86400, 60000, 6, 0, 1920 },
	{ 0, 86400, 60000, 7, 0, 3600 },
	{ 0, 86400, 60000, 7, 360, 3960 },   /* + 360 % 361 */
	{ 0, 86400, 60000, 7, 361, 3600 },   /* + 361 % 361 */
	/* a year: base capped at 60 s, cap 1 h */
	{ 0, 31536000, 100, 1, 0, 60 },
	/* degenerate */
	{ 10, 10, 10, 1, 0, 1 },
	{ 0, 30, 0, 1, 0, 1 },
	{ 0, 30, 0, 3, 0, 4 },
	{ 0, 30, 0, 9, 0, 5 },
};

int
main(void)
{
	char b[64];
	size_t i;

	CHECK(agent_time_renew_at(1000, 1180) == 1120);
	CHECK(agent_time_renew_at(0, 1) == 0);
	CHECK(agent_time_renew_at(0, 2) == 1);
	CHECK(agent_time_renew_at(5, 5) == 5);
	CHECK(agent_time_late_at(1000, 1180) == 1150);
	CHECK(agent_time_late_at(5, 4) == 5);
	/* the agent counts lifetimes as the CA does */
	CHECK(AGENT_TIME_BACKDATE == CERTIFY_BACKDATE);
	CHECK(agent_time_issued(700, 1180) == 1000);
	CHECK(agent_time_issued(700, 1120) == 1000);
	CHECK(agent_time_issued(700, 1119) == 700);
	CHECK(agent_time_issued(0, 180) == 0);
	CHECK(agent_time_issued(10, 5) == 10);
	CHECK(agent_time_renew_at(700, 1180) == 1120);
	CHECK(agent_time_renew_at(0, 86400) == 57700);
	CHECK(agent_time_late_at(700, 1180) == 1150);
	CHECK(agent_time_map_pending(700, 1180, 1000));
	CHECK(agent_time_map_pending(700, 1180, 1009));
	CHECK(!agent_time_map_pending(700, 1180, 1010));
	CHECK(!agent_time_map_pending(700, 1180, 5000));
	CHECK(agent_time_map_pending(0, 180, 9));
	CHECK(!agent_time_map_pending(0, 180, 10));
	for (i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		enum agent_time_phase got = agent_time_phase(phases[i].nb, phases[i].na,
		    phases[i].now);

		if (got != phases[i].want)
			fprintf(stderr, "phase case %zu: got %d\n", i, (int)got);
		CHECK(got == phases[i].want);
	}
	for (i = 0; i < sizeof(backoffs) / sizeof(backoffs[0]); i++) {
		long got = agent_time_backoff(backoffs[i].nb, backoffs[i].na, backoffs[i].now,
		    backoffs[i].attempt, backoffs[i].rnd);

		if (got != backoffs[i].want)
			fprintf(stderr, "backoff case %zu: got %ld\n", i, got);
		CHECK(got == backoffs[i].want);
	}
	CHECK_STR(agent_time_fmt(0, b, sizeof(b)), "0s");
	CHECK_STR(agent_time_fmt(59, b, sizeof(b)), "59s");
	CHECK_STR(agent_time_fmt(60, b, sizeof(b)), "1m0s");
	CHECK_STR(agent_time_fmt(250, b, sizeof(b)), "4m10s");
	CHECK_STR(agent_time_fmt(7500, b, sizeof(b)), "2h5m");
	CHECK_STR(agent_time_fmt(86400 * 3 + 3600 * 4 + 5, b, sizeof(b)), "3d4h");
	CHECK_STR(agent_time_fmt(-12, b, sizeof(b)), "-12s");
	CHECK_STR(agent_time_fmt(-2147483647L - 1, b, sizeof(b)), "-24855d3h");
	CHECK_STR(agent_time_iso(0, b, sizeof(b)), "1970-01-01T00:00:00Z");
	CHECK_STR(agent_time_iso(1700000000, b, sizeof(b)), "2023-11-14T22:13:20Z");
	CHECK_DONE();
}
