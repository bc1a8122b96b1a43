/* Signer pool: private-key operations on threads of their own while the handshake
 * waits in a paused OpenSSL async job (see signer.h).
 *
 * Why a pool and not the job itself: an async job only helps when whatever it
 * waits for runs elsewhere. A token signature is a blocking C_Sign; run inside the
 * job it would block the worker's whole event loop for the HSM's latency. Each pool
 * thread signs in a PKCS#11 session of its own (p11.c opens one per thread, not from
 * libp11's shared pool, which blocks for ever once the token refuses sessions), so up
 * to `threads` signatures run in parallel in the token.
 *
 * Ownership: a request is shared by the paused job and a pool thread, refcounted
 * under the pool mutex. The pool thread works on its own copies (a duplicate
 * EVP_PKEY_CTX, the digest, an output buffer), so the job may give up (timeout,
 * teardown) at any time without waiting for the token. The wait fd belongs to the
 * SSL's ASYNC_WAIT_CTX (closed by SSL_free); a request that was given up forgets it
 * under the mutex, so a late completion never writes to a recycled descriptor. */
#include "signer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>

#include "log.h"
#include "metrics.h"

struct signer_req {
	TAILQ_ENTRY(signer_req) link;
	signer_sign_fn fn;
	EVP_PKEY_CTX *ctx;      /* duplicate of the caller's, owned */
	unsigned char *tbs;
	size_t tbslen;
	unsigned char *sig;     /* output, sigcap bytes */
	size_t siglen;
	int fd;                 /* wait fd to signal; -1 once the job gave up */
	int refs;               /* job + pool */
	int queued;
	int done;
	int result;
	struct timespec t0;
};

struct signer_pool {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	TAILQ_HEAD(, signer_req) q;
	pthread_t *tids;
	int nthreads;
	int nstarted;
	int queue_max;
	int timeout_ms;
	int nqueued;
	int nbusy;
	int stop;
};

/* The key under which the wait fd sits in an SSL's ASYNC_WAIT_CTX. */
static const char signer_fd_key;

/* Set by signer_ssl_abandon while it resumes a job that must give up. Jobs run on
 * the thread that resumes them, so a thread-local flag reaches the paused sign. */
static __thread int signer_abandoning;

/* Metrics: process-wide atomics so that rendering never touches a pool that is
 * being freed. */
static struct metrics_hist signer_lat = METRICS_HIST("signer_latency_seconds",
    "Signature latency from hand-off to completion (queue wait included).",
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10);
enum { SR_OK, SR_ERROR, SR_TIMEOUT, SR_REFUSED, SR_ABANDONED, SR_COUNT };
static const char *const signer_result_names[SR_COUNT] = {
	"ok", "error", "timeout", "refused", "abandoned"
};
static atomic_long signer_results[SR_COUNT];
static atomic_long signer_g_threads, signer_g_queued, signer_g_busy;
static atomic_llong signer_refuse_logged;	/* monotonic second of the last log */

static double
signer_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
signer_metrics(FILE *f)
{
	size_t i;

	fprintf(f, "# HELP certgate_signer_threads Signer threads running token private-key "
	    "operations off the event loop.\n# TYPE certgate_signer_threads gauge\n"
	    "certgate_signer_threads %ld\n", atomic_load(&signer_g_threads));
	fprintf(f, "# HELP certgate_signer_queue_depth Signatures waiting for a signer "
	    "thread.\n# TYPE certgate_signer_queue_depth gauge\n"
	    "certgate_signer_queue_depth %ld\n", atomic_load(&signer_g_queued));
	fprintf(f, "# HELP certgate_signer_inflight Signatures running in the token.\n"
	    "# TYPE certgate_signer_inflight gauge\ncertgate_signer_inflight %ld\n",
	    atomic_load(&signer_g_busy));
	fprintf(f, "# HELP certgate_signer_refused_total Handshakes refused because every "
	    "signer thread was busy and the queue was full.\n"
	    "# TYPE certgate_signer_refused_total counter\n"
	    "certgate_signer_refused_total %ld\n", atomic_load(&signer_results[SR_REFUSED]));
	fprintf(f, "# HELP certgate_signer_signs_total Signatures handed to the signer "
	    "pool, by result.\n# TYPE certgate_signer_signs_total counter\n");
	for (i = 0; i < SR_COUNT; i++)
		fprintf(f, "certgate_signer_signs_total{result=\"%s\"} %ld\n",
		    signer_result_names[i], atomic_load(&signer_results[i]));
	metrics_hist_render(f, &signer_lat);
}

