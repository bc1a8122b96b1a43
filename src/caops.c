/* The rules of the CA service (caops.h). */
#include "caops.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "caaudit.h"
#include "cabatch.h"
#include "cadb.h"
#include "castore.h"
#include "catime.h"
#include "catoken.h"
#include "certify.h"
#include "config.h"
#include "file.h"
#include "identity.h"
#include "log.h"
#include "rate.h"

#define CAOPS_OCSP_VALIDITY	300	/* nextUpdate of OCSP answers: now + 5 min */
#define CAOPS_TOKEN_KEEP	86400	/* used/expired token records kept a day */

struct caops {
	const struct config *cfg;
	struct castore store;
	struct rate_table *rates;
	struct stat cert_st;        /* ca.cert when store was opened (rollover reload) */
};

static double
caops_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct caops *
caops_new(const struct config *cfg, char *err, size_t errlen)
{
	struct caops *o;
	struct cadb db = { 0 };
	int n = 0;

	if ((o = calloc(1, sizeof(*o))) == NULL || (o->rates = rate_table_new()) == NULL) {
		free(o);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	o->cfg = cfg;
	castore_init(&o->store, cfg);
	if (castore_lock(&o->store, err, errlen) == -1 ||
	    castore_open(&o->store, cfg, 1, err, errlen) == -1 ||
	    castore_load_db(&o->store, &db, err, errlen) == -1 ||
	    castore_reconcile(&o->store, &db, &n, err, errlen) == -1)
		goto fail;
	if (n > 0)
		log_warn("recorded %d interrupted issuance(s) as revoked and re-signed the CRL", n);
	if (stat(cfg->ca.cert, &o->cert_st) == -1)
		memset(&o->cert_st, 0, sizeof(o->cert_st));
	if (catoken_prune(cfg->ca.tokens_dir, time(NULL), CAOPS_TOKEN_KEEP) < 0)
		log_warn("cannot prune old tokens in %s: %s", cfg->ca.tokens_dir, strerror(errno));
	castore_unlock(&o->store);
	cadb_free(&db);
	return o;
fail:
	cadb_free(&db);
	caops_free(o);
	return NULL;
}

void
caops_free(struct caops *o)
{
	if (o == NULL)
		return;
	castore_close(&o->store);
	rate_table_free(o->rates);
	free(o);
}

/* After `certgate ca rollover` or `retire` rewrote ca.cert: issue under the CA it
 * names first from the next request on. A CA that cannot be loaded keeps the old. */
static void
caops_refresh(struct caops *o)
{
	const struct config *cfg = o->cfg;
	struct castore n;
	struct stat st;
	char err[1024];

	if (stat(cfg->ca.cert, &st) == -1 || (st.st_ino == o->cert_st.st_ino &&
	    st.st_size == o->cert_st.st_size &&
	    st.st_mtim.tv_sec == o->cert_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == o->cert_st.st_mtim.tv_nsec))
		return;
	if (castore_lock(&o->store, err, sizeof(err)) == -1) {
		log_warn("cannot reload the CA certificate %s: %s", cfg->ca.cert, err);
		return;
	}
	castore_init(&n, cfg);
	n.lock = o->store.lock;
	if (stat(cfg->ca.cert, &st) == -1 || castore_open(&n, cfg, 1, err, sizeof(err)) == -1) {
		log_err("cannot reload the CA certificate %s: %s; still issuing under the "
		    "previous CA", cfg->ca.cert, err);
		castore_unlock(&o->store);
		o->cert_st = st;
		return;
	}
	n.lock = -1;
	n.reconciled = o->store.reconciled;
	castore_unlock(&o->store);
	if (strcmp(n.fp, o->store.fp) != 0)
		log_info("CA certificate %s changed: issuing under CA %.16s... now", cfg->ca.cert,
		    n.fp);
	castore_close(&o->store);
	o->store = n;
	o->cert_st = st;
}

/* 1 when fp is the fingerprint of one of certgate's trusted CAs. */
static int
caops_ours_fp(struct caops *o, const char *fp)
{
	char f[65];
	int i;

	for (i = 0; i < sk_X509_num(o->store.b.ours); i++)
		if (certify_fingerprint(sk_X509_value(o->store.b.ours, i), f) == 0 &&
		    strcmp(f, fp) == 0)
			return 1;
	return 0;
}

/* 1 when x was signed by one of certgate's trusted CAs. */
static int
caops_ours_signed(struct caops *o, X509 *x)
{
	int i, ok = 0;

	for (i = 0; i < sk_X509_num(o->store.b.ours) && !ok; i++)
		ok = X509_verify(x, X509_get0_pubkey(sk_X509_value(o->store.b.ours, i))) == 1;
	ERR_clear_error();
	return ok;
}

const char *
caops_fingerprint(const struct caops *o)
{
	return o->store.fp;
}

/* A refusal: the reply, and an audit line (never the token). */
static void __attribute__((format(printf, 7, 8)))
caops_refuse(struct caops *o, struct caproto_reply *rep, enum caproto_err e, const char *op,
    const struct caproto_req *req, const struct caaudit_rec *ctx, const char *fmt, ...)
{
	struct caaudit_rec a = ctx ? *ctx : (struct caaudit_rec){ 0 };
	va_list ap;

	rep->err = e;
	va_start(ap, fmt);
	vsnprintf(rep->message, sizeof(rep->message), fmt, ap);
	va_end(ap);
	a.what = "refused";
	a.op = op;
	a.via = "est";
	a.peer = req->peer[0] ? req->peer : NULL;
	a.reason = rep->message;
	if (caaudit_write(o->cfg->ca.audit, &a, NULL) == -1)
		log_warn("cannot append to the CA audit log %s: %s", o->cfg->ca.audit,
		    strerror(errno));
	log_info("refused %s%s%s: %s", op, a.agent ? " for " : "", a.agent ? a.agent : "",
	    rep->message);
}

/* A request taken up after its sender stopped waiting (it sat in the queue while the
 * service was busy): refused as unavailable before anything is spent, so the client's
 * retry finds the token unused. 1 when refused. */
static int
caops_too_late(struct caops *o, const struct caproto_req *req, struct caproto_reply *rep,
    const char *op, const struct caaudit_rec *ctx)
{
	struct timespec ts;
	long long now;

	if (req->deadline_ms == 0 || clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return 0;
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now < req->deadline_ms)
		return 0;
	caops_refuse(o, rep, CAPROTO_E_UNAVAILABLE, op, req, ctx,
	    "busy: the request waited %lld ms past the gateway's deadline; nothing was done",
	    now - req->deadline_ms);
	return 1;
}

/* The key of a DER SubjectPublicKeyInfo, exactly that and nothing after it. */
static EVP_PKEY *
caops_spki(const unsigned char *der, size_t len, char *err, size_t errlen)
{
	const unsigned char *p = der;
	unsigned char *re = NULL;
	EVP_PKEY *k;
	int n;

	if ((k = d2i_PUBKEY(NULL, &p, (long)len)) == NULL || p != der + len) {
		ERR_clear_error();
		EVP_PKEY_free(k);
		snprintf(err, errlen, "the public key is not a DER SubjectPublicKeyInfo");
		return NULL;
	}
	/* Canonical DER only: what is certified is exactly what was sent. */
	if ((n = i2d_PUBKEY(k, &re)) <= 0 || (size_t)n != len || memcmp(re, der, len) != 0) {
		OPENSSL_free(re);
		EVP_PKEY_free(k);
		ERR_clear_error();
		snprintf(err, errlen, "the public key is not in canonical DER");
		return NULL;
	}
	OPENSSL_free(re);
	if (certify_key_acceptable(k, err, errlen) == -1) {
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

/* After the leaf: the CA certificates above it and, during a rollover, the new root:
 * an agent whose ca.pem predates the rollover learns the new root from its renewal (it arrives over
 * the connection its current ca.pem authenticated, as /cacerts would). */
static int
caops_reply_chain(struct caops *o, struct caproto_reply *rep)
{
	STACK_OF(X509) *up = o->store.b.chain;
	unsigned char *der;
	X509 *x;
	int i, n, total;

	/* The root only while a rollover is under way: otherwise the answer stays the
	 * leaf (and a corporate chain), as EST clients that take one certificate expect. */
	total = sk_X509_num(up) + (cabundle_self_signed(o->store.cert) &&
	    sk_X509_num(o->store.b.ours) > 1 ? 1 : 0);

	for (i = 0; i < total && rep->nchain < CAPROTO_MAX_CHAIN; i++) {
		x = i < sk_X509_num(up) ? sk_X509_value(up, i) : o->store.cert;
		der = NULL;
		if ((n = i2d_X509(x, &der)) <= 0 || (rep->chain[rep->nchain] = malloc((size_t)n)) ==
		    NULL) {
			OPENSSL_free(der);
			return -1;
		}
		memcpy(rep->chain[rep->nchain], der, (size_t)n);
		rep->chain_len[rep->nchain++] = (size_t)n;
		OPENSSL_free(der);
	}
	return 0;
}

static int
caops_reply_cert(struct caops *o, struct caproto_reply *rep, const struct castore_issued *is,
    const char *agent)
{
	unsigned char *der = NULL;
	int n;

	if (caops_reply_chain(o, rep) == -1)
		return -1;
	if ((n = i2d_X509(is->cert, &der)) <= 0 || (rep->cert = malloc((size_t)n)) == NULL) {
		OPENSSL_free(der);
		return -1;
	}
	memcpy(rep->cert, der, (size_t)n);
	rep->cert_len = (size_t)n;
	OPENSSL_free(der);
	rep->err = CAPROTO_OK;
	snprintf(rep->serial, sizeof(rep->serial), "%s", is->serial);
	snprintf(rep->agent, sizeof(rep->agent), "%s", agent);
	catime_rfc3339(is->not_after, rep->not_after, sizeof(rep->not_after));
	return 0;
}

struct caops_consume {
	const char *dir;
	const unsigned char *hash;
	struct catoken_rec *rec;
	const char *key;            /* SHA-256 hex of the SPKI being certified */
	struct file_stage *stage;   /* the record's write, committed by cabatch */
};

/* Marks the token used for serial before anything is signed. The key hash goes into
 * the same atomic write, so a spent token always says which key it was spent for. */
static int
caops_consume(void *arg, const char *serial, char *err, size_t errlen)
{
	struct caops_consume *c = arg;

	c->rec->used_at = (long long)time(NULL);
	snprintf(c->rec->serial, sizeof(c->rec->serial), "%s", serial);
	snprintf(c->rec->key, sizeof(c->rec->key), "%s", c->key);
	/* Made durable with the batch's other tokens (before_sign_stage). */
	return catoken_update_staged(c->dir, c->hash, c->rec, c->stage, err, errlen);
}

/* A retry of an enrollment whose answer was lost (the gateway gave up waiting, the
 * connection broke) with the same key: the certificate the token was spent for, read
 * back from the archive, if the database holds it as valid. Returns 1 when rep holds
 * it, 0 when it cannot be handed out again (why in err), -1 on a CA failure (err). */
static int
caops_redeliver(struct caops *o, const struct catoken_rec *rec, struct caproto_reply *rep,
    char *err, size_t errlen)
{
	struct castore_issued is = { 0 };
	struct cadb db = { 0 };
	struct cadb_row *row;
	char *path = NULL;
	int rc = -1;

	if (castore_load_db(&o->store, &db, err, errlen) == -1)
		goto out;
	if ((row = cadb_find_serial(&db, rec->serial)) == NULL) {
		snprintf(err, errlen, "its certificate %s was never completed", rec->serial);
		rc = 0;
		goto out;
	}
	if (cadb_status(row, time(NULL)) != CADB_VALID) {
		snprintf(err, errlen, "its certificate %s is %s", rec->serial,
		    cadb_status_name(cadb_status(row, time(NULL))));
		rc = 0;
		goto out;
	}
	if (asprintf(&path, "%s/%s.pem", o->cfg->ca.certs_dir, row->serial) < 0) {
		path = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((is.cert = certify_pem_cert(path, err, errlen)) == NULL)
		goto out;
	if (catime_from_asn1(X509_get0_notAfter(is.cert), &is.not_after) == -1) {
		snprintf(err, errlen, "%s: cannot read notAfter", path);
		goto out;
	}
	snprintf(is.serial, sizeof(is.serial), "%s", row->serial);
	if (caops_reply_cert(o, rep, &is, rec->agent) == -1) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = 1;
out:
	X509_free(is.cert);
	free(path);
	cadb_free(&db);
	return rc;
}

/* Where a request of a batch is (caops_handle_batch). */
enum caops_state {
	CAOPS_DONE,     /* rep holds the answer */
	CAOPS_LOCKED,   /* checked what needs no lock: goes on under the lock */
	CAOPS_ISSUE,    /* every check passed: in the batch's issuance */
	CAOPS_DEFER     /* touches a token or agent an earlier request of the batch is
	                 * changing: handled in the next batch, as it would have been
	                 * one request after the other */
};

/* One enrollment or renewal of a batch, from its checks to its reply. */
struct caops_job {
	const struct caproto_req *req;
	struct caproto_reply *rep;
	enum caops_state state;
	struct caaudit_rec ctx;
	struct castore_issue in;
	struct cabatch_item item;
	EVP_PKEY *pub;
	char key[65];               /* SHA-256 hex of the SPKI */
	/* enroll */
	struct mapedit_agent m;
	struct caops_consume cons;
	struct file_stage stage;
	struct catoken_rec rec;
	unsigned char hash[32];
	char tid[17];
	/* renew */
	X509 *old;
	struct identity_peer peer;
	int got_peer;
	char agent[CERTIFY_AGENT_MAX + 2];
};

/* What the requests of one batch share under the lock, loaded once when needed. */
struct caops_shared {
	struct cadb db;
	int have_db;
	struct identity_map *map;
};

static int
caops_shared_db(struct caops *o, struct caops_shared *sh, char *err, size_t errlen)
{
	if (sh->have_db)
		return 0;
	if (castore_load_db(&o->store, &sh->db, err, errlen) == -1)
		return -1;
	sh->have_db = 1;
	return 0;
}

static void
caops_internal(struct caops *o, struct caops_job *j, const char *op, const char *err)
{
	log_err("%s failed: %s", strcmp(op, "enroll") == 0 ? "enrollment" : "renewal", err);
	caops_refuse(o, j->rep, CAPROTO_E_INTERNAL, op, j->req, &j->ctx, "the CA failed: %s",
	    err);
	j->state = CAOPS_DONE;
}

/* 1 when an earlier request of the batch issues for agent. */
static int
caops_agent_busy(const struct caops_job *jobs, size_t upto, const char *agent)
{
	size_t k;

	for (k = 0; k < upto; k++)
		if (jobs[k].state == CAOPS_ISSUE && strcmp(jobs[k].in.agent, agent) == 0)
			return 1;
	return 0;
}

static void
caops_enroll_pre(struct caops *o, struct caops_job *j)
{
	const struct caproto_req *req = j->req;
	char fp[65], err[1024];

	j->state = CAOPS_DONE;
	j->ctx.agent = req->agent[0] ? req->agent : NULL;
	if (catoken_parse(req->token, fp, j->hash, err, sizeof(err)) == -1) {
		caops_refuse(o, j->rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &j->ctx, "%s", err);
		return;
	}
	catoken_id(j->hash, j->tid);
	j->ctx.token = j->tid;
	if (strcmp(fp, o->store.fp) != 0 && !caops_ours_fp(o, fp)) {
		caops_refuse(o, j->rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &j->ctx,
		    "the token was made for another CA (fingerprint %.16s...)", fp);
		return;
	}
	if ((j->pub = caops_spki(req->spki, req->spki_len, err, sizeof(err))) == NULL) {
		caops_refuse(o, j->rep, CAPROTO_E_BAD_REQUEST, "enroll", req, &j->ctx, "%s", err);
		return;
	}
	if (catoken_key_hash(req->spki, req->spki_len, j->key) == -1) {
		caops_internal(o, j, "enroll", "cannot hash the public key");
		return;
	}
	j->state = CAOPS_LOCKED;
}

/* Under the lock: a token is looked up and spent by one request at a time. */
static void
caops_enroll_locked(struct caops *o, struct caops_job *jobs, size_t i, struct caops_shared *sh)
{
	const struct config *cfg = o->cfg;
	struct caops_job *j = &jobs[i];
	const struct caproto_req *req = j->req;
	struct catoken_rec *rec = &j->rec;
	char err[1024], why[1024], used[CATIME_RFC3339_LEN];
	time_t now = time(NULL);
	size_t k;
	int r;

	j->state = CAOPS_DONE;
	if (caops_too_late(o, req, j->rep, "enroll", &j->ctx))
		return;
	for (k = 0; k < i; k++)
		if (jobs[k].state == CAOPS_ISSUE && jobs[k].req->op == CAPROTO_ENROLL &&
		    memcmp(jobs[k].hash, j->hash, sizeof(j->hash)) == 0) {
			j->state = CAOPS_DEFER;
			return;
		}
	if ((r = catoken_get(cfg->ca.tokens_dir, j->hash, rec, err, sizeof(err))) == -1) {
		caops_internal(o, j, "enroll", err);
		return;
	}
	if (r == 1) {
		caops_refuse(o, j->rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &j->ctx,
		    "unknown token");
		return;
	}
	j->ctx.agent = rec->agent;
	if (rec->used_at != 0) {
		catime_rfc3339((time_t)rec->used_at, used, sizeof(used));
		why[0] = '\0';
		if (catoken_redeliverable(rec, j->key, (long long)now) &&
		    (!req->agent[0] || strcmp(req->agent, rec->agent) == 0)) {
			if ((r = caops_redeliver(o, rec, j->rep, why, sizeof(why))) == -1) {
				caops_internal(o, j, "enroll", why);
				return;
			}
			if (r == 1) {
				struct caaudit_rec a = { .what = "enroll_redelivered",
				    .agent = rec->agent, .token = j->tid, .serial = j->rep->serial,
				    .not_after = j->rep->not_after, .via = "est",
				    .peer = req->peer[0] ? req->peer : NULL };

				if (caaudit_write(cfg->ca.audit, &a, NULL) == -1)
					log_warn("cannot append to the CA audit log %s: %s",
					    cfg->ca.audit, strerror(errno));
				log_info("re-delivered certificate %s to %s (token %s, same key, "
				    "the first answer was lost)", j->rep->serial, rec->agent, j->tid);
				return;
			}
		}
		caops_refuse(o, j->rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &j->ctx,
		    "the token was already used (at %s, for certificate %s)%s%s", used,
		    rec->serial, why[0] ? "; " : "", why);
		return;
	}
	if (rec->expires <= (long long)now) {
		catime_rfc3339((time_t)rec->expires, used, sizeof(used));
		caops_refuse(o, j->rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &j->ctx,
		    "the token expired at %s", used);
		return;
	}
	if (req->agent[0] && strcmp(req->agent, rec->agent) != 0) {
		caops_refuse(o, j->rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &j->ctx,
		    "the token is not for agent %s", req->agent);
		return;
	}
	if (caops_agent_busy(jobs, i, rec->agent)) {
		j->state = CAOPS_DEFER;
		return;
	}
	if (caops_shared_db(o, sh, err, sizeof(err)) == -1) {
		caops_internal(o, j, "enroll", err);
		return;
	}
	j->m.roles = (const char *const *)rec->roles;
	j->m.nroles = rec->nroles;
	j->m.set_roles = rec->set_roles;
	j->m.scopes = (const char *const *)rec->scopes;
	j->m.nscopes = rec->nscopes;
	j->m.set_scopes = rec->set_scopes;
	j->cons.dir = cfg->ca.tokens_dir;
	j->cons.hash = j->hash;
	j->cons.rec = rec;
	j->cons.key = j->key;
	memset(&j->in, 0, sizeof(j->in));
	j->in.agent = rec->agent;
	j->in.pubkey = j->pub;
	j->in.seconds = rec->lifetime_s < CASTORE_MIN_LIFETIME ? CASTORE_MIN_LIFETIME :
	    rec->lifetime_s > CASTORE_MAX_LIFETIME ? CASTORE_MAX_LIFETIME : rec->lifetime_s;
	j->in.map = &j->m;
	j->in.before_sign = caops_consume;
	j->in.arg = &j->cons;
	j->cons.stage = &j->stage;
	j->in.before_sign_stage = &j->stage;
	j->in.before_sign_dir = cfg->ca.tokens_dir;
	j->in.audit = (struct caaudit_rec){ .what = "enroll", .agent = rec->agent,
	    .token = j->tid, .via = "est", .peer = req->peer[0] ? req->peer : NULL };
	j->state = CAOPS_ISSUE;
}

static void
caops_enroll_done(struct caops *o, struct caops_job *j)
{
	j->state = CAOPS_DONE;
	if (j->item.rc == -1) {
		/* Refused before the token was spent (the grant cannot be applied to the
		 * map any more, e.g. a role was removed): the token stays usable. */
		if (j->rec.used_at != 0)
			caops_internal(o, j, "enroll", j->item.err);
		else
			caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "enroll", j->req, &j->ctx,
			    "%s", j->item.err);
		return;
	}
	if (caops_reply_cert(o, j->rep, &j->item.out, j->rec.agent) == -1) {
		caops_internal(o, j, "enroll", "out of memory");
		return;
	}
	log_info("enrolled %s: certificate %s (token %s)", j->rec.agent, j->item.out.serial,
	    j->tid);
}

/* The agent id of a certificate: its one RDN CN=ID and the SAN URI for it. */
static int
caops_cert_agent(const struct config *cfg, X509 *x, const struct identity_peer *peer,
    char *id, size_t idlen)
{
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_ENTRY *e;
	ASN1_STRING *d;
	char want[256];
	size_t i;

	if (X509_NAME_entry_count(n) != 1 || (e = X509_NAME_get_entry(n, 0)) == NULL ||
	    OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != NID_commonName ||
	    (d = X509_NAME_ENTRY_get_data(e)) == NULL || ASN1_STRING_length(d) <= 0 ||
	    (size_t)ASN1_STRING_length(d) >= idlen)
		return -1;
	memcpy(id, ASN1_STRING_get0_data(d), (size_t)ASN1_STRING_length(d));
	id[ASN1_STRING_length(d)] = '\0';
	if (strlen(id) != (size_t)ASN1_STRING_length(d) || !certify_agent_id_valid(id))
		return -1;
	snprintf(want, sizeof(want), "spiffe://%s/agent/%s", cfg->ca.trust_domain, id);
	for (i = 0; i < peer->nuris; i++)
		if (strcmp(peer->uris[i], want) == 0)
			return 0;
	return -1;
}

static void
caops_renew_pre(struct caops *o, struct caops_job *j)
{
	const struct config *cfg = o->cfg;
	const struct caproto_req *req = j->req;
	const unsigned char *p = req->cert;
	char err[1024];
	time_t now = time(NULL), nb, na;

	j->state = CAOPS_DONE;
	if ((j->old = d2i_X509(NULL, &p, (long)req->cert_len)) == NULL ||
	    p != req->cert + req->cert_len) {
		ERR_clear_error();
		caops_refuse(o, j->rep, CAPROTO_E_BAD_REQUEST, "renew", req, &j->ctx,
		    "the presented certificate is not DER");
		return;
	}
	if (identity_peer_from_cert(j->old, &j->peer) == -1) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "the presented certificate cannot be read");
		return;
	}
	j->got_peer = 1;
	j->ctx.old_serial = j->peer.serial;
	if (!caops_ours_signed(o, j->old)) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "the certificate was not issued by this CA");
		return;
	}
	j->peer.own_ca = 1;        /* verified with this CA's key just above */
	if (caops_cert_agent(cfg, j->old, &j->peer, j->agent, sizeof(j->agent)) == -1) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "the certificate is not an agent certificate (CN=ID with SAN "
		    "spiffe://%s/agent/ID)", cfg->ca.trust_domain);
		return;
	}
	j->ctx.agent = j->agent;
	if (catime_from_asn1(X509_get0_notBefore(j->old), &nb) == -1 ||
	    catime_from_asn1(X509_get0_notAfter(j->old), &na) == -1 || nb > now || na <= now) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "the certificate is not valid now (expired or not yet valid)");
		return;
	}
	if ((j->pub = caops_spki(req->spki, req->spki_len, err, sizeof(err))) == NULL) {
		caops_refuse(o, j->rep, CAPROTO_E_BAD_REQUEST, "renew", req, &j->ctx, "%s", err);
		return;
	}
	j->state = CAOPS_LOCKED;
}

