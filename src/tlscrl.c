/* tls.crl as a bundle: load, match every CRL to its CA, require one per CA, and
 * refuse rollbacks on reload (tlscrl.h). */
#include "tlscrl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "dn.h"
#include "log.h"

static long tlscrl_older;       /* atomic */

long
tlscrl_older_refused(void)
{
	return __atomic_load_n(&tlscrl_older, __ATOMIC_RELAXED);
}

/* Every PEM object of the given kind in path; -1 when the file cannot be read,
 * holds something unreadable, or none. */
static int
tlscrl_read_crls(const char *path, STACK_OF(X509_CRL) **out)
{
	STACK_OF(X509_CRL) *sk;
	X509_CRL *crl;
	unsigned long e;
	BIO *b;

	*out = NULL;
	if ((b = BIO_new_file(path, "r")) == NULL) {
		log_err("cannot open CRL %s: %s", path, strerror(errno));
		ERR_clear_error();
		return -1;
	}
	if ((sk = sk_X509_CRL_new_null()) == NULL)
		goto fail;
	while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL)
		if (sk_X509_CRL_push(sk, crl) == 0) {
			X509_CRL_free(crl);
			goto fail;
		}
	e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE ||
	    sk_X509_CRL_num(sk) == 0) {
		log_sslerr("cannot parse CRL %s (PEM X509 CRLs expected)", path);
		goto fail;
	}
	ERR_clear_error();
	BIO_free(b);
	*out = sk;
	return 0;
fail:
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	BIO_free(b);
	return -1;
}

static int
tlscrl_read_cas(const char *path, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk;
	X509 *x;
	unsigned long e;
	BIO *b;

	*out = NULL;
	if ((b = BIO_new_file(path, "r")) == NULL) {
		log_err("cannot open CA bundle %s (tls.ca): %s", path, strerror(errno));
		ERR_clear_error();
		return -1;
	}
	if ((sk = sk_X509_new_null()) == NULL)
		goto fail;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(sk, x) == 0) {
			X509_free(x);
			goto fail;
		}
	e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE ||
	    sk_X509_num(sk) == 0) {
		log_sslerr("cannot load CA bundle %s (tls.ca)", path);
		goto fail;
	}
	ERR_clear_error();
	BIO_free(b);
	*out = sk;
	return 0;
fail:
	sk_X509_pop_free(sk, X509_free);
	BIO_free(b);
	return -1;
}

/* 1 when ca issued crl: same name, and the signature verifies with ca's key. */
static int
tlscrl_signed_by(X509_CRL *crl, X509 *ca)
{
	EVP_PKEY *pub;
	int ok;

	if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) != 0 ||
	    (pub = X509_get0_pubkey(ca)) == NULL)
		return 0;
	ok = X509_CRL_verify(crl, pub) == 1;
	ERR_clear_error();
	return ok;
}

static void
tlscrl_report(X509_CRL *crl, const char *path, const char *ca)
{
	const ASN1_TIME *next, *last;
	char buf[64];
	BIO *b;
	int n;

	last = X509_CRL_get0_lastUpdate(crl);
	if (last != NULL && X509_cmp_current_time(last) > 0)
		log_err("CRL of CA \"%s\" in %s: thisUpdate is in the future (clock skew?); "
		    "every client will be refused until then", ca, path);
	if ((next = X509_CRL_get0_nextUpdate(crl)) == NULL)
		return;
	buf[0] = '\0';
	if ((b = BIO_new(BIO_s_mem())) != NULL) {
		if (ASN1_TIME_print(b, next) == 1 &&
		    (n = BIO_read(b, buf, sizeof(buf) - 1)) > 0)
			buf[n] = '\0';
		BIO_free(b);
	}
	if (X509_cmp_current_time(next) <= 0)
		log_err("CRL of CA \"%s\" in %s expired at %s; every client will be refused; "
		    "run scripts/agent-list or certgate ca crl to re-sign (for another CA: "
		    "get a current CRL from it)", ca, path, buf);
	else if (X509_cmp_time(next, &(time_t){ time(NULL) + 86400 }) <= 0)
		log_warn("CRL of CA \"%s\" in %s expires at %s (within 24 h)", ca, path, buf);
}

/* Compares a against b: <0 older, 0 same age, >0 newer. *how says by what. */
static int
tlscrl_age_cmp(X509_CRL *a, X509_CRL *b, const char **how)
{
	ASN1_INTEGER *na, *nb;
	int r;

	na = X509_CRL_get_ext_d2i(a, NID_crl_number, NULL, NULL);
	nb = X509_CRL_get_ext_d2i(b, NID_crl_number, NULL, NULL);
	if (na != NULL && nb != NULL) {
		*how = "a lower CRL number";
		r = ASN1_INTEGER_cmp(na, nb);
	} else {
		*how = "an older lastUpdate";
		r = ASN1_TIME_compare(X509_CRL_get0_lastUpdate(a), X509_CRL_get0_lastUpdate(b));
	}
	ASN1_INTEGER_free(na);
	ASN1_INTEGER_free(nb);
	ERR_clear_error();
	return r;
}

