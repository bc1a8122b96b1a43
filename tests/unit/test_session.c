/* session.c: binding, checking, removal, eviction, concurrent use. */
#include <pthread.h>
#include <stdio.h>

#include "check.h"
#include "session.h"

static void
test_basic(void)
{
	struct session_table *t = session_table_new();

	CHECK(t != NULL);
	CHECK(session_check(t, "s1", "alice") == -1);
	CHECK(session_bind(t, "s1", "alice") == 0);
	CHECK(session_check(t, "s1", "alice") == 1);
	CHECK(session_check(t, "s1", "bob") == 0);
	CHECK(session_bind(t, "s1", "alice") == 0);   /* idempotent */
	CHECK(session_bind(t, "s1", "bob") == -1);    /* no stealing */
	CHECK(session_check(t, "s1", "alice") == 1);
	CHECK(session_bind(t, "s2", "bob") == 0);
	CHECK(session_count(t) == 2);
	session_remove(t, "s1");
	session_remove(t, "unknown");
	CHECK(session_check(t, "s1", "alice") == -1);
	CHECK(session_bind(t, "s1", "bob") == 0);     /* free again after removal */
	CHECK(session_check(t, "s1", "bob") == 1);
	CHECK(session_check(t, "s2", "bob") == 1);
	CHECK(session_count(t) == 2);
	CHECK(session_bind(t, NULL, "a") == -1);
	CHECK(session_check(t, "s1", NULL) == -1);
	session_table_free(t);
	session_table_free(NULL);
}

static void
test_eviction(void)
{
	struct session_table *t = session_table_new_cap(3);
	struct session_table *big;
	char sid[32];
	int i, ok = 1;

	session_bind(t, "a", "x");
	session_bind(t, "b", "x");
	session_bind(t, "c", "x");
	CHECK(session_check(t, "a", "x") == 1);   /* a is now the most recently used */
	session_bind(t, "d", "x");                /* evicts b */
	CHECK(session_count(t) == 3);
	CHECK(session_check(t, "b", "x") == -1);
	CHECK(session_check(t, "a", "x") == 1);
	CHECK(session_check(t, "c", "x") == 1);
	CHECK(session_check(t, "d", "x") == 1);
	session_table_free(t);

	/* the default cap: 100,000 */
	big = session_table_new();
	for (i = 0; i <= 100000; i++) {
		snprintf(sid, sizeof(sid), "sid-%d", i);
		ok &= session_bind(big, sid, "agent") == 0;
	}
	CHECK(ok);
	CHECK(session_count(big) == 100000);
	CHECK(session_check(big, "sid-0", "agent") == -1);
	CHECK(session_check(big, "sid-1", "agent") == 1);
	CHECK(session_check(big, "sid-100000", "agent") == 1);
	session_table_free(big);
}

static struct session_table *shared;

/* Each thread binds its own sessions (which must always check as its own) and races
 * the others for one shared sid (which only ever belongs to one agent). */
static void *
worker(void *arg)
{
	char sid[32], agent[16];
	long i, id = (long)arg, won = 0;

	snprintf(agent, sizeof(agent), "agent-%ld", id);
	for (i = 0; i < 5000; i++) {
		snprintf(sid, sizeof(sid), "t%ld-%ld", id, i);
		if (session_bind(shared, sid, agent) != 0 || session_check(shared, sid, agent) != 1)
			return (void *)-1L;
		if (i % 3 == 0)
			session_remove(shared, sid);
		won += session_bind(shared, "contended", agent) == 0;
	}
	return (void *)won;
}

static void
test_threads(void)
{
	pthread_t th[4];
	void *rv;
	long i, winners = 0, failed = 0;

	shared = session_table_new();
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], &rv);
		if ((long)rv == -1)
			failed++;
		else if ((long)rv > 0) {
			winners++;
			CHECK((long)rv == 5000);
		}
	}
	CHECK(failed == 0);
	CHECK(winners == 1);
	CHECK(session_count(shared) == 4 * (5000 - 1667) + 1);
	session_table_free(shared);
}

int
main(void)
{
	test_basic();
	test_eviction();
	test_threads();
	CHECK_DONE();
}