static void
caops_renew_locked(struct caops *o, struct caops_job *jobs, size_t i, struct caops_shared *sh)
{
	const struct config *cfg = o->cfg;
	struct caops_job *j = &jobs[i];
	const struct caproto_req *req = j->req;
	const struct identity_agent *ag;
	const struct cadb_row *row;
	const char *id = j->agent;
	char err[1024], subject[CERTIFY_AGENT_MAX + 8];
	time_t now = time(NULL), nb, na;
	double retry = 0;
	long life;

	j->state = CAOPS_DONE;
	if (caops_too_late(o, req, j->rep, "renew", &j->ctx))
		return;
	if (caops_agent_busy(jobs, i, id)) {
		j->state = CAOPS_DEFER;
		return;
	}
	if (caops_shared_db(o, sh, err, sizeof(err)) == -1) {
		caops_internal(o, j, "renew", err);
		return;
	}
	snprintf(subject, sizeof(subject), "/CN=%s", id);
	if ((row = cadb_find_serial(&sh->db, j->peer.serial)) == NULL ||
	    strcmp(row->subject, subject) != 0) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "certificate %s is not in the CA database", j->peer.serial);
		return;
	}
	if (cadb_status(row, now) != CADB_VALID) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "certificate %s is %s", j->peer.serial,
		    cadb_status_name(cadb_status(row, now)));
		return;
	}
	if (sh->map == NULL && identity_map_load(cfg->identity_map, &sh->map, err,
	    sizeof(err)) == -1) {
		sh->map = NULL;
		caops_internal(o, j, "renew", err);
		return;
	}
	if ((ag = identity_lookup(sh->map, &j->peer)) == NULL || strcmp(ag->id, id) != 0) {
		caops_refuse(o, j->rep, CAPROTO_E_FORBIDDEN, "renew", req, &j->ctx,
		    "agent %s is not in the identity map", id);
		return;
	}
	if (!rate_take(o->rates, id, cfg->ca.renew_per_hour / 3600.0, cfg->ca.renew_burst,
	    caops_mono(), &retry)) {
		j->rep->retry_after = retry < 1 ? 1 : (int)(retry + 0.999);
		caops_refuse(o, j->rep, CAPROTO_E_RATE_LIMITED, "renew", req, &j->ctx,
		    "too many renewals for agent %s (%d per hour); retry in %d s", id,
		    cfg->ca.renew_per_hour, j->rep->retry_after);
		return;
	}
	(void)catime_from_asn1(X509_get0_notBefore(j->old), &nb);
	(void)catime_from_asn1(X509_get0_notAfter(j->old), &na);
	life = (long)(na - nb) - CERTIFY_BACKDATE;
	memset(&j->in, 0, sizeof(j->in));
	j->in.agent = id;
	j->in.pubkey = j->pub;
	j->in.seconds = life < CASTORE_MIN_LIFETIME ? CASTORE_MIN_LIFETIME :
	    life > CASTORE_MAX_LIFETIME ? CASTORE_MAX_LIFETIME : life;
	j->in.audit = (struct caaudit_rec){ .what = "renew", .agent = id,
	    .old_serial = j->peer.serial, .via = "est",
	    .peer = req->peer[0] ? req->peer : NULL };
	j->state = CAOPS_ISSUE;
}

