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
#include "cadb.h"
#include "castore.h"
#include "catime.h"
#include "catoken.h"
#include "certify.h"
#include "config.h"
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
	return catoken_update(c->dir, c->hash, c->rec, err, errlen);
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

static void
caops_enroll(struct caops *o, const struct caproto_req *req, struct caproto_reply *rep)
{
	const struct config *cfg = o->cfg;
	struct mapedit_agent m = { 0 };
	struct caaudit_rec ctx = { 0 };
	struct castore_issue in;
	struct castore_issued is = { 0 };
	struct caops_consume cons;
	struct catoken_rec rec = { 0 };
	struct cadb db = { 0 };
	unsigned char hash[32];
	char fp[65], id[17], err[1024], why[1024], used[CATIME_RFC3339_LEN], key[65];
	EVP_PKEY *pub = NULL;
	time_t now = time(NULL);
	int r;

	ctx.agent = req->agent[0] ? req->agent : NULL;
	if (catoken_parse(req->token, fp, hash, err, sizeof(err)) == -1) {
		caops_refuse(o, rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &ctx, "%s", err);
		return;
	}
	catoken_id(hash, id);
	ctx.token = id;
	if (strcmp(fp, o->store.fp) != 0 && !caops_ours_fp(o, fp)) {
		caops_refuse(o, rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &ctx,
		    "the token was made for another CA (fingerprint %.16s...)", fp);
		return;
	}
	if ((pub = caops_spki(req->spki, req->spki_len, err, sizeof(err))) == NULL) {
		caops_refuse(o, rep, CAPROTO_E_BAD_REQUEST, "enroll", req, &ctx, "%s", err);
		return;
	}
	if (catoken_key_hash(req->spki, req->spki_len, key) == -1) {
		snprintf(err, sizeof(err), "cannot hash the public key");
		goto internal;
	}
	if (castore_lock(&o->store, err, sizeof(err)) == -1)
		goto internal;
	if (caops_too_late(o, req, rep, "enroll", &ctx))
		goto out;
	/* Under the lock: a token is looked up and spent by one request at a time. */
	if ((r = catoken_get(cfg->ca.tokens_dir, hash, &rec, err, sizeof(err))) == -1)
		goto internal;
	if (r == 1) {
		caops_refuse(o, rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &ctx, "unknown token");
		goto out;
	}
	ctx.agent = rec.agent;
	if (rec.used_at != 0) {
		catime_rfc3339((time_t)rec.used_at, used, sizeof(used));
		why[0] = '\0';
		if (catoken_redeliverable(&rec, key, (long long)now) &&
		    (!req->agent[0] || strcmp(req->agent, rec.agent) == 0)) {
			if ((r = caops_redeliver(o, &rec, rep, why, sizeof(why))) == -1) {
				snprintf(err, sizeof(err), "%s", why);
				goto internal;
			}
			if (r == 1) {
				struct caaudit_rec a = { .what = "enroll_redelivered",
				    .agent = rec.agent, .token = id, .serial = rep->serial,
				    .not_after = rep->not_after, .via = "est",
				    .peer = req->peer[0] ? req->peer : NULL };

				if (caaudit_write(cfg->ca.audit, &a, NULL) == -1)
					log_warn("cannot append to the CA audit log %s: %s",
					    cfg->ca.audit, strerror(errno));
				log_info("re-delivered certificate %s to %s (token %s, same key, "
				    "the first answer was lost)", rep->serial, rec.agent, id);
				goto out;
			}
		}
		caops_refuse(o, rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &ctx,
		    "the token was already used (at %s, for certificate %s)%s%s", used,
		    rec.serial, why[0] ? "; " : "", why);
		goto out;
	}
	if (rec.expires <= (long long)now) {
		catime_rfc3339((time_t)rec.expires, used, sizeof(used));
		caops_refuse(o, rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &ctx,
		    "the token expired at %s", used);
		goto out;
	}
	if (req->agent[0] && strcmp(req->agent, rec.agent) != 0) {
		caops_refuse(o, rep, CAPROTO_E_UNAUTHORIZED, "enroll", req, &ctx,
		    "the token is not for agent %s", req->agent);
		goto out;
	}
	if (castore_load_db(&o->store, &db, err, sizeof(err)) == -1)
		goto internal;
	m.roles = (const char *const *)rec.roles;
	m.nroles = rec.nroles;
	m.set_roles = rec.set_roles;
	m.scopes = (const char *const *)rec.scopes;
	m.nscopes = rec.nscopes;
	m.set_scopes = rec.set_scopes;
	cons.dir = cfg->ca.tokens_dir;
	cons.hash = hash;
	cons.rec = &rec;
	cons.key = key;
	memset(&in, 0, sizeof(in));
	in.agent = rec.agent;
	in.pubkey = pub;
	in.seconds = rec.lifetime_s < CASTORE_MIN_LIFETIME ? CASTORE_MIN_LIFETIME :
	    rec.lifetime_s > CASTORE_MAX_LIFETIME ? CASTORE_MAX_LIFETIME : rec.lifetime_s;
	in.map = &m;
	in.before_sign = caops_consume;
	in.arg = &cons;
	in.audit = (struct caaudit_rec){ .what = "enroll", .agent = rec.agent, .token = id,
	    .via = "est", .peer = req->peer[0] ? req->peer : NULL };
	if (castore_issue(&o->store, &db, &in, &is, err, sizeof(err)) == -1) {
		/* Refused before the token was spent (the grant cannot be applied to the
		 * map any more, e.g. a role was removed): the token stays usable. */
		if (rec.used_at != 0)
			goto internal;
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "enroll", req, &ctx, "%s", err);
		goto out;
	}
	if (caops_reply_cert(o, rep, &is, rec.agent) == -1) {
		snprintf(err, sizeof(err), "out of memory");
		goto internal;
	}
	log_info("enrolled %s: certificate %s (token %s)", rec.agent, is.serial, id);
	goto out;
