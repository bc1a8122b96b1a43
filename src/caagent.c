/* `certgate ca issue|renew|revoke|token` (caagent.h). */
#include "caagent.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "caaudit.h"
#include "cacli.h"
#include "cadb.h"
#include "castore.h"
#include "catime.h"
#include "catoken.h"
#include "certify.h"
#include "config.h"
#include "identity.h"
#include "mapedit.h"

#define CAAGENT_TOKEN_KEEP	86400	/* used/expired token records kept this long */

/* Reads a PEM or DER CSR, verifies its self-signature and key, returns its key. */
static EVP_PKEY *
caagent_csr_key(const char *path)
{
	char err[512];
	X509_REQ *req = NULL;
	EVP_PKEY *k = NULL;
	BIO *b;

	if ((b = BIO_new_file(path, "rb")) == NULL) {
		cacli_error("cannot open CSR %s: %s", path, strerror(errno));
		ERR_clear_error();
		return NULL;
	}
	req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
	if (req == NULL) {
		(void)BIO_reset(b);
		ERR_clear_error();
		req = d2i_X509_REQ_bio(b, NULL);
	}
	BIO_free(b);
	ERR_clear_error();
	if (req == NULL) {
		cacli_error("%s is not a certificate signing request (PEM or DER)", path);
		return NULL;
	}
	if ((k = X509_REQ_get_pubkey(req)) == NULL) {
		cacli_error("cannot read the public key of %s", path);
		goto fail;
	}
	if (X509_REQ_verify(req, k) != 1) {
		ERR_clear_error();
		cacli_error("the signature of %s does not verify", path);
		goto fail;
	}
	if (certify_key_acceptable(k, err, sizeof(err)) == -1) {
		cacli_error("%s: %s", path, err);
		goto fail;
	}
	X509_REQ_free(req);
	return k;
fail:
	EVP_PKEY_free(k);
	X509_REQ_free(req);
	return NULL;
}

static char *
caagent_out_dir(const struct config *cfg, const struct cacli_args *a)
{
	char *p;

	if (a->out)
		return strdup(a->out);
	if (asprintf(&p, "%s/%s", cfg->ca.agents_dir, a->agent) < 0)
		return NULL;
	return p;
}