static void
caops_renew_done(struct caops *o, struct caops_job *j)
{
	j->state = CAOPS_DONE;
	if (j->item.rc == -1) {
		caops_internal(o, j, "renew", j->item.err);
		return;
	}
	if (caops_reply_cert(o, j->rep, &j->item.out, j->agent) == -1) {
		caops_internal(o, j, "renew", "out of memory");
		return;
	}
	log_info("renewed %s: certificate %s replaces %s", j->agent, j->item.out.serial,
	    j->peer.serial);
}

static void
caops_ocsp(struct caops *o, const struct caproto_req *req, struct caproto_reply *rep)
{
	struct certify_ocsp_id ids[CAPROTO_MAX_IDS];
	struct cadb db = { 0 };
	struct cadb_row *row;
	unsigned char *der = NULL;
	char err[1024], why[512];
	const char *comma;
	X509 *issuer = o->store.cert;
	EVP_PKEY *ikey = o->store.key, *other = NULL;
	size_t i, len = 0;
	int k;

	if (castore_lock(&o->store, err, sizeof(err)) == -1 ||
	    castore_load_db(&o->store, &db, err, sizeof(err)) == -1)
		goto internal;
	for (i = 0; i < req->nids; i++) {
		struct certify_ocsp_id *c = &ids[i];

		memset(c, 0, sizeof(*c));
		c->md_nid = req->ids[i].md_nid;
		memcpy(c->name_hash, req->ids[i].name_hash, req->ids[i].name_hash_len);
		c->name_hash_len = req->ids[i].name_hash_len;
		memcpy(c->key_hash, req->ids[i].key_hash, req->ids[i].key_hash_len);
		c->key_hash_len = req->ids[i].key_hash_len;
		snprintf(c->serial, sizeof(c->serial), "%s", req->ids[i].serial);
		c->status = V_OCSP_CERTSTATUS_UNKNOWN;
		c->reason = -1;
	}
	/* During a rollover the request may be about the other trusted certgate CA: it
	 * answers for its own certificates, signed with its own key (still in the token
	 * until `ca retire`), as its CRL is. The first CertID names the issuer; CertIDs
	 * of any other issuer in the same request are "unknown". */
	for (k = 0; req->nids > 0 && !certify_ocsp_issuer_is(issuer, &ids[0]) &&
	    k < sk_X509_num(o->store.b.ours); k++) {
		X509 *x = sk_X509_value(o->store.b.ours, k);

		if (X509_cmp(x, o->store.cert) == 0 || !certify_ocsp_issuer_is(x, &ids[0]))
			continue;
		if (castore_find_key(o->cfg, x, &other, NULL, why, sizeof(why)) == -1) {
			log_warn("OCSP request about a CA certgate still trusts, but its key is "
			    "not in the token (%s): answering unknown", why);
			break;
		}
		issuer = x;
		ikey = other;
	}
	for (i = 0; i < req->nids; i++) {
		struct certify_ocsp_id *c = &ids[i];

		if (!certify_ocsp_issuer_is(issuer, c) ||
		    (row = cadb_find_serial(&db, c->serial)) == NULL)
			continue;
		if (row->status != 'R') {
			c->status = V_OCSP_CERTSTATUS_GOOD;
			continue;
		}
		comma = strchr(row->revocation, ',');
		if (catime_parse_n(row->revocation, comma ? (size_t)(comma - row->revocation) :
		    strlen(row->revocation), &c->revoked_at) == -1)
			c->revoked_at = 0;
		c->reason = comma ? cadb_reason_code(comma + 1) : -1;
		c->status = V_OCSP_CERTSTATUS_REVOKED;
	}
	if ((der = certify_ocsp(issuer, ikey, ids, req->nids,
	    req->has_nonce ? req->nonce : NULL, req->nonce_len, time(NULL), CAOPS_OCSP_VALIDITY,
	    &len, err, sizeof(err))) == NULL)
		goto internal;
	if ((rep->ocsp = malloc(len)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto internal;
	}
	memcpy(rep->ocsp, der, len);
	rep->ocsp_len = len;
	rep->err = CAPROTO_OK;
	goto out;
internal:
	log_err("OCSP answer failed: %s", err);
	caproto_reply_error(rep, CAPROTO_E_INTERNAL, "the CA failed: %s", err);
out:
	castore_unlock(&o->store);
	OPENSSL_free(der);
	EVP_PKEY_free(other);
	cadb_free(&db);
}

void
caops_handle(struct caops *o, const struct caproto_req *req, struct caproto_reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	caops_refresh(o);
	switch (req->op) {
	case CAPROTO_PING:
		rep->err = CAPROTO_OK;
		snprintf(rep->ca, sizeof(rep->ca), "%s", o->store.fp);
		rep->pid = (long long)getpid();
		return;
	case CAPROTO_ENROLL:
	case CAPROTO_RENEW: {
		int deferred;

		/* A batch of one is never deferred. */
		caops_handle_batch(o, &req, rep, &deferred, 1);
		return;
	}
	case CAPROTO_OCSP:
		caops_ocsp(o, req, rep);
		return;
	}
	caproto_reply_error(rep, CAPROTO_E_BAD_REQUEST, "unknown operation");
}

static void
caops_job_free(struct caops_job *j)
{
	X509_free(j->item.out.cert);
	file_stage_discard(&j->stage);
	EVP_PKEY_free(j->pub);
	catoken_rec_free(&j->rec);
	X509_free(j->old);
	if (j->got_peer)
		identity_peer_clear(&j->peer);
}

void
caops_handle_batch(struct caops *o, const struct caproto_req *const *reqs,
    struct caproto_reply *reps, int *deferred, size_t n)
{
	struct caops_shared sh;
	struct cabatch_item items[CABATCH_MAX];
	struct caops_job *jobs;
	size_t i, ni = 0, locked = 0;
	char err[1024];

	memset(&sh, 0, sizeof(sh));
	for (i = 0; i < n; i++) {
		memset(&reps[i], 0, sizeof(reps[i]));
		deferred[i] = i >= CABATCH_MAX;
	}
	if (n > CABATCH_MAX)
		n = CABATCH_MAX;
	if ((jobs = calloc(n > 0 ? n : 1, sizeof(*jobs))) == NULL) {
		for (i = 0; i < n; i++)
			caproto_reply_error(&reps[i], CAPROTO_E_INTERNAL, "the CA failed: out of memory");
		return;
	}
	caops_refresh(o);
	for (i = 0; i < n; i++) {
		jobs[i].req = reqs[i];
		jobs[i].rep = &reps[i];
		if (reqs[i]->op == CAPROTO_ENROLL)
			caops_enroll_pre(o, &jobs[i]);
		else if (reqs[i]->op == CAPROTO_RENEW)
			caops_renew_pre(o, &jobs[i]);
		else
			caops_handle(o, reqs[i], &reps[i]);
		locked += jobs[i].state == CAOPS_LOCKED;
	}
	if (locked == 0)
		goto out;
	if (castore_lock(&o->store, err, sizeof(err)) == -1) {
		for (i = 0; i < n; i++)
			if (jobs[i].state == CAOPS_LOCKED)
				caops_internal(o, &jobs[i], reqs[i]->op == CAPROTO_ENROLL ? "enroll" :
				    "renew", err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (jobs[i].state != CAOPS_LOCKED)
			continue;
		if (reqs[i]->op == CAPROTO_ENROLL)
			caops_enroll_locked(o, jobs, i, &sh);
		else
			caops_renew_locked(o, jobs, i, &sh);
		if (jobs[i].state == CAOPS_ISSUE) {
			memset(&items[ni], 0, sizeof(items[ni]));
			items[ni++].in = &jobs[i].in;
		}
	}
	if (ni > 0)
		(void)cabatch_issue(&o->store, &sh.db, items, ni);
	for (i = 0, ni = 0; i < n; i++) {
		if (jobs[i].state != CAOPS_ISSUE)
			continue;
		jobs[i].item = items[ni++];
		if (reqs[i]->op == CAPROTO_ENROLL)
			caops_enroll_done(o, &jobs[i]);
		else
			caops_renew_done(o, &jobs[i]);
	}
	castore_unlock(&o->store);
out:
	for (i = 0; i < n; i++) {
		if (jobs[i].state == CAOPS_DEFER)
			deferred[i] = 1;
		caops_job_free(&jobs[i]);
	}
	free(jobs);
	cadb_free(&sh.db);
	identity_map_free(sh.map);
}
