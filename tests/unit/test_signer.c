/* signer: the pool with a fake sign function, driven by OpenSSL async jobs the
 * way a handshake drives it: direct call outside a job, pause + wait fd +
 * result inside one, refusal when threads and queue are full, timeout. */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/evp.h>

#include "check.h"
#include "signer.h"

static atomic_int fake_delay_ms;
static atomic_int fake_fail;
static atomic_int fake_calls;
static EVP_PKEY_CTX *ctx;

/* "Signs" by copying the digest backwards. */
static int
fake_sign(EVP_PKEY_CTX *c, unsigned char *sig, size_t *siglen, const unsigned char *tbs,
    size_t tbslen)
{
	size_t i;

	atomic_fetch_add(&fake_calls, 1);
	if (atomic_load(&fake_delay_ms) > 0)
		usleep((useconds_t)atomic_load(&fake_delay_ms) * 1000);
	if (atomic_load(&fake_fail) || *siglen < tbslen)
		return 0;
	for (i = 0; i < tbslen; i++)
		sig[i] = tbs[tbslen - 1 - i];
	*siglen = tbslen;
	return 1;
}

struct job {
	struct signer_pool *p;
	ASYNC_JOB *job;
	ASYNC_WAIT_CTX *wctx;
	unsigned char sig[32];
	size_t siglen;
	int res;
	int done;
	int pauses;
};

static int
job_main(void *arg)
{
	struct job *j = *(struct job **)arg;

	j->siglen = sizeof(j->sig);
	j->res = signer_sign(j->p, fake_sign, ctx, j->sig, &j->siglen,
	    (const unsigned char *)"digest", 6);
	return 0;
}

/* Starts or resumes j; returns 1 when it finished. */
static int
job_step(struct job *j)
{
	int ret = 0, r;

	r = ASYNC_start_job(&j->job, j->wctx, &ret, job_main, &j, sizeof(j));
	if (r == ASYNC_PAUSE) {
		j->pauses++;
		return 0;
	}
	CHECK(r == ASYNC_FINISH);
	j->done = 1;
	return 1;
}

/* Waits up to ms for j's wait fd. 1 when readable. */
static int
job_wait(struct job *j, int ms)
{
	OSSL_ASYNC_FD fd;
	size_t n = 0;
	struct pollfd pfd;

	if (ASYNC_WAIT_CTX_get_all_fds(j->wctx, NULL, &n) != 1 || n != 1)
		return -1;
	ASYNC_WAIT_CTX_get_all_fds(j->wctx, &fd, &n);
	pfd.fd = fd;
	pfd.events = POLLIN;
	return poll(&pfd, 1, ms) == 1;
}

static void
job_init(struct job *j, struct signer_pool *p)
{
	memset(j, 0, sizeof(*j));
	j->p = p;
	j->wctx = ASYNC_WAIT_CTX_new();
	CHECK(j->wctx != NULL);
}

static void
job_free(struct job *j)
{
	ASYNC_WAIT_CTX_free(j->wctx);
}

static void
test_direct(struct signer_pool *p)
{
	unsigned char sig[32];
	size_t siglen = sizeof(sig);

	atomic_store(&fake_calls, 0);
	CHECK(signer_sign(p, fake_sign, ctx, sig, &siglen, (const unsigned char *)"ab", 2) == 1);
	CHECK(siglen == 2 && sig[0] == 'b' && sig[1] == 'a');
	CHECK(atomic_load(&fake_calls) == 1);
}

static void
test_async_ok(struct signer_pool *p)
{
	struct job j;

	atomic_store(&fake_delay_ms, 100);
	job_init(&j, p);
	CHECK(job_step(&j) == 0);	/* paused while the pool signs */
	CHECK(job_wait(&j, 2000) == 1);
	while (!job_step(&j))
		CHECK(job_wait(&j, 2000) == 1);
	CHECK(j.res == 1);
	CHECK(j.siglen == 6 && memcmp(j.sig, "tsegid", 6) == 0);
	job_free(&j);

	/* a failing token fails the sign, nothing else */
	atomic_store(&fake_fail, 1);
	job_init(&j, p);
	while (!job_step(&j))
		CHECK(job_wait(&j, 2000) == 1);
	CHECK(j.res == 0);
	job_free(&j);
	atomic_store(&fake_fail, 0);
	atomic_store(&fake_delay_ms, 0);
}

/* One thread, no queue: while one signature runs, the next is refused at once. */
static void
test_refused(void)
{
	struct signer_pool *p = signer_pool_new(1, 0, 5000);
	struct job a, b;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	atomic_store(&fake_delay_ms, 300);
	job_init(&a, p);
	job_init(&b, p);
	CHECK(job_step(&a) == 0);
	usleep(50 * 1000);		/* a's signature is running */
	CHECK(job_step(&b) == 1);	/* refused without pausing */
	CHECK(b.res == 0 && b.pauses == 0);
	while (!job_step(&a))
		CHECK(job_wait(&a, 2000) == 1);
	CHECK(a.res == 1);
	job_free(&a);
	job_free(&b);
	atomic_store(&fake_delay_ms, 0);
	signer_pool_free(p);
}

/* A signature slower than the timeout fails the job once it is resumed after
 * the deadline; the pool survives and serves the next one. */
static void
test_timeout(void)
{
	struct signer_pool *p = signer_pool_new(1, 4, 100);
	struct job a;

	CHECK(p != NULL);
	if (p == NULL)
		return;
	atomic_store(&fake_delay_ms, 400);
	job_init(&a, p);
	CHECK(job_step(&a) == 0);
	CHECK(job_wait(&a, 150) == 0);	/* not done within the timeout */
	CHECK(job_step(&a) == 1);
	CHECK(a.res == 0);
	job_free(&a);
	atomic_store(&fake_delay_ms, 0);
	test_async_ok(p);
	signer_pool_free(p);
}

int
main(void)
{
	struct signer_pool *p;

	if (!signer_async_capable()) {
		printf("async jobs not supported here: skipped\n");
		return 0;
	}
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	CHECK(ctx != NULL);
	CHECK(signer_pool_new(0, 1, 1) == NULL);
	p = signer_pool_new(2, 4, 5000);
	CHECK(p != NULL);
	if (p != NULL) {
		test_direct(NULL);
		test_direct(p);		/* outside a job: direct */
		test_async_ok(p);
		signer_pool_free(p);
	}
	test_refused();
	test_timeout();
	EVP_PKEY_CTX_free(ctx);
	ASYNC_cleanup_thread();
	CHECK_DONE();
}