/* The CRL to use for ca: the loaded one, or prev's when the loaded one is older. */
static X509_CRL *
tlscrl_choose(X509_CRL *crl, X509 *ca, STACK_OF(X509_CRL) *prev, const char *path,
    const char *caname)
{
	const char *how;
	X509_CRL *p;
	int i;

	for (i = 0; i < sk_X509_CRL_num(prev); i++) {
		p = sk_X509_CRL_value(prev, i);
		if (!tlscrl_signed_by(p, ca))
			continue;
		if (tlscrl_age_cmp(crl, p, &how) < 0) {
			__atomic_add_fetch(&tlscrl_older, 1, __ATOMIC_RELAXED);
			log_err("CRL of CA \"%s\" in %s has %s than the one in force: not "
			    "taken, the CRL in force stays (a CRL is never rolled back)",
			    caname, path, how);
			return p;
		}
		break;
	}
	return crl;
}

int
tlscrl_load(const struct config *cfg, STACK_OF(X509_CRL) *prev, STACK_OF(X509_CRL) **out)
{
	STACK_OF(X509_CRL) *crls = NULL, *chosen = NULL;
	STACK_OF(X509) *cas = NULL;
	X509_CRL *crl, *use;
	X509 *ca;
	char *name = NULL;
	int i, j, found, rv = -1;

	*out = NULL;
	if (cfg->tls.crl == NULL) {
		log_err("tls.crl_check is on but tls.crl is not set");
		return -1;
	}
	if (tlscrl_read_cas(cfg->tls.ca, &cas) == -1 ||
	    tlscrl_read_crls(cfg->tls.crl, &crls) == -1)
		goto out;
	/* every CRL from one of the CAs */
	for (i = 0; i < sk_X509_CRL_num(crls); i++) {
		crl = sk_X509_CRL_value(crls, i);
		for (j = 0, found = 0; j < sk_X509_num(cas) && !found; j++)
			found = tlscrl_signed_by(crl, sk_X509_value(cas, j));
		if (!found) {
			free(name);
			name = dn_format(X509_CRL_get_issuer(crl));
			for (j = 0; j < sk_X509_num(cas); j++)
				if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(cas, j)),
				    X509_CRL_get_issuer(crl)) == 0)
					break;
			if (j < sk_X509_num(cas))
				log_err("CRL %s: signature does not verify with the CA certificate "
				    "(the CRL of \"%s\", CA in tls.ca %s)", cfg->tls.crl,
				    name ? name : "?", cfg->tls.ca);
			else
				log_err("CRL %s: issuer is not one of the CAs in tls.ca (\"%s\" is "
				    "not in %s)", cfg->tls.crl, name ? name : "?", cfg->tls.ca);
			goto out;
		}
	}
	if ((chosen = sk_X509_CRL_new_null()) == NULL)
		goto out;
	/* every CA with exactly one CRL */
	for (j = 0; j < sk_X509_num(cas); j++) {
		ca = sk_X509_value(cas, j);
		free(name);
		name = dn_format(X509_get_subject_name(ca));
		use = NULL;
		for (i = 0; i < sk_X509_CRL_num(crls); i++) {
			crl = sk_X509_CRL_value(crls, i);
			if (!tlscrl_signed_by(crl, ca))
				continue;
			if (use != NULL) {
				log_err("CRL bundle %s (tls.crl) holds two CRLs of CA \"%s\": keep "
				    "only the current one", cfg->tls.crl, name ? name : "?");
				goto out;
			}
			use = crl;
		}
		if (use == NULL) {
			log_err("CRL bundle %s (tls.crl) has no CRL of CA \"%s\" (a CA of "
			    "tls.ca %s): every level of a chain is checked, so every client it "
			    "vouches for would be refused; add that CA's CRL to the bundle",
			    cfg->tls.crl, name ? name : "?", cfg->tls.ca);
			goto out;
		}
		use = tlscrl_choose(use, ca, prev, cfg->tls.crl, name ? name : "?");
		if (sk_X509_CRL_push(chosen, use) == 0)
			goto out;
		X509_CRL_up_ref(use);
		tlscrl_report(use, cfg->tls.crl, name ? name : "?");
	}
	*out = chosen;
	chosen = NULL;
	rv = 0;
out:
	free(name);
	sk_X509_CRL_pop_free(chosen, X509_CRL_free);
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	sk_X509_pop_free(cas, X509_free);
	return rv;
}
