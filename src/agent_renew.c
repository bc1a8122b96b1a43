/* Certificate renewal: the blocking step and its background schedule (see
 * include/agent_renew.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "agent_dir.h"
#include "agent_enroll.h"
#include "agent_est.h"
#include "agent_key.h"
#include "agent_renew.h"
#include "agent_time.h"
#include "agent_url.h"
#include "log.h"

#define RENEW_LOCK_WAIT_S 30
#define RENEW_MAP_POLL_MS 500   /* asking again while the gateway loads the agent */

static STACK_OF(X509) *
agent_renew_copy(STACK_OF(X509) *in)
{
	STACK_OF(X509) *c;
	int i;

	if ((c = sk_X509_new_null()) == NULL)
		return NULL;
	for (i = 0; in != NULL && i < sk_X509_num(in); i++) {
		X509 *x = sk_X509_value(in, i);

		if (X509_up_ref(x) != 1 || sk_X509_push(c, x) <= 0) {
			sk_X509_pop_free(c, X509_free);
			return NULL;
		}
	}
	return c;
}

/* The new key, of the kind and in the place of cur's. *uri gets a token key's URI. */
static EVP_PKEY *
agent_renew_newkey(struct agent_cred *cur, char **uri, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;

	*uri = NULL;
	if (agent_cred_key_uri(cur) == NULL) {
		if (agent_key_generate_file(&key) == -1)
			snprintf(err, errlen, "cannot generate a key");
		return key;
	}
	if ((*uri = agent_key_uri_next(agent_cred_key_uri(cur), time(NULL))) == NULL) {
		snprintf(err, errlen, "cannot derive a label for the new token key from %s",
		    agent_cred_key_uri(cur));
		return NULL;
	}
	if (agent_key_generate_token(*uri, &key) == -1) {
		snprintf(err, errlen, "cannot generate the new key in the token (see above)");
		free(*uri);
		*uri = NULL;
	}
	return key;
}

/* The anchors plus the self-signed certificates of the renewal answer that issued
 * the top of the new chain: after a CA rollover the gateway issues under a new root.
 * The answer came over the connection the current anchors authenticated (the
 * gateway's certificate verified against ca.pem), which RFC 7030 4.1.3 accepts for
 * updating the trust anchors; NULL when the answer holds no such root. */
STACK_OF(X509) *
agent_renew_new_anchors(STACK_OF(X509) *anchors, STACK_OF(X509) *answer, X509 *leaf,
    STACK_OF(X509) *chain)
{
	X509 *top = sk_X509_num(chain) > 0 ? sk_X509_value(chain, sk_X509_num(chain) - 1) : leaf;
	STACK_OF(X509) *out;
	int i, j, added = 0, dup;

	if ((out = agent_renew_copy(anchors)) == NULL)
		return NULL;
	for (i = 0; i < sk_X509_num(answer); i++) {
		X509 *x = sk_X509_value(answer, i);

		if (X509_check_issued(x, x) != X509_V_OK || X509_check_issued(x, top) != X509_V_OK)
			continue;
		for (j = 0, dup = 0; j < sk_X509_num(out); j++)
			dup |= X509_cmp(sk_X509_value(out, j), x) == 0;
		if (dup || X509_up_ref(x) != 1)
			continue;
		if (sk_X509_push(out, x) <= 0) {
			X509_free(x);
			break;
		}
		added++;
	}
	if (added == 0) {
		sk_X509_pop_free(out, X509_free);
		return NULL;
	}
	return out;
}

/* Sleeps ms, in steps that notice cancel. */
static void
agent_renew_nap(long ms, const volatile int *cancel)
{
	struct timespec ts = { 0, 100 * 1000000L };

	for (; ms > 0 && (cancel == NULL || !*cancel); ms -= 100)
		nanosleep(&ts, NULL);
}

/* POST /simplereenroll with use. A certificate enrolled a moment ago may not be in
 * the gateway's identity map yet (it is loaded within about a second): the mTLS
 * listener then refuses it as unmapped, and asking again a little later works. */
