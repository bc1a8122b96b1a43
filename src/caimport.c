/* `certgate ca import` (caimport.h). */
#include "caimport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "caaudit.h"
#include "cabundle.h"
#include "cacli.h"
#include "cadb.h"
#include "castore.h"
#include "catime.h"
#include "certify.h"
#include "config.h"
#include "file.h"

char *
caimport_csr_path(const struct config *cfg)
{
	char *dir, *p = NULL;

	if ((dir = file_dirname(cfg->ca.cert)) == NULL)
		return NULL;
	if (asprintf(&p, "%s/ca.csr", dir) < 0)
		p = NULL;
	free(dir);
	return p;
}

/* A CA certificate that may sign certificates and CRLs. 0/-1 (printed). */
static int
caimport_check_ca(X509 *x, const char *path)
{
	uint32_t ku;

	if (!(X509_get_extension_flags(x) & EXFLAG_CA)) {
		cacli_error("%s is not a CA certificate (basicConstraints CA:TRUE is missing)",
		    path);
		return -1;
	}
	ku = X509_get_key_usage(x);
	if (!(X509_get_extension_flags(x) & EXFLAG_KUSAGE) || !(ku & KU_KEY_CERT_SIGN)) {
		cacli_error("%s has no keyUsage keyCertSign: it cannot sign agent certificates",
		    path);
		return -1;
	}
	if (!(ku & KU_CRL_SIGN)) {
		cacli_error("%s has no keyUsage cRLSign: it cannot sign the CRL", path);
		return -1;
	}
	if (cabundle_self_signed(x)) {
		cacli_error("%s is self-signed: a self-signed CA needs no import (scripts/"
		    "pki-init without --intermediate)", path);
		return -1;
	}
	return 0;
}

