/* `certgate ca rollover` and `certgate ca retire` (caroll.h). */
#include "caroll.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "caaudit.h"
#include "cabundle.h"
#include "cacli.h"
#include "cadb.h"
#include "casetup.h"
#include "castore.h"
#include "catime.h"
#include "certify.h"
#include "config.h"
#include "p11.h"

static int caroll_server(struct config *cfg, X509 *retired);

/* Replaces s's bundle by certs (the CA is re-read from it, the key kept). 0/-1. */
static int
caroll_set_bundle(struct castore *s, STACK_OF(X509) *certs, char *err, size_t errlen)
{
	struct cabundle nb;

	if (cabundle_from(certs, &nb, err, errlen) == -1)
		return -1;
	cabundle_free(&s->b);
	s->b = nb;
	return 0;
}

/* The new CA's subject: the old one with " G<gen>" in place of its CN's suffix, so
 * the two CAs (and their CRLs) never share an issuer name. */
static X509_NAME *
caroll_subject(X509 *old, int gen, const char *given, char *err, size_t errlen)
{
	X509_NAME *n;
	X509_NAME_ENTRY *e;
	char cn[256], *g;
	int i;

	if (given != NULL)
		return certify_dn(given, err, errlen);
	if ((n = X509_NAME_dup(X509_get_subject_name(old))) == NULL)
		goto oom;
	if ((i = X509_NAME_get_index_by_NID(n, NID_commonName, -1)) < 0 ||
	    X509_NAME_get_text_by_NID(n, NID_commonName, cn, sizeof(cn) - 16) < 0)
		snprintf(cn, sizeof(cn), "certgate CA");
	if ((g = strstr(cn, " G")) != NULL && strspn(g + 2, "0123456789") == strlen(g + 2))
		*g = '\0';
	snprintf(cn + strlen(cn), sizeof(cn) - strlen(cn), " G%d", gen);
	if (i >= 0 && (e = X509_NAME_delete_entry(n, i)) != NULL)
		X509_NAME_ENTRY_free(e);
	if (!X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (unsigned char *)cn,
	    -1, i, 0)) {
		X509_NAME_free(n);
		goto oom;
	}
	return n;
oom:
	snprintf(err, errlen, "out of memory");
	return NULL;
}

int
caroll_rollover(struct config *cfg, struct cacli_args *a)
{
	struct certify_spec spec;
	struct p11_defaults d;
	STACK_OF(X509) *certs = NULL;
	struct castore s;
	struct cadb db;
	X509_NAME *name = NULL;
	ASN1_INTEGER *sn = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL, *old;
	char err[1024], *serial = NULL, *oldserial = NULL, *uri = NULL, *subj = NULL;
	char na[CATIME_RFC3339_LEN];
	int gen, i, rc = 1;

	if (cacli_begin(cfg, &s, &db) == -1)
		return 1;
	old = s.cert;
	if (!cabundle_self_signed(old)) {
		cacli_error("certgate's CA is an intermediate under a corporate root: roll it "
		    "over with a new request signed by the corporate CA (not supported by "
		    "rollover)");
		goto out;
	}
	if ((gen = castore_next_gen(cfg, err, sizeof(err))) == -1 ||
	    (name = caroll_subject(old, gen, a->subject, err, sizeof(err))) == NULL)
		goto sfail;
	if ((uri = castore_key_uri(cfg, gen)) == NULL) {
		cacli_error("out of memory");
		goto out;
	}
	config_ca_p11(cfg, &d);
	if (p11_generate_ec_key(&d, uri, &key) == -1) {
		cacli_error("cannot generate the new CA key in the token (see above)");
		goto out;
	}
	if ((sn = castore_serial(&s, &db, &serial, err, sizeof(err))) == NULL)
		goto sfail;
	memset(&spec, 0, sizeof(spec));
	spec.profile = CERTIFY_CA;
	spec.subject = name;
	spec.pubkey = key;
	spec.signer = key;
	spec.seconds = (long)cfg->ca.ca_days * 86400L;
	spec.serial = sn;
	if ((x = certify_cert(&spec, err, sizeof(err))) == NULL)
		goto sfail;
	if ((certs = sk_X509_new_null()) == NULL || X509_up_ref(x) != 1 ||
	    sk_X509_push(certs, x) <= 0)
		goto oom;
	for (i = 0; i < sk_X509_num(s.b.all); i++)
		if (X509_up_ref(sk_X509_value(s.b.all, i)) != 1 ||
		    sk_X509_push(certs, sk_X509_value(s.b.all, i)) <= 0)
			goto oom;
	if (caroll_set_bundle(&s, certs, err, sizeof(err)) == -1)
		goto sfail;
	oldserial = cabundle_serial_hex(old);
	X509_free(s.cert);
	EVP_PKEY_free(s.key);
	s.cert = x;
	s.key = key;
	x = NULL;
	key = NULL;
	/* The CRLs first: a CRL of a CA the gateway does not trust yet is refused by
	 * its reload, a trusted CA without a CRL would refuse that CA's clients. */
	if (castore_crl_refresh(&s, &db, (long)cfg->ca.crl_hours * 3600, NULL, err,
	    sizeof(err)) == -1 ||
	    cabundle_write(cfg->ca.cert, NULL, s.b.all, 0644, err, sizeof(err)) == -1)
		goto sfail;
	subj = X509_NAME_oneline(name, NULL, 0);
	catime_rfc3339(time(NULL) + (time_t)cfg->ca.ca_days * 86400, na, sizeof(na));
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "rollover",
	    .serial = serial, .subject = subj, .not_after = na, .old_serial = oldserial }, NULL);
	printf("new CA %s (serial %s, key generation %d in the CA token) signs from now on;\n"
	    "CA %s stays trusted. Once every agent has renewed (its cert.pem is from the new\n"
	    "CA, its ca.pem holds both roots), retire the old CA:\n"
	    "  certgate ca retire -c %s --serial %s\n", subj ? subj : "?", serial, gen,
	    oldserial ? oldserial : "?", cfg->path ? cfg->path : "CONFIG",
	    oldserial ? oldserial : "OLD");
	rc = 0;
	goto out;
