/* Group commit of agent certificates (cabatch.h). */
#include "cabatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "caaudit.h"
#include "catime.h"
#include "certify.h"
#include "config.h"
#include "file.h"
#include "log.h"
#include "mapedit.h"

/* What one item carries between the stages. */
struct cabatch_work {
	int live;                   /* still going (rc 0 so far) */
	char *uri, *subject;
	char *hex;                  /* OPENSSL_malloc'd serial */
	ASN1_INTEGER *sn;
	X509_NAME *name;
	X509 *x;
	char expiry[CATIME_INDEX_LEN], na[CATIME_RFC3339_LEN];
};

static void
cabatch_drop(struct cabatch_item *it, struct cabatch_work *w, const char *why)
{
	it->rc = -1;
	w->live = 0;
	snprintf(it->err, sizeof(it->err), "%s", why);
}

/* A crash point fires only when something is being issued, as castore_issue's did. */
static void
cabatch_crashpoint(const struct cabatch_work *w, size_t n, const char *step)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (w[i].live) {
			castore_crashpoint(step);
			return;
		}
}

/* Every live item still going fails with err (a shared write failed). */
static void
cabatch_fail_all(struct cabatch_item *it, struct cabatch_work *w, size_t n, const char *err)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (w[i].live)
			cabatch_drop(&it[i], &w[i], err);
}

/* Applies the map edits of the items (the live ones when live_only) in order to
 * text; *out the result (NULL: no item edits the map). An item whose edit is
 * refused is dropped with the message. */
static int
cabatch_map(const struct config *cfg, const char *text, size_t len, struct cabatch_item *it,
    struct cabatch_work *w, size_t n, char **out, size_t *outlen)
{
	const char *cur = text;
	size_t curlen = len, i, nl;
	char *next, err[700], why[1024];

	*out = NULL;
	*outlen = 0;
	for (i = 0; i < n; i++) {
		struct mapedit_agent m;

		if (!w[i].live || it[i].in->map == NULL)
			continue;
		m = *it[i].in->map;
		m.id = it[i].in->agent;
		m.uri = w[i].uri;
		if (mapedit_set_agent(cur, curlen, &m, &next, &nl, err, sizeof(err)) == -1) {
			snprintf(why, sizeof(why), "%s: %s", cfg->identity_map, err);
			cabatch_drop(&it[i], &w[i], why);
			continue;
		}
		free(*out);
		*out = next;
		*outlen = nl;
		cur = next;
		curlen = nl;
	}
	return 0;
}

/* 1 when hex is the serial of an earlier item of the batch. */
static int
cabatch_serial_taken(struct cabatch_work *w, size_t upto, const char *hex)
{
	size_t i;

	for (i = 0; i < upto; i++)
		if (w[i].hex != NULL && cadb_serial_eq(w[i].hex, hex))
			return 1;
	return 0;
}

/* The checks castore_issue makes before anything is spent; 0 or -1 (item dropped). */
static int
cabatch_check(struct castore *s, struct cadb *db, struct cabatch_item *it,
    struct cabatch_work *w, size_t i)
{
	const struct config *cfg = s->cfg;
	const struct castore_issue *in = it[i].in;
	const char *td = cfg->ca.trust_domain ? cfg->ca.trust_domain : "certgate.local";
	int tries;

	if (!certify_agent_id_valid(in->agent)) {
		cabatch_drop(&it[i], &w[i], "bad agent id: want [A-Za-z0-9][A-Za-z0-9._-]{0,63}");
		return -1;
	}
	if (in->seconds < CASTORE_MIN_LIFETIME || in->seconds > CASTORE_MAX_LIFETIME) {
		snprintf(it[i].err, sizeof(it[i].err), "lifetime %ld s is outside 2m..365d",
		    in->seconds);
		it[i].rc = -1;
		w[i].live = 0;
		return -1;
	}
	if (asprintf(&w[i].uri, "spiffe://%s/agent/%s", td, in->agent) < 0 ||
	    asprintf(&w[i].subject, "/CN=%s", in->agent) < 0) {
		w[i].uri = w[i].subject = NULL;
		cabatch_drop(&it[i], &w[i], "out of memory");
		return -1;
	}
	if ((w[i].name = X509_NAME_new()) == NULL ||
	    !X509_NAME_add_entry_by_txt(w[i].name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)in->agent, -1, -1, 0)) {
		ERR_clear_error();
		cabatch_drop(&it[i], &w[i], "cannot build the subject");
		return -1;
	}
	for (tries = 0; ; tries++) {
		if ((w[i].sn = castore_serial(s, db, &w[i].hex, it[i].err,
		    sizeof(it[i].err))) == NULL) {
			it[i].rc = -1;
			w[i].live = 0;
			return -1;
		}
		if (!cabatch_serial_taken(w, i, w[i].hex))
			break;
		ASN1_INTEGER_free(w[i].sn);
		OPENSSL_free(w[i].hex);
		w[i].sn = NULL;
		w[i].hex = NULL;
		if (tries == 8) {
			cabatch_drop(&it[i], &w[i], "cannot find an unused serial");
			return -1;
		}
	}
	return 0;
}