/* x verified up to a self-signed certificate of chain: the path, x first. */
static STACK_OF(X509) *
caimport_verify(X509 *x, STACK_OF(X509) *chain, const char *path)
{
	STACK_OF(X509) *untrusted = NULL, *out = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509_STORE *store = NULL;
	X509 *c;
	int i, roots = 0;

	if ((store = X509_STORE_new()) == NULL || (untrusted = sk_X509_new_null()) == NULL ||
	    (ctx = X509_STORE_CTX_new()) == NULL)
		goto oom;
	for (i = 0; i < sk_X509_num(chain); i++) {
		c = sk_X509_value(chain, i);
		if (cabundle_self_signed(c)) {
			if (X509_STORE_add_cert(store, c) != 1)
				goto oom;
			roots++;
		} else if (sk_X509_push(untrusted, c) <= 0)
			goto oom;
	}
	if (roots == 0) {
		cacli_error("%s holds no self-signed root: the chain must go up to the "
		    "corporate root CA", path);
		goto out;
	}
	if (X509_STORE_CTX_init(ctx, store, x, untrusted) != 1)
		goto oom;
	if (X509_verify_cert(ctx) != 1) {
		cacli_error("the certificate does not verify up to a self-signed root of %s: "
		    "%s", path, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	out = X509_STORE_CTX_get1_chain(ctx);
	goto out;
oom:
	cacli_error("out of memory");
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	X509_STORE_free(store);
	return out;
}

/* The corporate CRLs, each signed by a certificate of path: written to
 * CASTORE_UPSTREAM_CRL for every later CRL publication. 0/-1 (printed). */
static int
caimport_crls(const struct config *cfg, const char *file, STACK_OF(X509) *path)
{
	char *text = NULL, *up = NULL;
	X509_CRL *crl;
	size_t len;
	BIO *b = NULL;
	int i, n = 0, ok, rc = -1;

	if (file_read(file, 16 * 1024 * 1024, &text, &len) == -1) {
		cacli_error("cannot read %s: %s", file, strerror(errno));
		return -1;
	}
	if ((b = BIO_new_mem_buf(text, (int)len)) == NULL)
		goto out;
	while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
		n++;
		for (i = 0, ok = 0; i < sk_X509_num(path) && !ok; i++) {
			X509 *c = sk_X509_value(path, i);

			ok = X509_NAME_cmp(X509_get_subject_name(c), X509_CRL_get_issuer(crl)) == 0 &&
			    X509_CRL_verify(crl, X509_get0_pubkey(c)) == 1;
		}
		X509_CRL_free(crl);
		if (!ok) {
			cacli_error("CRL %d of %s is not signed by a CA of the chain", n, file);
			goto out;
		}
	}
	ERR_clear_error();
	if (n == 0) {
		cacli_error("%s holds no PEM CRL", file);
		goto out;
	}
	if ((up = castore_upstream_crl_path(cfg)) == NULL ||
	    file_write_atomic(up, text, len, 0644) == -1) {
		cacli_error("cannot write %s: %s", up ? up : "the corporate CRLs", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(b);
	free(text);
	free(up);
	return rc;
}

int
caimport_main(struct config *cfg, struct cacli_args *a)
{
	STACK_OF(X509) *certs = NULL, *chain = NULL, *path = NULL;
	struct castore s;
	struct cadb db = { 0 };
	EVP_PKEY *key = NULL;
	char err[1024], *serial = NULL, *subj = NULL, *csr = NULL, na[CATIME_RFC3339_LEN];
	time_t t;
	X509 *x;
	int rc = 1, fresh;

	if (a->cert == NULL || a->chain == NULL) {
		cacli_error("--cert CA-CERT.pem and --chain CHAIN.pem are required");
		return 2;
	}
	castore_init(&s, cfg);
	if (castore_lock(&s, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		return 1;
	}
	if (access(cfg->ca.cert, F_OK) == 0 && !a->force) {
		cacli_error("CA certificate %s already exists (use --force to replace it)",
		    cfg->ca.cert);
		goto out;
	}
	if ((certs = cabundle_read(a->cert, err, sizeof(err))) == NULL ||
	    (chain = cabundle_read(a->chain, err, sizeof(err))) == NULL) {
		cacli_error("%s", err);
		goto out;
	}
	x = sk_X509_value(certs, 0);
	if (caimport_check_ca(x, a->cert) == -1)
		goto out;
	/* Only the key made by `ca init --intermediate` may become the CA's. */
	if (castore_find_key(cfg, x, &key, NULL, err, sizeof(err)) == -1) {
		cacli_error("the public key of %s is not the CA key in the token (ca.key): "
		    "the certificate was not made from %s", a->cert,
		    (csr = caimport_csr_path(cfg)) ? csr : "ca/ca.csr");
		goto out;
	}
	if ((path = caimport_verify(x, chain, a->chain)) == NULL)
		goto out;
	if (catime_from_asn1(X509_get0_notAfter(x), &t) == -1 || t <= time(NULL)) {
		cacli_error("%s has expired", a->cert);
		goto out;
	}
	if (a->crl != NULL && caimport_crls(cfg, a->crl, path) == -1)
		goto out;
	/* A re-import (--force: the same key, re-certified) keeps the database and the
	 * CRL number, so no CRL ever goes back in number. */
	fresh = access(cfg->ca.db, F_OK) == -1;
	err[0] = '\0';
	if (cabundle_write(cfg->ca.cert, NULL, path, 0644, err, sizeof(err)) == -1 ||
	    (fresh && cadb_save(cfg->ca.db, &db) == -1)) {
		cacli_error("%s", err[0] ? err : strerror(errno));
		goto out;
	}
	if (castore_open(&s, cfg, 1, err, sizeof(err)) == -1 ||
	    castore_load_db(&s, &db, err, sizeof(err)) == -1 ||
	    (fresh && castore_crlnumber_init(&s, err, sizeof(err)) == -1) ||
	    castore_crl_refresh(&s, &db, (long)cfg->ca.crl_hours * 3600, NULL, err,
	    sizeof(err)) == -1) {
		cacli_error("%s", err);
		goto out;
	}
	serial = cabundle_serial_hex(x);
	subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
	catime_rfc3339(t, na, sizeof(na));
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "import",
	    .serial = serial, .subject = subj, .not_after = na }, NULL);
	printf("CA certificate %s (serial %s) and its chain of %d written to %s\n",
	    subj ? subj : "?", serial ? serial : "?", sk_X509_num(path) - 1, cfg->ca.cert);
	if (a->crl == NULL && cfg->tls.crl_check)
		fprintf(stderr, "%s: note: with tls.crl_check the gateway checks every level of "
		    "the chain: give the corporate CRLs with --crl (or put them in %s and "
		    "run certgate ca crl)\n", cacli_prog(), CASTORE_UPSTREAM_CRL);
	rc = 0;
out:
	castore_close(&s);
	cadb_free(&db);
	EVP_PKEY_free(key);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(path, X509_free);
	OPENSSL_free(serial);
	OPENSSL_free(subj);
	free(csr);
	return rc;
}