static STACK_OF(X509) *
agent_renew_post(const char *origin, struct agent_cred *use, const char *csr,
    struct agent_enroll_answer *ans, char *err, size_t errlen,
    const volatile int *cancel)
{
	STACK_OF(X509) *certs;
	time_t nb = agent_cred_not_before(use), na = agent_cred_not_after(use);
	int waited = 0;

	for (;;) {
		certs = agent_enroll_post(origin, "simplereenroll", use, NULL, csr, ans, err,
		    errlen, cancel);
		if (certs != NULL || !ans->unmapped || (cancel != NULL && *cancel) ||
		    !agent_time_map_pending(nb, na, time(NULL)))
			return certs;
		if (waited++ == 0)
			log_info("the gateway has not loaded the identity of certificate %s yet "
			    "(issued %ld s ago); asking again for up to %d s after its issuance",
			    agent_cred_serial(use), (long)(time(NULL) -
			    agent_time_issued(nb, na)), AGENT_TIME_MAP_WAIT);
		agent_renew_nap(RENEW_MAP_POLL_MS, cancel);
	}
}

int
agent_renew_once(const char *dir, const char *origin, struct agent_cred *cur, int force,
    struct agent_cred **out, int *adopted, long *retry_after, char *err, size_t errlen,
    const volatile int *cancel)
{
	STACK_OF(X509) *certs = NULL, *chain = NULL, *anchors = NULL;
	struct agent_cred *ondisk = NULL, *use;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	struct buf csr;
	struct agent_enroll_answer ans;
	char *uri = NULL, perr[600];
	int lock, rv = -1;

	*out = NULL;
	*adopted = 0;
	if (retry_after != NULL)
		*retry_after = -1;
	buf_init(&csr);
	if ((lock = agent_dir_lock(dir, RENEW_LOCK_WAIT_S)) == -1) {
		snprintf(err, errlen, "cannot lock %s for renewal (see above)", dir);
		return -1;
	}
	if (agent_dir_load(dir, &ondisk) == -1) {
		snprintf(err, errlen, "cannot read %s (see above)", dir);
		goto done;
	}
	use = cur != NULL ? cur : ondisk;
	if (!force && cur != NULL &&
	    strcmp(agent_cred_serial(ondisk), agent_cred_serial(cur)) != 0 &&
	    agent_cred_not_after(ondisk) > agent_cred_not_after(cur) &&
	    agent_time_phase(agent_cred_not_before(ondisk), agent_cred_not_after(ondisk),
	    time(NULL)) == AGENT_TIME_FRESH) {
		/* Another process sharing the directory renewed first. */
		*out = agent_cred_ref(ondisk);
		*adopted = 1;
		rv = 0;
		goto done;
	}
	if ((key = agent_renew_newkey(use, &uri, err, errlen)) == NULL)
		goto done;
	if (agent_est_csr(key, NULL, agent_cred_leaf(use), &csr, err, errlen) == -1)
		goto done;
	certs = agent_renew_post(origin, use, csr.p, &ans, err, errlen, cancel);
	/* Worth another attempt: the server said when (429, 503 with Retry-After), or
	 * it was busy or out of reach for now (503, a timeout or a refused connect: 0). */
	if (retry_after != NULL)
		*retry_after = ans.retry_after >= 0 ? ans.retry_after :
		    ans.status == 503 || (ans.status == 0 && ans.transient) ? 0 : -1;
	if (certs == NULL)
		goto done;
	if (agent_est_leaf(certs, key, &leaf, &chain, perr, sizeof(perr)) == -1) {
		snprintf(err, errlen, "renewal answer: %s", perr);
		goto done;
	}
	if (agent_cred_verify_chain(leaf, chain, agent_cred_anchors(use), perr,
	    sizeof(perr)) == -1) {
		if ((anchors = agent_renew_new_anchors(agent_cred_anchors(use), certs, leaf,
		    chain)) == NULL || agent_cred_verify_chain(leaf, chain, anchors, perr,
		    sizeof(perr)) == -1) {
			snprintf(err, errlen, "the renewed certificate does not verify against "
			    "ca.pem: %s", perr);
			goto done;
		}
		log_info("the renewed certificate is from a new CA root (CA rollover): "
		    "ca.pem now holds %d trust anchor(s)", sk_X509_num(anchors));
	}
	if (X509_NAME_cmp(X509_get_subject_name(leaf),
	    X509_get_subject_name(agent_cred_leaf(use))) != 0)
		log_warn("the renewed certificate has another subject than the old one");
	if (agent_dir_commit(dir, leaf, chain, uri != NULL ? NULL : key, uri, anchors) == -1) {
		snprintf(err, errlen, "cannot write the renewed certificate to %s (see "
		    "above)", dir);
		goto done;
	}
	if (anchors == NULL && (anchors = agent_renew_copy(agent_cred_anchors(use))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	*out = agent_cred_new(leaf, chain, key, uri, anchors);
	leaf = NULL;
	chain = NULL;
	key = NULL;
	anchors = NULL;
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (agent_cred_key_uri(use) != NULL)
		log_info("the previous key %s stays in the token: delete it once the old "
		    "certificate has expired", agent_cred_key_uri(use));
	rv = 0;
done:
	agent_dir_unlock(lock);
	buf_free(&csr);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(anchors, X509_free);
	X509_free(leaf);
	EVP_PKEY_free(key);
	free(uri);
	agent_cred_unref(ondisk);
	return rv;
}

int
agent_renew_run(const char *url, const char *dir)
{
	struct agent_cred *c = NULL;
	struct agent_url u;
	char err[1200], when[40];
	long retry_after, delay;
	int adopted, tries, rc = 1;

	if (agent_url_parse(url, &u, err, sizeof(err)) == -1) {
		log_err("--url %s", err);
		return 1;
	}
	/* As `agent enroll` does: a busy CA (503) or a gateway out of reach is tried
	 * again a few times, honouring Retry-After; each attempt is a new key, and the
	 * current certificate stays valid until one works. */
	for (tries = 0;; tries++) {
		if (agent_renew_once(dir, u.origin, NULL, 1, &c, &adopted, &retry_after, err,
		    sizeof(err), NULL) == 0)
			break;
		if (retry_after < 0 || tries >= AGENT_EST_RETRIES) {
			log_err("renewal failed: %s", err);
			goto done;
		}
		delay = agent_est_retry_delay(tries + 1, retry_after, 0);
		log_warn("%s; trying again in %ld s (%d of %d)", err, delay, tries + 1,
		    AGENT_EST_RETRIES);
		sleep((unsigned)delay);
	}
	printf("renewed: certificate %s (serial %s), valid until %s, in %s/cert.pem\n",
	    agent_cred_subject(c), agent_cred_serial(c),
	    agent_time_iso(agent_cred_not_after(c), when, sizeof(when)), dir);
	fflush(stdout);
	rc = 0;
done:
	agent_cred_unref(c);
	agent_url_free(&u);
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Background renewal */

struct agent_renew {
	struct event_base *base;
	char *dir;
	char *origin;
	struct agent_cred *cur;
	agent_renew_fn fn;
	void *arg;
	struct event *timer;
	struct event *done_ev;
	int pipefd[2];
	pthread_t thr;
	int running;
	volatile int cancel;
	unsigned attempt;
	/* written by the thread, read after the join */
	struct agent_cred *result;
	int adopted;
	int ok;
	long retry_after;
	char err[1200];
};

static void
agent_renew_schedule(struct agent_renew *r, long secs)
{
	struct timeval tv = { secs > 0 ? secs : 0, 0 };

	evtimer_add(r->timer, &tv);
}

static void
agent_renew_schedule_next(struct agent_renew *r)
{
	time_t at = agent_time_renew_at(agent_cred_not_before(r->cur),
	    agent_cred_not_after(r->cur));
	char until[40], when[40];

	log_info("certificate %s (serial %s) valid until %s; renewal at %s",
	    agent_cred_subject(r->cur), agent_cred_serial(r->cur),
	    agent_time_iso(agent_cred_not_after(r->cur), until, sizeof(until)),
	    agent_time_iso(at, when, sizeof(when)));
	agent_renew_schedule(r, (long)(at - time(NULL)));
}

static void *
agent_renew_thread(void *arg)
{
	struct agent_renew *r = arg;
	char b = 1;

	r->ok = agent_renew_once(r->dir, r->origin, r->cur, 0, &r->result, &r->adopted,
	    &r->retry_after, r->err, sizeof(r->err), &r->cancel) == 0;
	while (write(r->pipefd[1], &b, 1) == -1 && errno == EINTR)
		;
	return NULL;
}

static void
agent_renew_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_renew *r = arg;
	int e;

	if (r->running)
		return;
	r->result = NULL;
	r->err[0] = '\0';
	if ((e = pthread_create(&r->thr, NULL, agent_renew_thread, r)) != 0) {
		log_err("cannot start the renewal thread: %s; retrying in 60 s", strerror(e));
		agent_renew_schedule(r, 60);
		return;
	}
	r->running = 1;
}

static void
agent_renew_failed(struct agent_renew *r)
{
	time_t now = time(NULL), nb = agent_cred_not_before(r->cur),
	    na = agent_cred_not_after(r->cur);
	unsigned rnd = 0;
	char left[32], when[40];
	long delay;

	(void)RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
	r->attempt++;
	delay = agent_time_backoff(nb, na, now, r->attempt, rnd);
	/* A server that says when to come back (429, 503) is believed, up to expiry. */
	if (r->retry_after > delay)
		delay = na - now > 0 && r->retry_after > na - now ? (long)(na - now) :
		    r->retry_after;
	switch (agent_time_phase(nb, na, now)) {
	case AGENT_TIME_EXPIRED:
		log_err("certificate %s (serial %s) EXPIRED at %s and could not be renewed: "
		    "%s. Requests to the gateway fail until a renewal works; retrying in "
		    "%ld s (or run `certgate agent enroll` with a new token)",
		    agent_cred_subject(r->cur), agent_cred_serial(r->cur),
		    agent_time_iso(na, when, sizeof(when)), r->err, delay);
		break;
	case AGENT_TIME_LATE:
		log_warn("certificate %s (serial %s) expires in %s (at %s) and renewal keeps "
		    "failing: %s. Retrying in %ld s; after expiry requests to the gateway "
		    "will fail", agent_cred_subject(r->cur), agent_cred_serial(r->cur),
		    agent_time_fmt((long)(na - now), left, sizeof(left)),
		    agent_time_iso(na, when, sizeof(when)), r->err, delay);
		break;
	default:
		log_warn("renewal attempt %u failed: %s; retrying in %ld s (the certificate "
		    "is valid for %s more)", r->attempt, r->err, delay,
		    agent_time_fmt((long)(na - now), left, sizeof(left)));
	}
	agent_renew_schedule(r, delay);
}

static void
agent_renew_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_renew *r = arg;
	char b[16];

	while (read(fd, b, sizeof(b)) > 0)
		;
	if (!r->running)
		return;
	pthread_join(r->thr, NULL);
	r->running = 0;
	if (!r->ok || r->result == NULL) {
		agent_renew_failed(r);
		return;
	}
	log_info("%s certificate serial %s (was %s)", r->adopted ?
	    "adopted the renewed" : "renewed:", agent_cred_serial(r->result),
	    agent_cred_serial(r->cur));
	agent_cred_unref(r->cur);
	r->cur = r->result;
	r->result = NULL;
	r->attempt = 0;
	r->fn(r->arg, r->cur);
	agent_renew_schedule_next(r);
}

struct agent_renew *
agent_renew_start(struct event_base *base, const char *dir, const char *origin,
    struct agent_cred *cur, agent_renew_fn fn, void *arg)
{
	struct agent_renew *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		goto oom;
	r->pipefd[0] = r->pipefd[1] = -1;
	if ((r->dir = strdup(dir)) == NULL || (r->origin = strdup(origin)) == NULL)
		goto fail;
	if (pipe2(r->pipefd, O_CLOEXEC | O_NONBLOCK) == -1) {
		log_err("pipe: %s", strerror(errno));
		goto fail2;
	}
	if ((r->timer = evtimer_new(base, agent_renew_timer_cb, r)) == NULL ||
	    (r->done_ev = event_new(base, r->pipefd[0], EV_READ | EV_PERSIST,
	    agent_renew_done_cb, r)) == NULL || event_add(r->done_ev, NULL) == -1)
		goto fail;
	r->base = base;
	r->fn = fn;
	r->arg = arg;
	r->cur = agent_cred_ref(cur);
	agent_renew_schedule_next(r);
	return r;
fail:
	log_err("out of memory");
fail2:
	agent_renew_stop(r);
	return NULL;
oom:
	log_err("out of memory");
	return NULL;
}

void
agent_renew_stop(struct agent_renew *r)
{
	if (r == NULL)
		return;
	if (r->running) {
		r->cancel = 1;
		pthread_join(r->thr, NULL);
		r->running = 0;
		agent_cred_unref(r->result);
	}
	if (r->timer != NULL)
		event_free(r->timer);
	if (r->done_ev != NULL)
		event_free(r->done_ev);
	if (r->pipefd[0] >= 0)
		close(r->pipefd[0]);
	if (r->pipefd[1] >= 0)
		close(r->pipefd[1]);
	agent_cred_unref(r->cur);
	free(r->dir);
	free(r->origin);
	free(r);
}