static void
cabatch_work_free(struct cabatch_work *w)
{
	X509_free(w->x);
	X509_NAME_free(w->name);
	ASN1_INTEGER_free(w->sn);
	OPENSSL_free(w->hex);
	free(w->uri);
	free(w->subject);
}

/* The directories before_sign wrote into, each fsync'd once. -1 with err. */
static int
cabatch_sync_token_dirs(struct cabatch_item *it, struct cabatch_work *w, size_t n, char *err,
    size_t errlen)
{
	const char *done[CABATCH_MAX];
	size_t i, j, nd = 0;

	for (i = 0; i < n; i++) {
		const char *d = it[i].in->before_sign_dir;

		if (!w[i].live || d == NULL)
			continue;
		for (j = 0; j < nd && strcmp(done[j], d) != 0; j++)
			;
		if (j < nd)
			continue;
		if (file_fsync_dir(d) == -1) {
			snprintf(err, errlen, "cannot fsync %s: %s", d, strerror(errno));
			return -1;
		}
		done[nd++] = d;
	}
	return 0;
}

size_t
cabatch_issue(struct castore *s, struct cadb *db, struct cabatch_item *it, size_t n)
{
	const struct config *cfg = s->cfg;
	struct cabatch_work w[CABATCH_MAX];
	struct caaudit_rec audit[CABATCH_MAX];
	struct file_stage arch[CABATCH_MAX], *stages[CABATCH_MAX];
	struct certify_spec spec;
	char *maptext = NULL, *newmap = NULL, err[1024];
	size_t maplen = 0, newlen = 0, i, ns, added = 0, na = 0, issued = 0;
	int need_map = 0;

	memset(w, 0, sizeof(w));
	memset(arch, 0, sizeof(arch));
	for (i = 0; i < n; i++) {
		memset(&it[i].out, 0, sizeof(it[i].out));
		it[i].rc = -1;
		it[i].err[0] = '\0';
	}
	if (n > CABATCH_MAX) {
		for (i = 0; i < n; i++)
			snprintf(it[i].err, sizeof(it[i].err), "internal error: batch of %zu > %d",
			    n, CABATCH_MAX);
		return 0;
	}
	if (s->lock == -1 || s->key == NULL) {
		for (i = 0; i < n; i++)
			snprintf(it[i].err, sizeof(it[i].err),
			    "internal error: issuing without the CA lock or key");
		return 0;
	}
	/* Everything that can be refused is decided before any token is spent. */
	for (i = 0; i < n; i++) {
		it[i].rc = 0;
		w[i].live = 1;
		need_map |= it[i].in->map != NULL;
	}
	if (need_map && mapedit_read(cfg->identity_map, &maptext, &maplen, err,
	    sizeof(err)) == -1) {
		cabatch_fail_all(it, w, n, err);
		goto out;
	}
	for (i = 0; i < n; i++)
		(void)cabatch_check(s, db, it, w, i);
	(void)cabatch_map(cfg, maptext, maplen, it, w, n, &newmap, &newlen);

	/* Tokens spent, durable before any signature. */
	for (i = 0; i < n; i++) {
		const struct castore_issue *in = it[i].in;

		if (w[i].live && in->before_sign &&
		    in->before_sign(in->arg, w[i].hex, it[i].err, sizeof(it[i].err)) == -1) {
			it[i].rc = -1;
			w[i].live = 0;
		}
	}
	for (i = 0, ns = 0; i < n; i++)
		if (w[i].live && it[i].in->before_sign_stage != NULL)
			stages[ns++] = it[i].in->before_sign_stage;
	if (file_stage_commit(stages, ns) == -1) {
		snprintf(err, sizeof(err), "cannot write a token record: %s", strerror(errno));
		cabatch_fail_all(it, w, n, err);
	} else if (cabatch_sync_token_dirs(it, w, n, err, sizeof(err)) == -1)
		cabatch_fail_all(it, w, n, err);
	cabatch_crashpoint(w, n, "before_sign");
	for (i = 0; i < n; i++) {
		if (!w[i].live)
			continue;
		memset(&spec, 0, sizeof(spec));
		spec.profile = CERTIFY_AGENT;
		spec.subject = w[i].name;
		spec.pubkey = it[i].in->pubkey;
		spec.issuer = s->cert;
		spec.signer = s->key;
		spec.seconds = it[i].in->seconds;
		spec.serial = w[i].sn;
		spec.san = w[i].uri;
		spec.ocsp_url = cfg->ca.ocsp_url;
		if ((w[i].x = certify_cert(&spec, it[i].err, sizeof(it[i].err))) == NULL) {
			it[i].rc = -1;
			w[i].live = 0;
			continue;
		}
		if (catime_from_asn1(X509_get0_notAfter(w[i].x), &it[i].out.not_after) == -1) {
			cabatch_drop(&it[i], &w[i], "cannot read the certificate's notAfter");
			continue;
		}
		catime_format(it[i].out.not_after, w[i].expiry, sizeof(w[i].expiry));
		catime_rfc3339(it[i].out.not_after, w[i].na, sizeof(w[i].na));
	}
	cabatch_crashpoint(w, n, "after_sign");
	for (i = 0; i < n; i++)
		if (w[i].live && it[i].in->out_dir &&
		    castore_write_out(s, it[i].in, w[i].x, it[i].err, sizeof(it[i].err)) == -1) {
			it[i].rc = -1;
			w[i].live = 0;
		}
	for (i = 0, ns = 0; i < n; i++)
		if (w[i].live && castore_archive_stage(s, w[i].x, w[i].hex, &arch[i], it[i].err,
		    sizeof(it[i].err)) == -1) {
			it[i].rc = -1;
			w[i].live = 0;
		} else if (w[i].live)
			stages[ns++] = &arch[i];
	if (file_stage_commit(stages, ns) == -1) {
		snprintf(err, sizeof(err), "cannot archive a certificate in %s: %s",
		    cfg->ca.certs_dir, strerror(errno));
		cabatch_fail_all(it, w, n, err);
	} else if (ns > 0 && file_fsync_dir(cfg->ca.certs_dir) == -1) {
		snprintf(err, sizeof(err), "cannot fsync %s: %s", cfg->ca.certs_dir,
		    strerror(errno));
		cabatch_fail_all(it, w, n, err);
	}
	cabatch_crashpoint(w, n, "after_archive");
	if (need_map) {
		int dropped = 0;

		for (i = 0; i < n; i++)
			dropped |= !w[i].live && it[i].in->map != NULL && w[i].hex != NULL;
		/* An item dropped after the edits: the map is the survivors' edits only. */
		if (dropped) {
			free(newmap);
			(void)cabatch_map(cfg, maptext, maplen, it, w, n, &newmap, &newlen);
		}
		if (newmap != NULL && mapedit_write(cfg->identity_map, newmap, newlen, err,
		    sizeof(err)) == -1)
			cabatch_fail_all(it, w, n, err);
	}
	cabatch_crashpoint(w, n, "after_map");
	for (i = 0; i < n; i++) {
		if (!w[i].live)
			continue;
		audit[na] = it[i].in->audit;
		audit[na].serial = w[i].hex;
		audit[na].subject = w[i].subject;
		audit[na].not_after = w[i].na;
		na++;
	}
	if (caaudit_write_many(cfg->ca.audit, audit, na, NULL) == -1)
		log_warn("cannot append to the CA audit log %s: %s", cfg->ca.audit, strerror(errno));
	cabatch_crashpoint(w, n, "after_audit");
	/* The commit point: the rows make the certificates part of the CA's record. */
	for (i = 0; i < n; i++) {
		if (!w[i].live)
			continue;
		if (cadb_add_valid(db, w[i].expiry, w[i].hex, w[i].subject) == -1) {
			cabatch_fail_all(it, w, n, "out of memory");
			break;
		}
		added++;
	}
	if (added > 0 && (i < n || cadb_save(cfg->ca.db, db) == -1)) {
		if (i == n) {
			snprintf(err, sizeof(err), "cannot write the CA database %s: %s", cfg->ca.db,
			    strerror(errno));
			cabatch_fail_all(it, w, n, err);
		}
		while (added-- > 0)
			cadb_pop(db);	/* the rows are not on disk: forget them */
		added = 0;
	}
	cabatch_crashpoint(w, n, "after_commit");
	for (i = 0; i < n; i++) {
		if (!w[i].live)
			continue;
		snprintf(it[i].out.serial, sizeof(it[i].out.serial), "%s", w[i].hex);
		it[i].out.cert = w[i].x;
		w[i].x = NULL;
		issued++;
	}
	if (issued > 1)
		log_info("issued %zu certificates in one commit", issued);
out:
	for (i = 0; i < n; i++) {
		cabatch_work_free(&w[i]);
		file_stage_discard(&arch[i]);
	}
	free(maptext);
	free(newmap);
	return issued;
}
