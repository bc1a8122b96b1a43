/* The CRL and identity map pushed through Redis (clusterpush.h). */
#include "clusterpush.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/async.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "file.h"
#include "log.h"
#include "rconn.h"
#include "state.h"
#include "worker.h"

#define CP_POLL_MS   200
#define CP_MAX_FILE  (64L * 1024 * 1024)
#define CP_CHANNEL   "certgate:push"

enum clusterpush_why { CP_LOCAL, CP_REMOTE, CP_JOIN };

static struct {
	const struct config *cfg;
	struct rconn *cmd;              /* GET/SET/PUBLISH */
	struct rconn *sub;              /* SUBSCRIBE */
	struct event *poll;
	uint64_t gen;                   /* state generation last looked at */
	int dirty;                      /* a local change not yet in Redis */
	int busy;                       /* an MGET is in flight */
	int again;                      /* ... and another was asked for meanwhile */
	enum clusterpush_why again_why;
	char self[96];                  /* our message on the channel */
} cp;

static void clusterpush_sync(enum clusterpush_why why);

/* -1: a older than b, 0: same time (or undecidable), 1: newer. */
static int
clusterpush_crl_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	X509_CRL *x = NULL, *y = NULL;
	BIO *bio;
	int d = 0, rv = 0;

	if ((bio = BIO_new_mem_buf(a, (int)alen)) != NULL) {
		x = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if ((bio = BIO_new_mem_buf(b, (int)blen)) != NULL) {
		y = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if (x == NULL || y == NULL) {
		/* An unreadable CRL never replaces a readable one. */
		rv = x == NULL && y != NULL ? -1 : x != NULL && y == NULL ? 1 : 0;
		goto out;
	}
	if (ASN1_TIME_diff(&d, NULL, X509_CRL_get0_lastUpdate(y), X509_CRL_get0_lastUpdate(x)))
		rv = d > 0 ? 1 : d < 0 ? -1 : 0;
	if (rv == 0 && ASN1_TIME_diff(NULL, &d, X509_CRL_get0_lastUpdate(y),
	    X509_CRL_get0_lastUpdate(x)))
		rv = d > 0 ? 1 : d < 0 ? -1 : 0;
out:
	X509_CRL_free(x);
	X509_CRL_free(y);
	return rv;
}

static int
clusterpush_same(const char *a, size_t alen, const redisReply *r)
{
	return a != NULL && r->type == REDIS_REPLY_STRING && r->len == alen &&
	    memcmp(r->str, a, alen) == 0;
}

static int
clusterpush_adopt(const char *path, const redisReply *r, const char *what)
{
	struct stat sb;
	mode_t mode = 0644;

	if (stat(path, &sb) == 0)
		mode = sb.st_mode & 0777;
	if (file_write_atomic(path, r->str, r->len, mode) == -1) {
		log_err("cluster: cannot write the pushed %s to %s: %s", what, path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static void
clusterpush_publish(const char *crl, size_t crllen, const char *map, size_t maplen)
{
	const char *argv[3] = { "SET", NULL, NULL };
	size_t lens[3] = { 3, 0, 0 };
	int ok = 1;

	/* One connection, in order: a subscriber's MGET after the PUBLISH sees both. */
	if (crl != NULL) {
		argv[1] = "certgate:crl";
		lens[1] = strlen(argv[1]);
		argv[2] = crl;
		lens[2] = crllen;
		ok &= rconn_send_argv(cp.cmd, 3, argv, lens) == 0;
	}
	if (map != NULL) {
		argv[1] = "certgate:map";
		lens[1] = strlen(argv[1]);
		argv[2] = map;
		lens[2] = maplen;
		ok &= rconn_send_argv(cp.cmd, 3, argv, lens) == 0;
	}
	ok &= rconn_send(cp.cmd, "PUBLISH " CP_CHANNEL " %s", cp.self) == 0;
	if (ok) {
		cp.dirty = 0;
		log_info("cluster: published the %s%s%s to the other instances",
		    crl ? "CRL" : "", crl && map ? " and the " : "", map ? "identity map" : "");
	} else
		cp.dirty = 1;
}

/* MGET certgate:crl certgate:map answered: adopt or publish (see clusterpush.h). */
static void
clusterpush_mget_reply(void *arg, redisReply *r)
{
	enum clusterpush_why why = (enum clusterpush_why)(long)arg;
	const char *crlpath = cp.cfg->tls.crl, *mappath = cp.cfg->identity_map;
	char *crl = NULL, *map = NULL;
	size_t crllen = 0, maplen = 0;
	const char *pub_crl = NULL, *pub_map = NULL;
	int adopted = 0, c;
	const redisReply *rc, *rm;

	cp.busy = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    rconn_context(cp.cmd) == NULL) {
		if (why == CP_LOCAL)
			cp.dirty = 1;   /* published when Redis is back (clusterpush_cmd_up) */
		goto again;
	}
	rc = r->element[0];
	rm = r->element[1];
	if (crlpath != NULL && file_read(crlpath, CP_MAX_FILE, &crl, &crllen) == -1) {
		log_err("cluster: cannot read %s: %s", crlpath, strerror(errno));
		crl = NULL;
	}
	if (file_read(mappath, CP_MAX_FILE, &map, &maplen) == -1) {
		log_err("cluster: cannot read %s: %s", mappath, strerror(errno));
		map = NULL;
	}
	if (crlpath != NULL && crl != NULL && !clusterpush_same(crl, crllen, rc)) {
		c = rc->type == REDIS_REPLY_STRING ? clusterpush_crl_cmp(crl, crllen,
		    rc->str, rc->len) : 1;
		if (c > 0 || (c == 0 && why == CP_LOCAL))
			pub_crl = crl;
		else if (clusterpush_adopt(crlpath, rc, "CRL") == 0)
			adopted = 1;
	}
	if (map != NULL && !clusterpush_same(map, maplen, rm)) {
		if (rm->type != REDIS_REPLY_STRING || why == CP_LOCAL ||
		    (why == CP_JOIN && cp.dirty))
			pub_map = map;
		else if (clusterpush_adopt(mappath, rm, "identity map") == 0)
			adopted = 1;
	}
	if (pub_crl != NULL || pub_map != NULL)
		clusterpush_publish(pub_crl, crllen, pub_map, maplen);
	else
		cp.dirty = 0;
	if (adopted) {
		log_info("cluster: the CRL or identity map changed on another instance: "
		    "reloading");
		if (state_reload("pushed by another instance") == 0)
			worker_wake();
		cp.gen = state_generation();    /* our own reload is not a local change */
	}
	free(crl);
	free(map);
again:
	if (cp.again) {
		cp.again = 0;
		clusterpush_sync(cp.again_why);
	}
}

static void
clusterpush_sync(enum clusterpush_why why)
{
	if (cp.busy) {
		/* a local change outranks a remote one for the map: keep the strongest */
		if (!cp.again || why == CP_LOCAL)
			cp.again_why = why;
		cp.again = 1;
		return;
	}
	if (rconn_command(cp.cmd, clusterpush_mget_reply, (void *)(long)why, NULL,
	    "MGET certgate:crl certgate:map") == -1) {
		if (why == CP_LOCAL)
			cp.dirty = 1;
		return;
	}
	cp.busy = 1;
}

static void
clusterpush_cmd_up(struct rconn *rc, void *arg)
{
	cp.busy = 0;
	clusterpush_sync(cp.dirty ? CP_LOCAL : CP_JOIN);
}

static void
clusterpush_message(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *r = reply;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;         /* the subscribe confirmation, or a shutdown */
	if (strcmp(r->element[2]->str, cp.self) == 0)
		return;         /* our own */
	clusterpush_sync(CP_REMOTE);
}

static void
clusterpush_sub_up(struct rconn *rc, void *arg)
{
	redisAsyncContext *ac = rconn_context(rc);

	if (ac != NULL)
		(void)redisAsyncCommand(ac, clusterpush_message, NULL, "SUBSCRIBE " CP_CHANNEL);
	/* Messages missed while the subscriber was down: look once. */
	clusterpush_sync(CP_REMOTE);
}

static void
clusterpush_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t gen = state_generation();

	if (gen != cp.gen) {
		cp.gen = gen;
		clusterpush_sync(CP_LOCAL);
	}
}

int
clusterpush_start(struct event_base *base, const struct config *cfg)
{
	struct timeval tv = { 0, CP_POLL_MS * 1000 };
	char host[64] = "";

	if (cfg->cluster.redis == NULL)
		return 0;
	memset(&cp, 0, sizeof(cp));
	cp.cfg = cfg;
	(void)gethostname(host, sizeof(host) - 1);
	snprintf(cp.self, sizeof(cp.self), "%s/%ld", cfg->cluster.name ? cfg->cluster.name :
	    host, (long)getpid());
	cp.gen = state_generation();
	if ((cp.poll = event_new(base, -1, EV_PERSIST, clusterpush_poll_cb, NULL)) == NULL ||
	    event_add(cp.poll, &tv) == -1 ||
	    (cp.cmd = rconn_new(base, &cfg->cluster, "the main loop", clusterpush_cmd_up,
	    NULL)) == NULL ||
	    (cp.sub = rconn_new(base, &cfg->cluster, "the subscriber", clusterpush_sub_up,
	    NULL)) == NULL) {
		log_err("cluster: out of memory");
		clusterpush_stop();
		return -1;
	}
	log_info("cluster: instance %s, Redis at %s:%d db %d", cp.self, cfg->cluster.redis_host,
	    cfg->cluster.redis_port, cfg->cluster.redis_db);
	return 0;
}

void
clusterpush_stop(void)
{
	rconn_free(cp.sub);
	rconn_free(cp.cmd);
	if (cp.poll != NULL)
		event_free(cp.poll);
	memset(&cp, 0, sizeof(cp));
}