internal:
	log_err("enrollment failed: %s", err);
	caops_refuse(o, rep, CAPROTO_E_INTERNAL, "enroll", req, &ctx, "the CA failed: %s", err);
out:
	castore_unlock(&o->store);
	X509_free(is.cert);
	EVP_PKEY_free(pub);
	catoken_rec_free(&rec);
	cadb_free(&db);
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
caops_renew(struct caops *o, const struct caproto_req *req, struct caproto_reply *rep)
{
	const struct config *cfg = o->cfg;
	const struct identity_agent *ag;
	struct identity_map *map = NULL;
	struct identity_peer peer;
	struct caaudit_rec ctx = { 0 };
	struct castore_issue in;
	struct castore_issued is = { 0 };
	struct cadb db = { 0 };
	struct cadb_row *row;
	const unsigned char *p = req->cert;
	char err[1024], id[CERTIFY_AGENT_MAX + 2], subject[CERTIFY_AGENT_MAX + 8];
	EVP_PKEY *pub = NULL;
	X509 *old = NULL;
	time_t now = time(NULL), nb, na;
	double retry = 0;
	long life;
	int got_peer = 0;

	if ((old = d2i_X509(NULL, &p, (long)req->cert_len)) == NULL ||
	    p != req->cert + req->cert_len) {
		ERR_clear_error();
		caops_refuse(o, rep, CAPROTO_E_BAD_REQUEST, "renew", req, &ctx,
		    "the presented certificate is not DER");
		goto out;
	}
	if (identity_peer_from_cert(old, &peer) == -1) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "the presented certificate cannot be read");
		goto out;
	}
	got_peer = 1;
	ctx.old_serial = peer.serial;
	if (!caops_ours_signed(o, old)) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "the certificate was not issued by this CA");
		goto out;
	}
	peer.own_ca = 1;        /* verified with this CA's key just above */
	if (caops_cert_agent(cfg, old, &peer, id, sizeof(id)) == -1) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "the certificate is not an agent certificate (CN=ID with SAN "
		    "spiffe://%s/agent/ID)", cfg->ca.trust_domain);
		goto out;
	}
	ctx.agent = id;
	if (catime_from_asn1(X509_get0_notBefore(old), &nb) == -1 ||
	    catime_from_asn1(X509_get0_notAfter(old), &na) == -1 || nb > now || na <= now) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "the certificate is not valid now (expired or not yet valid)");
		goto out;
	}
	if ((pub = caops_spki(req->spki, req->spki_len, err, sizeof(err))) == NULL) {
		caops_refuse(o, rep, CAPROTO_E_BAD_REQUEST, "renew", req, &ctx, "%s", err);
		goto out;
	}
	if (castore_lock(&o->store, err, sizeof(err)) == -1)
		goto internal;
	if (caops_too_late(o, req, rep, "renew", &ctx))
		goto out;
	if (castore_load_db(&o->store, &db, err, sizeof(err)) == -1)
		goto internal;
	snprintf(subject, sizeof(subject), "/CN=%s", id);
	if ((row = cadb_find_serial(&db, peer.serial)) == NULL || strcmp(row->subject, subject) != 0) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "certificate %s is not in the CA database", peer.serial);
		goto out;
	}
	if (cadb_status(row, now) != CADB_VALID) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "certificate %s is %s", peer.serial, cadb_status_name(cadb_status(row, now)));
		goto out;
	}
	if (identity_map_load(cfg->identity_map, &map, err, sizeof(err)) == -1)
		goto internal;
	if ((ag = identity_lookup(map, &peer)) == NULL || strcmp(ag->id, id) != 0) {
		caops_refuse(o, rep, CAPROTO_E_FORBIDDEN, "renew", req, &ctx,
		    "agent %s is not in the identity map", id);
		goto out;
	}
	if (!rate_take(o->rates, id, cfg->ca.renew_per_hour / 3600.0, cfg->ca.renew_burst,
	    caops_mono(), &retry)) {
		rep->retry_after = retry < 1 ? 1 : (int)(retry + 0.999);
		caops_refuse(o, rep, CAPROTO_E_RATE_LIMITED, "renew", req, &ctx,
		    "too many renewals for agent %s (%d per hour); retry in %d s", id,
		    cfg->ca.renew_per_hour, rep->retry_after);
		goto out;
	}
	life = (long)(na - nb) - CERTIFY_BACKDATE;
	memset(&in, 0, sizeof(in));
	in.agent = id;
	in.pubkey = pub;
	in.seconds = life < CASTORE_MIN_LIFETIME ? CASTORE_MIN_LIFETIME :
	    life > CASTORE_MAX_LIFETIME ? CASTORE_MAX_LIFETIME : life;
	in.audit = (struct caaudit_rec){ .what = "renew", .agent = id, .old_serial = peer.serial,
	    .via = "est", .peer = req->peer[0] ? req->peer : NULL };
	if (castore_issue(&o->store, &db, &in, &is, err, sizeof(err)) == -1)
		goto internal;
	if (caops_reply_cert(o, rep, &is, id) == -1) {
		snprintf(err, sizeof(err), "out of memory");
		goto internal;
	}
	log_info("renewed %s: certificate %s replaces %s", id, is.serial, peer.serial);
	goto out;
internal:
	log_err("renewal failed: %s", err);
	caops_refuse(o, rep, CAPROTO_E_INTERNAL, "renew", req, &ctx, "the CA failed: %s", err);
out:
	castore_unlock(&o->store);
	if (got_peer)
		identity_peer_clear(&peer);
	identity_map_free(map);
	X509_free(is.cert);
	X509_free(old);
	EVP_PKEY_free(pub);
	cadb_free(&db);
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
		caops_enroll(o, req, rep);
		return;
	case CAPROTO_RENEW:
		caops_renew(o, req, rep);
		return;
	case CAPROTO_OCSP:
		caops_ocsp(o, req, rep);
		return;
	}
	caproto_reply_error(rep, CAPROTO_E_BAD_REQUEST, "unknown operation");
}
