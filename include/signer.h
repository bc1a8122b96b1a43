/* Signer pool: threads that run private-key operations (token signatures) off the
 * event loop. A handshake runs inside an OpenSSL async job (SSL_MODE_ASYNC); the
 * key's sign method (p11.c) hands the operation to the pool with signer_sign() and
 * pauses the job; the worker's loop serves other connections until the pool's
 * completion makes the job's wait fd readable and the handshake is resumed.
 *
 * Admission control: at most `threads` signatures run at once and at most `queue`
 * more wait; beyond that a sign fails at once (the handshake gets an alert) and is
 * counted. A handshake waits at most timeout_ms for its signature.
 *
 * OpenSSL APIs only (no PKCS#11): the pool runs whatever sign function it is given.
 * Metrics (queue depth, in-flight, latency histogram, refusals) are appended to
 * /metrics (a renderer registered with metrics_add_renderer) while a pool exists. */
#ifndef CERTGATE_SIGNER_H
#define CERTGATE_SIGNER_H
#include <openssl/evp.h>
#include <openssl/ssl.h>

struct signer_pool;

/* An EVP_PKEY_METHOD sign function (legacy signature). */
typedef int (*signer_sign_fn)(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen);

/* Starts `threads` signer threads. Returns NULL on failure (logged). Only one pool
 * per process is expected (its metrics are process-wide). */
struct signer_pool *signer_pool_new(int threads, int queue, int timeout_ms);

/* Stops the pool: signatures still queued fail, running ones are waited for, then
 * the threads are joined. Call after every connection using it is closed and before
 * the keys and the PKCS#11 module are released. NULL is a no-op. */
void signer_pool_free(struct signer_pool *p);

/* Signs like fn(ctx, sig, siglen, tbs, tbslen) and returns its result (1 ok, <= 0
 * failure). Inside an async job (ASYNC_get_current_job() != NULL) with a pool, the
 * call runs on a pool thread on a duplicate of ctx while the job is paused; the
 * job's wait fd (ASYNC_WAIT_CTX, one eventfd per SSL) becomes readable when it is
 * done. Outside a job, with p NULL or for a length query (sig NULL), fn runs right
 * here. A full queue, a timeout or an abandoned handshake (signer_ssl_abandon)
 * return 0 with an OpenSSL error raised. */
int signer_sign(struct signer_pool *p, signer_sign_fn fn, EVP_PKEY_CTX *ctx,
    unsigned char *sig, size_t *siglen, const unsigned char *tbs, size_t tbslen);

/* For a handshake that is being torn down while its job waits for a signature
 * (SSL_waiting_for_async(ssl)): resumes the job so that the pending sign gives up
 * and the job ends (OpenSSL would otherwise leak it), and detaches the request from
 * the SSL's wait fd. Call on the thread that runs ssl's handshake, before SSL_free. */
void signer_ssl_abandon(SSL *ssl);

/* What the pool does, for the status page (the same figures as its /metrics):
 * process-wide, lock-free, any thread; all zero when no pool ever ran. */
struct signer_stats {
	long threads, queued, busy;
	long ok, error, timeout, refused, abandoned;
};
void signer_stats(struct signer_stats *out);

/* 1 when OpenSSL supports async jobs on this platform (ASYNC_is_capable). */
int signer_async_capable(void);

#endif
