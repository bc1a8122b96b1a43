/* rate.c: token bucket arithmetic, parameter changes, concurrent use. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include "check.h"
#include "rate.h"

static void
test_bucket(void)
{
	struct rate_table *t = rate_table_new();
	double ra = -1;
	int i, ok = 0;

	CHECK(t != NULL);
	/* full bucket: burst requests at once, then refusal */
	for (i = 0; i < 5; i++)
		ok += rate_take(t, "a", 2, 5, 100.0, &ra);
	CHECK(ok == 5);
	CHECK(rate_take(t, "a", 2, 5, 100.0, &ra) == 0);
	CHECK(fabs(ra - 0.5) < 1e-9);           /* (1 - 0) / 2 per second */
	/* another agent has its own bucket */
	CHECK(rate_take(t, "b", 2, 5, 100.0, &ra) == 1);
	/* a quarter second refills half a token: still refused, shorter wait */
	CHECK(rate_take(t, "a", 2, 5, 100.25, &ra) == 0);
	CHECK(fabs(ra - 0.25) < 1e-9);
	CHECK(rate_take(t, "a", 2, 5, 100.5, &ra) == 1);
	CHECK(rate_take(t, "a", 2, 5, 100.5, &ra) == 0);
	/* a long pause refills only up to the burst */
	ok = 0;
	for (i = 0; i < 10; i++)
		ok += rate_take(t, "a", 2, 5, 1000.0, &ra);
	CHECK(ok == 5);
	/* time going backwards neither refills nor breaks anything */
	CHECK(rate_take(t, "a", 2, 5, 999.0, &ra) == 0);
	CHECK(ra > 0);
	/* changed parameters: bucket reset to full */
	ok = 0;
	for (i = 0; i < 10; i++)
		ok += rate_take(t, "a", 2, 3, 1000.0, &ra);
	CHECK(ok == 3);
	ok = 0;
	for (i = 0; i < 10; i++)
		ok += rate_take(t, "a", 1, 3, 1000.0, &ra);
	CHECK(ok == 3);
	CHECK(fabs(ra - 1.0) < 1e-9);
	/* unlimited */
	for (i = 0; i < 1000; i++)
		CHECK(rate_take(t, "a", 0, 0, 1000.0, &ra) == 1);
	/* burst below one behaves as one */
	CHECK(rate_take(t, "c", 1, 0, 5.0, &ra) == 1);
	CHECK(rate_take(t, "c", 1, 0, 5.0, &ra) == 0);
	/* slow rate: Retry-After well above a second */
	CHECK(rate_take(t, "d", 0.1, 1, 0, &ra) == 1);
	CHECK(rate_take(t, "d", 0.1, 1, 0, &ra) == 0);
	CHECK(fabs(ra - 10) < 1e-9);
	/* many agents (table growth) keep their own buckets */
	{
		char id[32];
		int granted = 0;

		for (i = 0; i < 5000; i++) {
			snprintf(id, sizeof(id), "agent-%d", i);
			granted += rate_take(t, id, 1, 1, 0, &ra);
		}
		for (i = 0; i < 5000; i++) {
			snprintf(id, sizeof(id), "agent-%d", i);
			granted += rate_take(t, id, 1, 1, 0, &ra);
		}
		CHECK(granted == 5000);
	}
	rate_table_free(t);
	rate_table_free(NULL);
}

struct worker {
	struct rate_table *t;
	int granted;
};

static void *
worker(void *arg)
{
	struct worker *w = arg;
	double ra;
	int i;

	/* time stands still: together the threads may take exactly the burst */
	for (i = 0; i < 10000; i++)
		w->granted += rate_take(w->t, "shared", 1, 1000, 50.0, &ra);
	return NULL;
}

static void
test_threads(void)
{
	struct worker w[4];
	pthread_t th[4];
	int i, total = 0;

	w[0].t = rate_table_new();
	for (i = 0; i < 4; i++) {
		w[i].t = w[0].t;
		w[i].granted = 0;
		pthread_create(&th[i], NULL, worker, &w[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += w[i].granted;
	}
	CHECK(total == 1000);
	rate_table_free(w[0].t);
}

int
main(void)
{
	test_bucket();
	test_threads();
	CHECK_DONE();
}