int
caagent_issue(struct config *cfg, struct cacli_args *a)
{
	struct mapedit_agent m = { 0 };
	struct castore_issue in;
	struct castore_issued out = { 0 };
	struct castore s;
	struct cadb db;
	EVP_PKEY *pub = NULL, *gen = NULL;
	char err[1024], *dir = NULL;
	long dup;
	int rc;

	if ((rc = cacli_need_agent(a)) != 0)
		return rc;
	rc = 1;
	if (a->csr) {
		if ((pub = caagent_csr_key(a->csr)) == NULL)
			return 1;
	} else if ((gen = pub = EVP_EC_gen("P-256")) == NULL) {
		cacli_error("cannot generate the agent key");
		return 1;
	}
	if ((dir = caagent_out_dir(cfg, a)) == NULL || cacli_begin(cfg, &s, &db) == -1)
		goto out;
	if ((dup = cacli_newest_valid(&db, a->agent, time(NULL))) != -1) {
		cacli_error("agent %s already has a valid certificate %s: renew it (agent-renew, "
		    "certgate ca renew) or revoke it first", a->agent, db.rows[dup].serial);
		goto fail;
	}
	m.roles = a->roles;
	m.nroles = a->nroles;
	m.set_roles = a->nroles > 0;
	m.scopes = a->scopes;
	m.nscopes = a->nscopes;
	m.set_scopes = a->nscopes > 0;
	memset(&in, 0, sizeof(in));
	in.agent = a->agent;
	in.pubkey = pub;
	in.seconds = cacli_lifetime(cfg, a);
	in.map = &m;
	in.out_dir = dir;
	in.out_key = gen;
	in.audit = (struct caaudit_rec){ .what = "issue", .agent = a->agent };
	if (castore_issue(&s, &db, &in, &out, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		goto fail;
	}
	printf("%s\n", out.serial);
	rc = 0;
fail:
	cacli_end(&s, &db);
out:
	X509_free(out.cert);
	EVP_PKEY_free(pub);
	free(dir);
	return rc;
}

/* 1 when the identity map has an agent with this id. */
static int
caagent_mapped(const struct config *cfg, const char *id, char *err, size_t errlen)
{
	struct identity_map *m = NULL;
	size_t i;
	int found = 0;

	if (identity_map_load(cfg->identity_map, &m, err, errlen) == -1)
		return -1;
	for (i = 0; i < m->nagents; i++)
		if (strcmp(m->agents[i].id, id) == 0)
			found = 1;
	identity_map_free(m);
	return found;
}

/* Revokes every valid row of agent id except keep; fills picked. */
static size_t
caagent_revoke_others(struct cadb *db, const char *id, const char *keep, size_t *picked)
{
	char cn[CERTIFY_AGENT_MAX + 2];
	time_t now = time(NULL);
	size_t i, n = 0;

	for (i = 0; i < db->n; i++) {
		const char *ag = cadb_agent_of(&db->rows[i], cn, sizeof(cn));

		if (ag == NULL || strcmp(ag, id) != 0 || cadb_serial_eq(db->rows[i].serial, keep) ||
		    cadb_status(&db->rows[i], now) != CADB_VALID)
			continue;
		if (cadb_revoke(&db->rows[i], now, "superseded") == 0)
			picked[n++] = i;
	}
	return n;
}

static int caagent_revoke_commit(struct castore *s, struct cadb *db, const size_t *picked,
    size_t npicked, const char *reason, FILE *out);

int
caagent_renew(struct config *cfg, struct cacli_args *a)
{
	struct castore_issue in;
	struct castore_issued out = { 0 };
	struct castore s;
	struct cadb db;
	EVP_PKEY *pub = NULL;
	X509 *old = NULL;
	char err[1024], *dir = NULL, *path = NULL;
	size_t *picked = NULL, npicked;
	time_t nb, na;
	long idx, life;
	int rc;

	if ((rc = cacli_need_agent(a)) != 0)
		return rc;
	rc = 1;
	if (a->csr && (pub = caagent_csr_key(a->csr)) == NULL)
		return 1;
	if ((dir = caagent_out_dir(cfg, a)) == NULL || cacli_begin(cfg, &s, &db) == -1)
		goto out;
	if ((idx = cacli_newest_valid(&db, a->agent, time(NULL))) == -1) {
		cacli_error("agent %s has no valid certificate to renew (issue one with agent-issue "
		    "or an enrollment token)", a->agent);
		goto fail;
	}
	switch (caagent_mapped(cfg, a->agent, err, sizeof(err))) {
	case -1:
		cacli_error("%s", err);
		goto fail;
	case 0:
		cacli_error("agent %s is not in the identity map %s: it cannot be renewed", a->agent,
		    cfg->identity_map);
		goto fail;
	}
	if (asprintf(&path, "%s/%s.pem", cfg->ca.certs_dir, db.rows[idx].serial) < 0) {
		path = NULL;
		goto fail;
	}
	if ((old = certify_pem_cert(path, err, sizeof(err))) == NULL) {
		cacli_error("the current certificate: %s", err);
		goto fail;
	}
	if (pub == NULL && (pub = X509_get_pubkey(old)) == NULL) {
		cacli_error("cannot read the key of %s", path);
		goto fail;
	}
	life = a->lifetime;
	if (life == 0 && catime_from_asn1(X509_get0_notBefore(old), &nb) == 0 &&
	    catime_from_asn1(X509_get0_notAfter(old), &na) == 0)
		life = (long)(na - nb) - CERTIFY_BACKDATE;
	if (life < CASTORE_MIN_LIFETIME)
		life = CASTORE_MIN_LIFETIME;
	if (life > CASTORE_MAX_LIFETIME)
		life = CASTORE_MAX_LIFETIME;
	memset(&in, 0, sizeof(in));
	in.agent = a->agent;
	in.pubkey = pub;
	in.seconds = life;
	in.out_dir = dir;
	in.keep_key = a->csr == NULL;
	in.audit = (struct caaudit_rec){ .what = "renew", .agent = a->agent,
	    .old_serial = db.rows[idx].serial };
	if (castore_issue(&s, &db, &in, &out, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		goto fail;
	}
	printf("%s\n", out.serial);
	if (a->revoke_old) {
		if ((picked = calloc(db.n + 1, sizeof(*picked))) == NULL)
			goto fail;
		npicked = caagent_revoke_others(&db, a->agent, out.serial, picked);
		if (npicked > 0 && caagent_revoke_commit(&s, &db, picked, npicked, "superseded",
		    stderr) == -1)
			goto fail;
	}
	rc = 0;
fail:
	cacli_end(&s, &db);
out:
	X509_free(out.cert);
	X509_free(old);
	EVP_PKEY_free(pub);
	free(picked);
	free(path);
	free(dir);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* revoke, crl, list                                                        */
/* ------------------------------------------------------------------------ */

/* Normalises a user-given serial (optional 0x, colons) to uppercase hex. */
static int
caagent_serial_arg(const char *in, char *out, size_t len)
{
	size_t n = 0;

	if (strncasecmp(in, "0x", 2) == 0)
		in += 2;
	for (; *in; in++) {
		if (*in == ':')
			continue;
		if (!isxdigit((unsigned char)*in) || n + 1 >= len)
			return -1;
		out[n++] = (char)toupper((unsigned char)*in);
	}
	out[n] = '\0';
	return n ? 0 : -1;
}

/* The CRL is signed before anything is written, so a token failure changes nothing;
 * then the database, the CRL, one audit line per serial. The serials are printed on
 * out (stdout for revoke, stderr as a note for renew). */
static int
caagent_revoke_commit(struct castore *s, struct cadb *db, const size_t *picked, size_t npicked,
    const char *reason, FILE *out)
{
	const struct config *cfg = s->cfg;
	char err[1024], cn[128], na[CATIME_RFC3339_LEN];
	X509_CRL *crl = NULL;
	time_t t;
	size_t i;
	int rc = -1;

	if (castore_crl_sign(s, db, (long)cfg->ca.crl_hours * 3600, &crl, NULL, err,
	    sizeof(err)) == -1)
		goto sfail;
	if (cadb_save(cfg->ca.db, db) == -1) {
		cacli_error("cannot write the CA database %s: %s", cfg->ca.db, strerror(errno));
		goto fail;
	}
	if (castore_crl_publish(s, crl, err, sizeof(err)) == -1)
		goto sfail;
	for (i = 0; i < npicked; i++) {
		const struct cadb_row *r = &db->rows[picked[i]];

		if (cadb_expiry(r, &t) == 0)
			catime_rfc3339(t, na, sizeof(na));
		else
			snprintf(na, sizeof(na), "?");
		(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "revoke",
		    .serial = r->serial, .agent = cadb_agent_of(r, cn, sizeof(cn)),
		    .subject = r->subject, .reason = reason, .not_after = na }, NULL);
		if (out == stdout)
			printf("%s\n", r->serial);
		else
			fprintf(out, "%s: revoked %s (%s)\n", cacli_prog(), r->serial, reason);
	}
	rc = 0;
	goto fail;
sfail:
	cacli_error("%s", err);
fail:
	X509_CRL_free(crl);
	return rc;
}

static const char *
caagent_reason_arg(const char *r)
{
	static const char *const allowed[] = { "unspecified", "keyCompromise", "CACompromise",
	    "affiliationChanged", "superseded", "cessationOfOperation", NULL };
	size_t i;

	for (i = 0; allowed[i]; i++)
		if (strcasecmp(allowed[i], r ? r : "unspecified") == 0)
			return allowed[i];
	return NULL;
}

int
caagent_revoke(struct config *cfg, struct cacli_args *a)
{
	char serial[80], cn[CERTIFY_AGENT_MAX + 2];
	struct castore s;
	struct cadb db;
	struct cadb_row *r;
	const char *reason;
	size_t *picked = NULL, npicked = 0, nrevoked = 0, i;
	time_t now = time(NULL);
	int rc = 1;

	if ((a->serial == NULL) == (a->agent == NULL)) {
		cacli_error("give exactly one of --serial HEX or --agent ID");
		return 2;
	}
	if ((reason = caagent_reason_arg(a->reason)) == NULL) {
		cacli_error("unknown reason '%s' (unspecified, keyCompromise, CACompromise, "
		    "affiliationChanged, superseded, cessationOfOperation)", a->reason);
		return 2;
	}
	if (a->serial && caagent_serial_arg(a->serial, serial, sizeof(serial)) == -1) {
		cacli_error("--serial '%s' is not a hexadecimal serial number", a->serial);
		return 1;
	}
	if (cacli_begin(cfg, &s, &db) == -1)
		return 1;
	if ((picked = calloc(db.n + 1, sizeof(*picked))) == NULL)
		goto fail;
	if (a->serial) {
		if ((r = cadb_find_serial(&db, serial)) == NULL) {
			cacli_error("no certificate with serial %s in the CA database", serial);
			goto fail;
		}
		if (r->status == 'R') {
			fprintf(stderr, "%s: certificate %s is already revoked (%s); nothing to do\n",
			    cacli_prog(), r->serial, r->revocation);
			rc = 0;
			goto fail;
		}
		picked[npicked++] = (size_t)(r - db.rows);
	} else {
		for (i = 0; i < db.n; i++) {
			const char *ag = cadb_agent_of(&db.rows[i], cn, sizeof(cn));

			if (ag == NULL || strcmp(ag, a->agent) != 0)
				continue;
			if (db.rows[i].status == 'R')
				nrevoked++;
			else if (cadb_status(&db.rows[i], now) == CADB_VALID)
				picked[npicked++] = i;
		}
		if (npicked == 0 && nrevoked > 0) {
			fprintf(stderr, "%s: agent %s has no valid certificate (already revoked); "
			    "nothing to do\n", cacli_prog(), a->agent);
			rc = 0;
			goto fail;
		}
		if (npicked == 0) {
			cacli_error("agent %s has no valid certificate in the CA database", a->agent);
			goto fail;
		}
	}
	for (i = 0; i < npicked; i++)
		if (cadb_revoke(&db.rows[picked[i]], now, reason) == -1)
			goto fail;
	if (caagent_revoke_commit(&s, &db, picked, npicked, reason, stdout) == -1)
		goto fail;
	rc = 0;
fail:
	cacli_end(&s, &db);
	free(picked);
	return rc;
}

/* The CA the token names (agents trust it from /cacerts before anything else):
 * the one that issued the server certificate, so a new agent verifies the gateway;
 * during a rollover that is still the old CA (the agent learns the new root from
 * the enrollment answer), otherwise the active one. */
static void
caagent_token_fp(const struct config *cfg, const struct castore *s, char fp[65])
{
	char err[256];
	X509 *srv, *ca;
	int i;

	snprintf(fp, 65, "%s", s->fp);
	if ((srv = certify_pem_cert(cfg->tls.cert, err, sizeof(err))) == NULL)
		return;
	for (i = 0; i < sk_X509_num(s->b.ours); i++) {
		ca = sk_X509_value(s->b.ours, i);
		if (X509_check_issued(ca, srv) == X509_V_OK &&
		    X509_verify(srv, X509_get0_pubkey(ca)) == 1) {
			(void)certify_fingerprint(ca, fp);
			break;
		}
	}
	ERR_clear_error();
	X509_free(srv);
}

int
caagent_token(struct config *cfg, struct cacli_args *a)
{
	char tokfp[65];
	struct mapedit_agent m = { 0 };
	struct catoken_rec rec;
	struct castore s;
	unsigned char hash[32];
	char err[1024], tok[CATOKEN_LEN + 1], id[17], exp[CATIME_RFC3339_LEN], life[16];
	char *maptext = NULL, *newmap = NULL, *uri = NULL;
	size_t maplen = 0, newlen;
	time_t now = time(NULL);
	json_t *extra = NULL;
	int rc;

	if ((rc = cacli_need_agent(a)) != 0)
		return rc;
	rc = 1;
	memset(&rec, 0, sizeof(rec));
	castore_init(&s, cfg);
	if (castore_lock(&s, err, sizeof(err)) == -1 || castore_open(&s, cfg, 0, err,
	    sizeof(err)) == -1)
		goto sfail;
	/* The same checks the enrollment will make, so a token is never born useless. */
	m.id = a->agent;
	if (asprintf(&uri, "spiffe://%s/agent/%s", cfg->ca.trust_domain, a->agent) < 0) {
		uri = NULL;
		goto fail;
	}
	m.uri = uri;
	m.roles = a->roles;
	m.nroles = a->nroles;
	m.set_roles = a->nroles > 0;
	m.scopes = a->scopes;
	m.nscopes = a->nscopes;
	m.set_scopes = a->nscopes > 0;
	if (mapedit_read(cfg->identity_map, &maptext, &maplen, err, sizeof(err)) == -1)
		goto sfail;
	if (mapedit_set_agent(maptext, maplen, &m, &newmap, &newlen, err, sizeof(err)) == -1) {
		cacli_error("%s: %s", cfg->identity_map, err);
		goto fail;
	}
	snprintf(rec.agent, sizeof(rec.agent), "%s", a->agent);
	rec.roles = (char **)a->roles;
	rec.nroles = a->nroles;
	rec.set_roles = a->nroles > 0;
	rec.scopes = (char **)a->scopes;
	rec.nscopes = a->nscopes;
	rec.set_scopes = a->nscopes > 0;
	rec.lifetime_s = cacli_lifetime(cfg, a);
	rec.created = now;
	rec.expires = now + (a->ttl ? a->ttl : CAAGENT_DEFAULT_TTL);
	(void)catoken_prune(cfg->ca.tokens_dir, now, CAAGENT_TOKEN_KEEP);
	caagent_token_fp(cfg, &s, tokfp);
	if (catoken_make(tokfp, tok, sizeof(tok), hash) == -1) {
		cacli_error("cannot make a random token");
		goto fail;
	}
	if (catoken_put(cfg->ca.tokens_dir, hash, &rec, err, sizeof(err)) == -1)
		goto sfail;
	catoken_id(hash, id);
	catime_rfc3339((time_t)rec.expires, exp, sizeof(exp));
	catime_duration_str(rec.lifetime_s, life, sizeof(life));
	if ((extra = catoken_rec_json(&rec)) != NULL) {
		json_object_del(extra, "agent");
		json_object_del(extra, "created");
		json_object_set_new(extra, "expires", json_string(exp));
	}
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "token",
	    .agent = a->agent, .token = id }, extra);
	fprintf(stderr, "%s: token %s for agent %s (certificate lifetime %s), usable once "
	    "until %s\n", cacli_prog(), id, a->agent, life, exp);
	printf("%s\n", tok);
	explicit_bzero(tok, sizeof(tok));
	rc = 0;
	goto fail;
sfail:
	cacli_error("%s", err);
fail:
	json_decref(extra);
	free(maptext);
	free(newmap);
	free(uri);
	castore_close(&s);
	return rc;
}