void
signer_stats(struct signer_stats *out)
{
	out->threads = atomic_load(&signer_g_threads);
	out->queued = atomic_load(&signer_g_queued);
	out->busy = atomic_load(&signer_g_busy);
	out->ok = atomic_load(&signer_results[SR_OK]);
	out->error = atomic_load(&signer_results[SR_ERROR]);
	out->timeout = atomic_load(&signer_results[SR_TIMEOUT]);
	out->refused = atomic_load(&signer_results[SR_REFUSED]);
	out->abandoned = atomic_load(&signer_results[SR_ABANDONED]);
}

int
signer_async_capable(void)
{
	return ASYNC_is_capable();
}

/* ------------------------------------------------------------------------- */
/* Requests (pool mutex held) */

static void
signer_req_free(struct signer_req *r)
{
	EVP_PKEY_CTX_free(r->ctx);
	if (r->sig != NULL)
		OPENSSL_cleanse(r->sig, r->siglen);
	free(r->sig);
	free(r->tbs);
	free(r);
}

static void
signer_req_unref(struct signer_req *r)
{
	if (--r->refs == 0)
		signer_req_free(r);
}

static void
signer_notify(struct signer_req *r)
{
	uint64_t one = 1;

	if (r->fd != -1 && write(r->fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_warn("cannot wake the handshake: %s", strerror(errno));
}

static void
signer_gauges(struct signer_pool *p)
{
	atomic_store(&signer_g_queued, p->nqueued);
	atomic_store(&signer_g_busy, p->nbusy);
}

/* ------------------------------------------------------------------------- */
/* Pool threads */

/* Logs the thread's OpenSSL errors with their data strings (the PKCS#11 call and
 * return code), which log_sslerr leaves out. Drains the queue. */
static void
signer_log_failure(void)
{
	char msg[1024], one[256];
	const char *data;
	unsigned long e;
	size_t n = 0;
	int flags, r;

	msg[0] = '\0';
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		/* Our own errors carry the whole story in their data string. */
		if ((flags & ERR_TXT_STRING) && data != NULL && *data != '\0')
			snprintf(one, sizeof(one), "%s", data);
		else
			ERR_error_string_n(e, one, sizeof(one));
		r = snprintf(msg + n, sizeof(msg) - n, "%s%s", n ? "; " : "", one);
		if (r < 0 || (size_t)r >= sizeof(msg) - n)
			break;
		n += (size_t)r;
	}
	log_warn("token signature failed: %s", n ? msg : "no error recorded");
}

static void *
signer_main(void *arg)
{
	struct signer_pool *p = arg;
	struct signer_req *r;
	int res;

	pthread_mutex_lock(&p->mtx);
	for (;;) {
		while (!p->stop && TAILQ_EMPTY(&p->q))
			pthread_cond_wait(&p->cv, &p->mtx);
		if ((r = TAILQ_FIRST(&p->q)) == NULL)
			break;
		TAILQ_REMOVE(&p->q, r, link);
		r->queued = 0;
		p->nqueued--;
		p->nbusy++;
		signer_gauges(p);
		pthread_mutex_unlock(&p->mtx);

		res = r->fn(r->ctx, r->sig, &r->siglen, r->tbs, r->tbslen);
		if (res <= 0)
			signer_log_failure();
		ERR_clear_error();
		/* The key reference goes now, not whenever the job looks. */
		EVP_PKEY_CTX_free(r->ctx);
		r->ctx = NULL;
		metrics_hist_observe(&signer_lat, signer_ms_since(&r->t0) / 1e3);

		pthread_mutex_lock(&p->mtx);
		p->nbusy--;
		signer_gauges(p);
		r->result = res;
		r->done = 1;
		signer_notify(r);
		signer_req_unref(r);
	}
	pthread_mutex_unlock(&p->mtx);
	return NULL;
}

struct signer_pool *
signer_pool_new(int threads, int queue, int timeout_ms)
{
	struct signer_pool *p;
	int i;

	if (threads < 1 || queue < 0 || timeout_ms < 1) {
		log_err("bad signer pool size (threads %d, queue %d, timeout %d ms)",
		    threads, queue, timeout_ms);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->tids = calloc((size_t)threads, sizeof(*p->tids))) == NULL) {
		log_err("calloc: %s", strerror(errno));
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mtx, NULL);
	pthread_cond_init(&p->cv, NULL);
	TAILQ_INIT(&p->q);
	p->nthreads = threads;
	p->queue_max = queue;
	p->timeout_ms = timeout_ms;
	for (i = 0; i < threads; i++) {
		if ((errno = pthread_create(&p->tids[i], NULL, signer_main, p)) != 0) {
			log_err("pthread_create: %s", strerror(errno));
			signer_pool_free(p);
			return NULL;
		}
		p->nstarted++;
	}
	atomic_store(&signer_g_threads, threads);
	(void)metrics_add_renderer(signer_metrics);
	log_info("signer pool: %d threads, queue %d, timeout %d ms", threads, queue,
	    timeout_ms);
	return p;
}