oom:
	snprintf(err, sizeof(err), "out of memory");
sfail:
	cacli_error("%s", err);
out:
	cacli_end(&s, &db);
	sk_X509_pop_free(certs, X509_free);
	X509_NAME_free(name);
	ASN1_INTEGER_free(sn);
	EVP_PKEY_free(key);
	X509_free(x);
	OPENSSL_free(serial);
	OPENSSL_free(oldserial);
	OPENSSL_free(subj);
	free(uri);
	return rc;
}

/* The server certificate's DNS and IP names as `ca server` arguments. 0/-1. */
static int
caroll_server_names(const char *path, struct cacli_args *sa, char ***keep, size_t *nkeep)
{
	GENERAL_NAMES *gens = NULL;
	char err[512], text[INET6_ADDRSTRLEN];
	X509 *x;
	int i, n, rc = -1;

	if ((x = certify_pem_cert(path, err, sizeof(err))) == NULL) {
		cacli_error("%s", err);
		return -1;
	}
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	n = gens ? sk_GENERAL_NAME_num(gens) : 0;
	if ((sa->dns = calloc((size_t)n + 1, sizeof(char *))) == NULL ||
	    (sa->ip = calloc((size_t)n + 1, sizeof(char *))) == NULL ||
	    (*keep = calloc((size_t)n + 1, sizeof(char *))) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		char *v = NULL;
		int len;

		if (g->type == GEN_DNS) {
			d = ASN1_STRING_get0_data(g->d.dNSName);
			len = ASN1_STRING_length(g->d.dNSName);
			v = strndup((const char *)d, (size_t)len);
		} else if (g->type == GEN_IPADD) {
			d = ASN1_STRING_get0_data(g->d.iPAddress);
			len = ASN1_STRING_length(g->d.iPAddress);
			if ((len == 4 || len == 16) &&
			    inet_ntop(len == 4 ? AF_INET : AF_INET6, d, text, sizeof(text)))
				v = strdup(text);
		} else
			continue;
		if (v == NULL)
			goto out;
		(*keep)[(*nkeep)++] = v;
		if (g->type == GEN_DNS)
			sa->dns[sa->ndns++] = v;
		else
			sa->ip[sa->nip++] = v;
	}
	rc = 0;
out:
	if (rc == -1)
		cacli_error("out of memory");
	GENERAL_NAMES_free(gens);
	X509_free(x);
	return rc;
}

/* Re-issues the server certificate under the active CA (keeping its names) when
 * retired signed a certificate of tls.cert. */
static int
caroll_server(struct config *cfg, X509 *retired)
{
	STACK_OF(X509) *srv;
	struct cacli_args sa;
	char err[512], **keep = NULL;
	size_t i, nkeep = 0;
	int j, issued = 0, rc = -1;

	if ((srv = cabundle_read(cfg->tls.cert, err, sizeof(err))) == NULL) {
		cacli_error("%s", err);
		return -1;
	}
	for (j = 0; j < sk_X509_num(srv) && !issued; j++)
		issued = X509_check_issued(retired, sk_X509_value(srv, j)) == X509_V_OK;
	sk_X509_pop_free(srv, X509_free);
	if (!issued)
		return 0;
	memset(&sa, 0, sizeof(sa));
	if (caroll_server_names(cfg->tls.cert, &sa, &keep, &nkeep) == 0) {
		fprintf(stderr, "%s: the server certificate's chain is from the CA being "
		    "retired: issuing it again under the active CA\n", cacli_prog());
		/* casetup_server prints the new serial on stdout. */
		rc = casetup_server(cfg, &sa) == 0 ? 0 : -1;
	}
	for (i = 0; i < nkeep; i++)
		free(keep[i]);
	free(keep);
	free(sa.dns);
	free(sa.ip);
	return rc;
}

