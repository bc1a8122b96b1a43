/* The CA's state on disk, changed consistently (castore.h). */
#include "castore.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cabatch.h"
#include "catime.h"
#include "certify.h"
#include "config.h"
#include "file.h"
#include "log.h"
#include "p11.h"

void
castore_crashpoint(const char *step)
{
	const char *want = getenv("CERTGATE_CA_TEST_CRASH");

	if (want != NULL && strcmp(want, step) == 0) {
		log_warn("CERTGATE_CA_TEST_CRASH=%s: killing myself (test hook)", step);
		raise(SIGKILL);
	}
}

/* mkdir -p; a directory it creates gets exactly mode (the CA runs with umask 077). */
static int
castore_mkdir(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		snprintf(err, errlen, "%s exists and is not a directory", path);
		return -1;
	}
	if (file_mkdirs(path, mode) == -1 || chmod(path, mode) == -1) {
		snprintf(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

char *
castore_key_uri(const struct config *cfg, int gen)
{
	const char *k = cfg->ca.key, *o, *end;
	char *out = NULL;

	if (k == NULL)
		return NULL;
	if (gen <= 1)
		return strdup(k);
	if ((o = strstr(k, "object=")) == NULL || (o != k && o[-1] != ';' && o[-1] != ':'))
		return NULL;
	o += strlen("object=");
	end = o + strcspn(o, ";?");
	if (asprintf(&out, "%.*s-g%d%s", (int)(end - k), k, gen, end) < 0)
		return NULL;
	return out;
}

int
castore_next_gen(const struct config *cfg, char *err, size_t errlen)
{
	struct p11_defaults d;
	char *uri;
	int gen, ex;

	config_ca_p11(cfg, &d);
	for (gen = 1; gen < 1000; gen++) {
		if ((uri = castore_key_uri(cfg, gen)) == NULL) {
			snprintf(err, errlen, "ca.key has no object= attribute to derive the "
			    "next CA key's label from");
			return -1;
		}
		ex = p11_key_exists(&d, uri);
		free(uri);
		if (ex == -1) {
			snprintf(err, errlen, "cannot look for CA keys in the token (see above)");
			return -1;
		}
		if (ex == 0)
			return gen;
	}
	snprintf(err, errlen, "too many CA key generations in the token");
	return -1;
}

int
castore_find_key(const struct config *cfg, X509 *x, EVP_PKEY **key, int *gen, char *err,
    size_t errlen)
{
	struct p11_defaults d;
	EVP_PKEY *k = NULL;
	char *uri, *red;
	int g, ex;

	*key = NULL;
	config_ca_p11(cfg, &d);
	for (g = 1; g < 1000; g++) {
		if ((uri = castore_key_uri(cfg, g)) == NULL)
			break;
		/* Generation 1 is loaded as before (its absence is the error to report). */
		ex = g == 1 ? 1 : p11_key_exists(&d, uri);
		if (ex == 1 && p11_load_private_key(&d, uri, 0, &k) == 0) {
			if (EVP_PKEY_eq(k, X509_get0_pubkey(x)) == 1) {
				free(uri);
				*key = k;
				if (gen)
					*gen = g;
				return 0;
			}
			EVP_PKEY_free(k);
			k = NULL;
		} else if (g == 1) {
			red = p11_uri_redact(uri);
			snprintf(err, errlen, "cannot load the CA key %s from the token (see "
			    "above)", red ? red : "(ca.key)");
			free(red);
			free(uri);
			return -1;
		}
		ERR_clear_error();
		free(uri);
		if (ex != 1)
			break;
	}
	snprintf(err, errlen, "no key in the CA token matches the CA certificate (ca.key "
	    "and its rollover generations were tried)");
	return -1;
}

int
castore_open(struct castore *s, const struct config *cfg, int with_key, char *err,
    size_t errlen)
{
	int lock = s->cfg == cfg ? s->lock : -1;

	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->lock = lock;
	if (access(cfg->ca.cert, F_OK) == -1) {
		snprintf(err, errlen, "CA certificate %s does not exist: run 'certgate ca init' "
		    "first (scripts/pki-init)", cfg->ca.cert);
		return -1;
	}
	if (cabundle_load(cfg->ca.cert, &s->b, err, errlen) == -1)
		return -1;
	s->cert = sk_X509_value(s->b.all, 0);
	if (X509_up_ref(s->cert) != 1 || certify_fingerprint(s->cert, s->fp) == -1) {
		snprintf(err, errlen, "cannot hash the CA certificate");
		goto fail;
	}
	if (!with_key)
		return 0;
	if (cfg->ca.key == NULL || !p11_is_uri(cfg->ca.key)) {
		snprintf(err, errlen, "ca.key must be a pkcs11: URI (the key is made in the "
		    "token), got '%s'", cfg->ca.key ? "(not a URI)" : "(none)");
		goto fail;
	}
	if (castore_find_key(cfg, s->cert, &s->key, NULL, err, errlen) == -1)
		goto fail;
	return 0;
fail:
	X509_free(s->cert);
	s->cert = NULL;
	cabundle_free(&s->b);
	return -1;
}

void
castore_init(struct castore *s, const struct config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->lock = -1;
}

void
castore_close(struct castore *s)
{
	castore_unlock(s);
	X509_free(s->cert);
	EVP_PKEY_free(s->key);
	s->cert = NULL;
	s->key = NULL;
	cabundle_free(&s->b);
	sk_X509_CRL_pop_free(s->others, X509_CRL_free);
	s->others = NULL;
}

int
castore_lock(struct castore *s, char *err, size_t errlen)
{
	if (s->lock != -1)
		return 0;
	if ((s->lock = cadb_lock(s->cfg->ca.db, err, errlen)) == -1)
		return -1;
	return 0;
}

void
castore_unlock(struct castore *s)
{
	cadb_unlock(s->lock);
	s->lock = -1;
}

int
castore_load_db(struct castore *s, struct cadb *db, char *err, size_t errlen)
{
	char why[512];

	if (access(s->cfg->ca.db, F_OK) == -1 && errno == ENOENT) {
		memset(db, 0, sizeof(*db));
		return 0;
	}
	if (cadb_load(s->cfg->ca.db, db, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "cannot load the CA database: %s", why);
		return -1;
	}
	return 0;
}

/* DIR/ca/crlnumber: next to the database, like OpenSSL's layout. */
static char *
castore_crlnumber_path(struct castore *s)
{
	char *dir, *p = NULL;

	if ((dir = file_dirname(s->cfg->ca.db)) == NULL)
		return NULL;
	if (asprintf(&p, "%s/crlnumber", dir) < 0)
		p = NULL;
	free(dir);
	return p;
}

static BIGNUM *
castore_crlnumber_read(const char *path, char *err, size_t errlen)
{
	BIGNUM *bn = NULL;
	char *text = NULL;
	size_t len, i;

	if (file_read(path, 4096, &text, &len) == -1) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			return NULL;
		}
		if ((bn = BN_new()) == NULL || !BN_set_word(bn, 1)) {
			BN_free(bn);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		return bn;
	}
	text[strcspn(text, "\r\n")] = '\0';
	for (i = 0; text[i] && strchr("0123456789abcdefABCDEF", text[i]); i++)
		;
	if (i == 0 || text[i] != '\0' || BN_hex2bn(&bn, text) == 0) {
		snprintf(err, errlen, "%s: not a hexadecimal CRL number", path);
		BN_free(bn);
		bn = NULL;
	}
	free(text);
	return bn;
}

/* Writes bn as OpenSSL does: uppercase hex, whole bytes, newline. */
static int
castore_crlnumber_write(const char *path, const BIGNUM *bn, char *err, size_t errlen)
{
	char *hex, *line = NULL;
	int rc = -1;

	if ((hex = BN_bn2hex(bn)) == NULL ||
	    asprintf(&line, "%s%s\n", strlen(hex) % 2 ? "0" : "", hex) < 0) {
		line = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (file_write_atomic(path, line, strlen(line), 0644) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		goto fail;
	}
	rc = 0;
fail:
	OPENSSL_free(hex);
	free(line);
	return rc;
}

int
castore_crlnumber_init(struct castore *s, char *err, size_t errlen)
{
	BIGNUM *one = NULL;
	char *path;
	int rc = -1;

	if ((path = castore_crlnumber_path(s)) == NULL || (one = BN_new()) == NULL ||
	    !BN_set_word(one, 1))
		snprintf(err, errlen, "out of memory");
	else
		rc = castore_crlnumber_write(path, one, err, errlen);
	BN_free(one);
	free(path);
	return rc;
}

/* The CRLs of the other trusted certgate CAs (after a rollover), each signed with
 * its own key: a client certificate of the old CA needs its issuer's CRL. */
static int
castore_sign_others(struct castore *s, const struct cadb *db, const BIGNUM *number,
    long seconds, char *err, size_t errlen)
{
	X509_CRL *c;
	EVP_PKEY *k;
	X509 *x;
	int i;

	sk_X509_CRL_pop_free(s->others, X509_CRL_free);
	if ((s->others = sk_X509_CRL_new_null()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < sk_X509_num(s->b.ours); i++) {
		x = sk_X509_value(s->b.ours, i);
		if (X509_cmp(x, s->cert) == 0)
			continue;
		if (castore_find_key(s->cfg, x, &k, NULL, err, errlen) == -1)
			return -1;
		c = certify_crl(x, k, db, number, time(NULL), seconds, err, errlen);
		EVP_PKEY_free(k);
		if (c == NULL)
			return -1;
		if (sk_X509_CRL_push(s->others, c) <= 0) {
			X509_CRL_free(c);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

char *
castore_upstream_crl_path(const struct config *cfg)
{
	char *dir, *p = NULL;

	if ((dir = file_dirname(cfg->ca.crl)) == NULL)
		return NULL;
	if (asprintf(&p, "%s/%s", dir, CASTORE_UPSTREAM_CRL) < 0)
		p = NULL;
	free(dir);
	return p;
}

/* ca.crl: crl, the other CAs' CRLs, the corporate CRLs (copied as they are). */
static int
castore_crl_write(struct castore *s, X509_CRL *crl, char *err, size_t errlen)
{
	char *up = NULL, *text = NULL, *data;
	size_t len = 0;
	long n;
	BIO *b = NULL;
	int i, rc = -1;

	if ((b = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_CRL(b, crl))
		goto oom;
	for (i = 0; i < sk_X509_CRL_num(s->others); i++)
		if (!PEM_write_bio_X509_CRL(b, sk_X509_CRL_value(s->others, i)))
			goto oom;
	if ((up = castore_upstream_crl_path(s->cfg)) == NULL)
		goto oom;
	if (file_read(up, 16 * 1024 * 1024, &text, &len) == 0) {
		if (BIO_write(b, text, (int)len) != (int)len)
			goto oom;
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "cannot read %s: %s", up, strerror(errno));
		goto out;
	}
	n = BIO_get_mem_data(b, &data);
	if (file_write_atomic(s->cfg->ca.crl, data, (size_t)n, 0644) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", s->cfg->ca.crl, strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
oom:
	ERR_clear_error();
	snprintf(err, errlen, "out of memory");
out:
	BIO_free(b);
	free(up);
	free(text);
	return rc;
}

int
castore_crl_sign(struct castore *s, const struct cadb *db, long seconds, X509_CRL **crl,
    char **number_hex, char *err, size_t errlen)
{
	BIGNUM *number = NULL;
	char *path;
	int rc = -1;

	*crl = NULL;
	if (number_hex)
		*number_hex = NULL;
	if (s->key == NULL) {
		snprintf(err, errlen, "internal error: the CA key is not loaded");
		return -1;
	}
	if ((path = castore_crlnumber_path(s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((number = castore_crlnumber_read(path, err, errlen)) == NULL)
		goto fail;
	if ((*crl = certify_crl(s->cert, s->key, db, number, time(NULL), seconds, err,
	    errlen)) == NULL)
		goto fail;
	if (castore_sign_others(s, db, number, seconds, err, errlen) == -1) {
		X509_CRL_free(*crl);
		*crl = NULL;
		goto fail;
	}
	if (number_hex && (*number_hex = BN_bn2hex(number)) == NULL) {
		X509_CRL_free(*crl);
		*crl = NULL;
		goto fail;
	}
	rc = 0;
fail:
	BN_free(number);
	free(path);
	return rc;
}

int
castore_crl_publish(struct castore *s, X509_CRL *crl, char *err, size_t errlen)
{
	const ASN1_INTEGER *num;
	BIGNUM *next = NULL;
	char *path = NULL;
	int crit, rc = -1;

	if (castore_crl_write(s, crl, err, errlen) == -1)
		return -1;
	num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
	if (num == NULL || (next = ASN1_INTEGER_to_BN(num, NULL)) == NULL ||
	    !BN_add_word(next, 1) || (path = castore_crlnumber_path(s)) == NULL) {
		snprintf(err, errlen, "cannot advance the CRL number");
		goto fail;
	}
	rc = castore_crlnumber_write(path, next, err, errlen);
fail:
	ASN1_INTEGER_free((ASN1_INTEGER *)num);
	BN_free(next);
	free(path);
	return rc;
}

int
castore_crl_refresh(struct castore *s, const struct cadb *db, long seconds,
    char **number_hex, char *err, size_t errlen)
{
	X509_CRL *crl = NULL;
	int rc;

	if (castore_crl_sign(s, db, seconds, &crl, number_hex, err, errlen) == -1)
		return -1;
	rc = castore_crl_publish(s, crl, err, errlen);
	X509_CRL_free(crl);
	if (rc == -1 && number_hex) {
		OPENSSL_free(*number_hex);
		*number_hex = NULL;
	}
	return rc;
}

static char *
castore_archive_path(struct castore *s, const char *serial)
{
	char *p;

	if (asprintf(&p, "%s/%s.pem", s->cfg->ca.certs_dir, serial) < 0)
		return NULL;
	return p;
}

int
castore_archive(struct castore *s, X509 *x, const char *serial, char *err, size_t errlen)
{
	char *path;
	int rc;

	if (castore_mkdir(s->cfg->ca.certs_dir, 0755, err, errlen) == -1)
		return -1;
	if ((path = castore_archive_path(s, serial)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = certify_pem_write(path, x, NULL, NULL, 0644, err, errlen);
	free(path);
	return rc;
}

int
castore_archive_stage(struct castore *s, X509 *x, const char *serial,
    struct file_stage *stage, char *err, size_t errlen)
{
	BIO *b = NULL;
	char *path = NULL, *data;
	long len;
	int rc = -1;

	if (castore_mkdir(s->cfg->ca.certs_dir, 0755, err, errlen) == -1)
		return -1;
	if ((path = castore_archive_path(s, serial)) == NULL ||
	    (b = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509(b, x)) {
		ERR_clear_error();
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	len = BIO_get_mem_data(b, &data);
	if (file_stage_write(stage, path, data, (size_t)len, 0644) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	BIO_free(b);
	free(path);
	return rc;
}

struct castore_taken {
	struct castore *s;
	const struct cadb *db;
};

static int
castore_taken(const char *hex, void *arg)
{
	struct castore_taken *t = arg;
	char *path;
	int taken;

	if (t->db != NULL && cadb_find_serial(t->db, hex) != NULL)
		return 1;
	if ((path = castore_archive_path(t->s, hex)) == NULL)
		return 1;
	taken = access(path, F_OK) == 0;
	free(path);
	return taken;
}

ASN1_INTEGER *
castore_serial(struct castore *s, const struct cadb *db, char **hex, char *err, size_t errlen)
{
	struct castore_taken t = { s, db };

	return certify_serial(castore_taken, &t, hex, err, errlen);
}

/* OUT/key.pem, OUT/cert.pem, OUT/ca.pem for the commands. */
int
castore_write_out(struct castore *s, const struct castore_issue *in, X509 *x, char *err,
    size_t errlen)
{
	char *p = NULL;
	int rc = -1;

	if (castore_mkdir(s->cfg->ca.agents_dir, 0700, err, errlen) == -1 ||
	    castore_mkdir(in->out_dir, 0700, err, errlen) == -1)
		return -1;
	if (asprintf(&p, "%s/key.pem", in->out_dir) < 0)
		goto oom;
	if (in->out_key) {
		if (certify_pem_write(p, NULL, NULL, in->out_key, 0600, err, errlen) == -1)
			goto fail;
	} else if (!in->keep_key && unlink(p) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the stale %s: %s", p, strerror(errno));
		goto fail;
	}
	free(p);
	if (asprintf(&p, "%s/cert.pem", in->out_dir) < 0)
		goto oom;
	/* The leaf and the CA certificates up to (without) the root; ca.pem gets the
	 * roots (every trusted one during a rollover). */
	if (cabundle_write(p, x, s->b.chain, 0644, err, errlen) == -1)
		goto fail;
	free(p);
	if (asprintf(&p, "%s/ca.pem", in->out_dir) < 0)
		goto oom;
	if (cabundle_write(p, NULL, s->b.anchors, 0644, err, errlen) == -1)
		goto fail;
	rc = 0;
	goto fail;
oom:
	p = NULL;
	snprintf(err, errlen, "out of memory");
fail:
	free(p);
	return rc;
}

int
castore_issue(struct castore *s, struct cadb *db, const struct castore_issue *in,
    struct castore_issued *out, char *err, size_t errlen)
{
	struct cabatch_item it;

	memset(&it, 0, sizeof(it));
	it.in = in;
	(void)cabatch_issue(s, db, &it, 1);
	*out = it.out;
	if (it.rc == -1)
		snprintf(err, errlen, "%s", it.err);
	return it.rc;
}

/* Serial of an archive file name "HEX.pem", or NULL. */
static int
castore_archive_name(const char *n, char *serial, size_t len)
{
	size_t i, l = strlen(n);

	if (l < 5 || l - 4 >= len || strcmp(n + l - 4, ".pem") != 0)
		return -1;
	for (i = 0; i + 4 < l; i++)
		if (!strchr("0123456789ABCDEF", n[i]))
			return -1;
	memcpy(serial, n, l - 4);
	serial[l - 4] = '\0';
	return 0;
}

static int
castore_reconcile_one(struct castore *s, struct cadb *db, const char *serial, char *err,
    size_t errlen)
{
	char expiry[CATIME_INDEX_LEN], na[CATIME_RFC3339_LEN], cn[128], *path, *subj = NULL;
	X509 *x = NULL;
	time_t t;
	int rc = -1;

	if ((path = castore_archive_path(s, serial)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((x = certify_pem_cert(path, err, errlen)) == NULL)
		goto skip;
	if (X509_verify(x, X509_get0_pubkey(s->cert)) != 1) {
		ERR_clear_error();
		log_warn("%s is not signed by this CA: left alone", path);
		goto skip;
	}
	if (catime_from_asn1(X509_get0_notAfter(x), &t) == -1 ||
	    (subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0)) == NULL)
		goto skip;
	catime_format(t, expiry, sizeof(expiry));
	catime_rfc3339(t, na, sizeof(na));
	if (cadb_add_valid(db, expiry, serial, subj) == -1 ||
	    cadb_revoke(&db->rows[db->n - 1], time(NULL), "cessationOfOperation") == -1) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	log_warn("certificate %s (%s) was signed but its issuance was interrupted before it "
	    "was recorded: recorded as revoked", serial, subj);
	(void)caaudit_write(s->cfg->ca.audit, &(struct caaudit_rec){ .what = "reconcile",
	    .serial = serial, .subject = subj, .not_after = na,
	    .agent = cadb_agent_of(&db->rows[db->n - 1], cn, sizeof(cn)),
	    .reason = "issuance interrupted before it was recorded; revoked" }, NULL);
	rc = 1;
	goto fail;
skip:
	rc = 0;
fail:
	OPENSSL_free(subj);
	X509_free(x);
	free(path);
	return rc;
}

int
castore_reconcile(struct castore *s, struct cadb *db, int *n, char *err, size_t errlen)
{
	struct dirent *de;
	char serial[80];
	DIR *d;
	int count = 0, r;

	if (n)
		*n = 0;
	if (s->reconciled)
		return 0;
	if (s->lock == -1 || s->key == NULL) {
		snprintf(err, errlen, "internal error: reconciling without the CA lock or key");
		return -1;
	}
	if ((d = opendir(s->cfg->ca.certs_dir)) == NULL) {
		if (errno == ENOENT) {
			s->reconciled = 1;
			return 0;
		}
		snprintf(err, errlen, "cannot read %s: %s", s->cfg->ca.certs_dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (castore_archive_name(de->d_name, serial, sizeof(serial)) == -1 ||
		    cadb_find_serial(db, serial) != NULL)
			continue;
		if ((r = castore_reconcile_one(s, db, serial, err, errlen)) == -1) {
			closedir(d);
			return -1;
		}
		count += r;
	}
	closedir(d);
	if (count > 0) {
		if (cadb_save(s->cfg->ca.db, db) == -1) {
			snprintf(err, errlen, "cannot write the CA database %s: %s", s->cfg->ca.db,
			    strerror(errno));
			return -1;
		}
		if (castore_crl_refresh(s, db, (long)s->cfg->ca.crl_hours * 3600, NULL, err,
		    errlen) == -1)
			return -1;
	}
	s->reconciled = 1;
	if (n)
		*n = count;
	return 0;
}