void
signer_pool_free(struct signer_pool *p)
{
	struct signer_req *r;
	int i;

	if (p == NULL)
		return;
	metrics_remove_renderer(signer_metrics);
	pthread_mutex_lock(&p->mtx);
	p->stop = 1;
	while ((r = TAILQ_FIRST(&p->q)) != NULL) {
		TAILQ_REMOVE(&p->q, r, link);
		r->queued = 0;
		p->nqueued--;
		r->result = 0;
		r->done = 1;
		signer_notify(r);
		signer_req_unref(r);
	}
	signer_gauges(p);
	if (p->nbusy > 0)
		log_info("waiting for %d token signature%s in flight", p->nbusy,
		    p->nbusy == 1 ? "" : "s");
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	for (i = 0; i < p->nstarted; i++)
		pthread_join(p->tids[i], NULL);
	atomic_store(&signer_g_threads, 0);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mtx);
	free(p->tids);
	free(p);
}

/* ------------------------------------------------------------------------- */
/* The job side */

static void
signer_fd_cleanup(ASYNC_WAIT_CTX *w, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
	close(fd);
}

/* The eventfd that wakes this job's SSL, created on its first signature. */
static int
signer_wait_fd(ASYNC_JOB *job)
{
	ASYNC_WAIT_CTX *w;
	OSSL_ASYNC_FD fd;
	void *custom;

	if ((w = ASYNC_get_wait_ctx(job)) == NULL)
		return -1;
	if (ASYNC_WAIT_CTX_get_fd(w, &signer_fd_key, &fd, &custom) == 1)
		return fd;
	if ((fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_warn("eventfd: %s", strerror(errno));
		return -1;
	}
	if (ASYNC_WAIT_CTX_set_wait_fd(w, &signer_fd_key, fd, NULL, signer_fd_cleanup) != 1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Closes the job's eventfd once its signature is over: the pool writes to it only
 * before it marks the request done (or never, once the request was detached), so
 * nobody touches it afterwards. Without this every established connection would keep
 * a descriptor until SSL_free, doubling the gateway's descriptors per connection. */
static void
signer_wait_fd_release(ASYNC_JOB *job)
{
	ASYNC_WAIT_CTX *w;
	OSSL_ASYNC_FD fd;
	void *custom;

	if ((w = ASYNC_get_wait_ctx(job)) == NULL ||
	    ASYNC_WAIT_CTX_get_fd(w, &signer_fd_key, &fd, &custom) != 1)
		return;
	if (ASYNC_WAIT_CTX_clear_fd(w, &signer_fd_key) == 1)
		close(fd);
}

static void
signer_fail(int kind, const char *why)
{
	atomic_fetch_add(&signer_results[kind], 1);
	ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "token signature: %s", why);
}

static struct signer_req *
signer_req_new(signer_sign_fn fn, EVP_PKEY_CTX *ctx, size_t sigcap,
    const unsigned char *tbs, size_t tbslen, int fd)
{
	struct signer_req *r;

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->tbs = malloc(tbslen ? tbslen : 1)) == NULL ||
	    (r->sig = calloc(1, sigcap ? sigcap : 1)) == NULL ||
	    (r->ctx = EVP_PKEY_CTX_dup(ctx)) == NULL) {
		if (r != NULL)
			signer_req_free(r);
		return NULL;
	}
	memcpy(r->tbs, tbs, tbslen);
	r->tbslen = tbslen;
	r->siglen = sigcap;
	r->fn = fn;
	r->fd = fd;
	r->refs = 2;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	return r;
}