/* Agent certificates of db still valid that retired issued (from the archive). */
static int
caroll_count_valid(const struct config *cfg, const struct cadb *db, X509 *retired)
{
	char err[256], cn[CERTIFY_AGENT_MAX + 2], *path;
	time_t now = time(NULL);
	size_t i;
	int n = 0;
	X509 *x;

	for (i = 0; i < db->n; i++) {
		if (cadb_status(&db->rows[i], now) != CADB_VALID ||
		    cadb_agent_of(&db->rows[i], cn, sizeof(cn)) == NULL ||
		    asprintf(&path, "%s/%s.pem", cfg->ca.certs_dir, db->rows[i].serial) < 0)
			continue;
		if ((x = certify_pem_cert(path, err, sizeof(err))) != NULL) {
			n += X509_check_issued(retired, x) == X509_V_OK;
			X509_free(x);
		}
		free(path);
	}
	return n;
}

int
caroll_retire(struct config *cfg, struct cacli_args *a)
{
	STACK_OF(X509) *certs = NULL;
	struct castore s;
	struct cadb db;
	X509 *old = NULL;
	char err[1024], *subj = NULL;
	int idx, i, left, rc = 1;

	if (a->serial == NULL) {
		cacli_error("--serial HEX (of the CA to retire) is required");
		return 2;
	}
	if (cacli_begin(cfg, &s, &db) == -1)
		return 1;
	if ((idx = cabundle_find_serial(s.b.all, a->serial)) < 0) {
		cacli_error("no CA certificate with serial %s in %s", a->serial, cfg->ca.cert);
		goto out;
	}
	old = sk_X509_value(s.b.all, idx);
	X509_up_ref(old);
	if (idx == 0) {
		cacli_error("CA %s is the active CA (it signs): roll over first (certgate ca "
		    "rollover)", a->serial);
		goto out;
	}
	if (cabundle_find_serial(s.b.ours, a->serial) < 0) {
		cacli_error("certificate %s is part of the corporate chain, not one of "
		    "certgate's CAs", a->serial);
		goto out;
	}
	/* The server certificate first, while agents still trust both roots. It needs
	 * the lock and token itself: release ours. */
	cacli_end(&s, &db);
	if (caroll_server(cfg, old) == -1)
		goto done;
	if (cacli_begin(cfg, &s, &db) == -1)
		goto done;
	if ((idx = cabundle_find_serial(s.b.all, a->serial)) <= 0) {
		cacli_error("ca.cert changed meanwhile; run retire again");
		goto out;
	}
	if ((certs = sk_X509_new_null()) == NULL)
		goto oom;
	for (i = 0; i < sk_X509_num(s.b.all); i++)
		if (i != idx && (X509_up_ref(sk_X509_value(s.b.all, i)) != 1 ||
		    sk_X509_push(certs, sk_X509_value(s.b.all, i)) <= 0))
			goto oom;
	if (caroll_set_bundle(&s, certs, err, sizeof(err)) == -1 ||
	    castore_crl_refresh(&s, &db, (long)cfg->ca.crl_hours * 3600, NULL, err,
	    sizeof(err)) == -1 ||
	    cabundle_write(cfg->ca.cert, NULL, s.b.all, 0644, err, sizeof(err)) == -1)
		goto sfail;
	left = caroll_count_valid(cfg, &db, old);
	subj = X509_NAME_oneline(X509_get_subject_name(old), NULL, 0);
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "retire",
	    .serial = a->serial, .subject = subj }, NULL);
	printf("CA %s (serial %s) retired: no longer trusted (its key stays in the CA "
	    "token)\n", subj ? subj : "?", a->serial);
	if (left > 0)
		fprintf(stderr, "%s: %d valid agent certificate(s) from the retired CA: those "
		    "agents are refused until they get a new certificate (certgate ca issue)\n",
		    cacli_prog(), left);
	rc = 0;
	goto out;
oom:
	snprintf(err, sizeof(err), "out of memory");
sfail:
	cacli_error("%s", err);
out:
	cacli_end(&s, &db);
done:
	sk_X509_pop_free(certs, X509_free);
	X509_free(old);
	OPENSSL_free(subj);
	return rc;
}