/* Queues r unless every thread is busy and the queue is full. */
static int
signer_submit(struct signer_pool *p, struct signer_req *r)
{
	struct timespec now;
	int busy, queued;

	pthread_mutex_lock(&p->mtx);
	if (p->stop || p->nqueued + p->nbusy >= p->nthreads + p->queue_max) {
		busy = p->nbusy;
		queued = p->nqueued;
		pthread_mutex_unlock(&p->mtx);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (atomic_exchange(&signer_refuse_logged, (long long)now.tv_sec) !=
		    (long long)now.tv_sec)
			log_warn("signer busy (%d signing, %d queued, queue %d): refusing "
			    "handshakes", busy, queued, p->queue_max);
		return -1;
	}
	TAILQ_INSERT_TAIL(&p->q, r, link);
	r->queued = 1;
	p->nqueued++;
	signer_gauges(p);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	return 0;
}

static void
signer_drain_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == -1 && errno == EINTR)
		;
}

/* Pauses the job until r is done, the deadline passes or the handshake is torn
 * down. Returns 1 when r completed, or 0 after giving up (r is detached then). */
static int
signer_wait(struct signer_pool *p, struct signer_req *r, int fd)
{
	int kind;

	for (;;) {
		if (ASYNC_pause_job() == 0) {
			log_err("ASYNC_pause_job failed");
			kind = SR_ERROR;
			break;
		}
		signer_drain_fd(fd);
		pthread_mutex_lock(&p->mtx);
		if (r->done) {
			pthread_mutex_unlock(&p->mtx);
			return 1;
		}
		pthread_mutex_unlock(&p->mtx);
		if (signer_abandoning) {
			kind = SR_ABANDONED;
			break;
		}
		if (signer_ms_since(&r->t0) >= p->timeout_ms) {
			kind = SR_TIMEOUT;
			break;
		}
	}
	pthread_mutex_lock(&p->mtx);
	if (r->done) {
		/* Finished while we decided to leave: take the result after all. */
		pthread_mutex_unlock(&p->mtx);
		return 1;
	}
	r->fd = -1;
	if (r->queued) {
		/* Not started: the token never sees it. */
		TAILQ_REMOVE(&p->q, r, link);
		r->queued = 0;
		p->nqueued--;
		signer_gauges(p);
		signer_req_unref(r);
	}
	pthread_mutex_unlock(&p->mtx);
	if (kind == SR_TIMEOUT)
		log_warn("token signature not done after %d ms: failing the handshake",
		    p->timeout_ms);
	signer_fail(kind, kind == SR_TIMEOUT ? "timed out" : kind == SR_ABANDONED ?
	    "handshake abandoned" : "cannot wait");
	return 0;
}

int
signer_sign(struct signer_pool *p, signer_sign_fn fn, EVP_PKEY_CTX *ctx,
    unsigned char *sig, size_t *siglen, const unsigned char *tbs, size_t tbslen)
{
	struct signer_req *r;
	ASYNC_JOB *job;
	int fd, res = 0;

	if (p == NULL || sig == NULL)
		return fn(ctx, sig, siglen, tbs, tbslen);
	if ((job = ASYNC_get_current_job()) == NULL) {
		log_debug("not inside an async job: signing synchronously");
		return fn(ctx, sig, siglen, tbs, tbslen);
	}
	if ((fd = signer_wait_fd(job)) == -1 ||
	    (r = signer_req_new(fn, ctx, *siglen, tbs, tbslen, fd)) == NULL) {
		log_warn("cannot hand the signature to the signer pool; signing on the "
		    "event loop");
		ERR_clear_error();
		return fn(ctx, sig, siglen, tbs, tbslen);
	}
	if (signer_submit(p, r) == -1) {
		signer_req_free(r);
		signer_wait_fd_release(job);
		signer_fail(SR_REFUSED, "signer queue full");
		return 0;
	}
	if (signer_wait(p, r, fd) == 1) {
		res = r->result;
		if (res > 0 && r->siglen <= *siglen) {
			memcpy(sig, r->sig, r->siglen);
			*siglen = r->siglen;
			atomic_fetch_add(&signer_results[SR_OK], 1);
		} else {
			res = 0;
			signer_fail(SR_ERROR, "failed in the token");
		}
	}
	pthread_mutex_lock(&p->mtx);
	signer_req_unref(r);
	pthread_mutex_unlock(&p->mtx);
	signer_wait_fd_release(job);
	return res;
}

void
signer_ssl_abandon(SSL *ssl)
{
	int i;

	signer_abandoning = 1;
	for (i = 0; i < 4 && SSL_waiting_for_async(ssl); i++) {
		ERR_clear_error();
		(void)SSL_do_handshake(ssl);
	}
	signer_abandoning = 0;
	if (SSL_waiting_for_async(ssl))
		log_warn("handshake still waits for a signature after teardown");
	ERR_clear_error();
}
