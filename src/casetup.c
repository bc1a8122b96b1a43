/* `certgate ca init` and `certgate ca server` (casetup.h). */
#include "casetup.h"

#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "caaudit.h"
#include "cabundle.h"
#include "caimport.h"
#include "cacli.h"
#include "cadb.h"
#include "castore.h"
#include "catime.h"
#include "certify.h"
#include "config.h"
#include "file.h"
#include "p11.h"

/* `ca init --intermediate`: a PKCS#10 request for the CA key, signed in the token,
 * asking for CA:TRUE and keyCertSign+cRLSign. Exit code. */
static int
casetup_request(const struct config *cfg, X509_NAME *name, EVP_PKEY *key)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *e;
	X509_REQ *req = NULL;
	X509V3_CTX v3;
	char *path = NULL, *data;
	BIO *b = NULL;
	long len;
	int rc = 1;

	if ((path = caimport_csr_path(cfg)) == NULL || (req = X509_REQ_new()) == NULL ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL || (b = BIO_new(BIO_s_mem())) == NULL)
		goto sslfail;
	X509V3_set_ctx(&v3, NULL, NULL, req, NULL, 0);
	if (X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
	    X509_REQ_set_pubkey(req, key) != 1)
		goto sslfail;
	if ((e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) ==
	    NULL || sk_X509_EXTENSION_push(exts, e) <= 0)
		goto sslfail;
	if ((e = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign")) ==
	    NULL || sk_X509_EXTENSION_push(exts, e) <= 0)
		goto sslfail;
	if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
	    !PEM_write_bio_X509_REQ(b, req))
		goto sslfail;
	len = BIO_get_mem_data(b, &data);
	if (file_write_atomic(path, data, (size_t)len, 0644) == -1) {
		cacli_error("cannot write %s: %s", path, strerror(errno));
		goto out;
	}
	printf("CA key generated in the token; certificate request written to %s\n"
	    "next: have the corporate CA sign it (CA:TRUE, keyUsage keyCertSign, cRLSign), then\n"
	    "  certgate ca import -c %s --cert CA-CERT.pem --chain CHAIN.pem [--crl CRLS.pem]\n",
	    path, cfg->path ? cfg->path : "CONFIG");
	rc = 0;
	goto out;
sslfail:
	ERR_print_errors_fp(stderr);
	cacli_error("cannot make the certificate request%s%s", path ? " " : "", path ? path : "");
out:
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	BIO_free(b);
	free(path);
	return rc;
}

int
casetup_init(struct config *cfg, struct cacli_args *a)
{
	struct certify_spec spec;
	struct castore s;
	struct p11_defaults d;
	struct cadb db = { 0 };
	X509_NAME *name = NULL;
	ASN1_INTEGER *sn = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char err[1024], *serial = NULL, *subj = NULL, *dir = NULL, na[CATIME_RFC3339_LEN];
	struct stat st;
	int rc = 1, ex;

	castore_init(&s, cfg);
	if (cfg->ca.key == NULL || !p11_is_uri(cfg->ca.key)) {
		cacli_error("ca.key must be a pkcs11: URI (the key is made in the token)");
		return 1;
	}
	if ((name = certify_dn(a->subject ? a->subject : CASETUP_CA_SUBJECT, err,
	    sizeof(err))) == NULL) {
		cacli_error("%s", err);
		return 1;
	}
	if (castore_lock(&s, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		goto fail;
	}
	if (access(cfg->ca.cert, F_OK) == 0 && !a->force) {
		cacli_error("CA certificate %s already exists (use --force to replace it)",
		    cfg->ca.cert);
		goto fail;
	}
	config_ca_p11(cfg, &d);
	if ((ex = p11_key_exists(&d, cfg->ca.key)) == -1) {
		cacli_error("cannot look for the CA key in the token (see above)");
		goto fail;
	}
	if (ex == 1) {
		cacli_error("the CA key already exists in the token; keys in the token are never "
		    "overwritten: re-create the token (scripts/pki-init --force)");
		goto fail;
	}
	if ((dir = file_dirname(cfg->ca.cert)) == NULL)
		goto fail;
	/* 0700: the CA service's socket (ca/ca.sock) and token records live here too. */
	if ((stat(dir, &st) == -1 && (mkdir(dir, 0700) == -1 || chmod(dir, 0700) == -1)) ||
	    (stat(cfg->ca.certs_dir, &st) == -1 && (mkdir(cfg->ca.certs_dir, 0755) == -1 ||
	    chmod(cfg->ca.certs_dir, 0755) == -1))) {
		cacli_error("cannot create the CA directories %s, %s: %s", dir, cfg->ca.certs_dir,
		    strerror(errno));
		goto fail;
	}
	if (p11_generate_ec_key(&d, cfg->ca.key, &key) == -1) {
		cacli_error("cannot generate the CA key in the token (see above)");
		goto fail;
	}
	if (a->intermediate) {
		rc = casetup_request(cfg, name, key);
		goto fail;
	}
	if ((sn = certify_serial(NULL, NULL, &serial, err, sizeof(err))) == NULL)
		goto sfail;
	memset(&spec, 0, sizeof(spec));
	spec.profile = CERTIFY_CA;
	spec.subject = name;
	spec.pubkey = key;
	spec.signer = key;
	spec.seconds = (long)cfg->ca.ca_days * 86400L;
	spec.serial = sn;
	if ((x = certify_cert(&spec, err, sizeof(err))) == NULL ||
	    certify_pem_write(cfg->ca.cert, x, NULL, NULL, 0644, err, sizeof(err)) == -1)
		goto sfail;
	if (cadb_save(cfg->ca.db, &db) == -1) {
		cacli_error("cannot write %s: %s", cfg->ca.db, strerror(errno));
		goto fail;
	}
	s.cert = x;
	s.key = key;
	if (castore_crlnumber_init(&s, err, sizeof(err)) == -1 ||
	    castore_crl_refresh(&s, &db, (long)cfg->ca.crl_hours * 3600, NULL, err,
	    sizeof(err)) == -1) {
		s.cert = NULL;
		s.key = NULL;
		sk_X509_CRL_pop_free(s.others, X509_CRL_free);
		s.others = NULL;
		goto sfail;
	}
	s.cert = NULL;
	s.key = NULL;
	sk_X509_CRL_pop_free(s.others, X509_CRL_free);
	s.others = NULL;
	subj = X509_NAME_oneline(name, NULL, 0);
	catime_rfc3339(time(NULL) + (time_t)cfg->ca.ca_days * 86400, na, sizeof(na));
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "init",
	    .serial = serial, .subject = subj, .not_after = na }, NULL);
	printf("CA certificate %s written to %s (key in the token, serial %s)\n",
	    subj ? subj : "?", cfg->ca.cert, serial);
	rc = 0;
	goto fail;
sfail:
	cacli_error("%s", err);
fail:
	castore_unlock(&s);
	OPENSSL_free(subj);
	OPENSSL_free(serial);
	ASN1_INTEGER_free(sn);
	free(dir);
	X509_free(x);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	return rc;
}

static int
casetup_dns_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' &&
		    !(s[i] == '*' && i == 0))
			return 0;
	return 1;
}

/* "DNS:localhost,IP:127.0.0.1,..." from the arguments (validated). */
static char *
casetup_san(const struct cacli_args *a)
{
	unsigned char ipbuf[16];
	size_t i, len = 64;
	char *s;

	for (i = 0; i < a->ndns; i++) {
		if (!casetup_dns_valid(a->dns[i])) {
			cacli_error("--dns '%s' is not a valid host name", a->dns[i]);
			return NULL;
		}
		len += strlen(a->dns[i]) + 6;
	}
	for (i = 0; i < a->nip; i++) {
		if (inet_pton(AF_INET, a->ip[i], ipbuf) != 1 &&
		    inet_pton(AF_INET6, a->ip[i], ipbuf) != 1) {
			cacli_error("--ip '%s' is not an IPv4 or IPv6 address", a->ip[i]);
			return NULL;
		}
		len += strlen(a->ip[i]) + 5;
	}
	if ((s = malloc(len)) == NULL)
		return NULL;
	snprintf(s, len, "DNS:localhost,IP:127.0.0.1");
	for (i = 0; i < a->ndns; i++)
		if (strcmp(a->dns[i], "localhost") != 0)
			snprintf(s + strlen(s), len - strlen(s), ",DNS:%s", a->dns[i]);
	for (i = 0; i < a->nip; i++)
		if (strcmp(a->ip[i], "127.0.0.1") != 0)
			snprintf(s + strlen(s), len - strlen(s), ",IP:%s", a->ip[i]);
	return s;
}

/* Loads the server key when it exists (renewal), else generates it in the token. */
static int
casetup_server_key(const struct config *cfg, EVP_PKEY **key)
{
	struct p11_defaults d;
	int ex;

	config_tls_p11(cfg, &d);
	if ((ex = p11_key_exists(&d, cfg->tls.key)) == -1) {
		cacli_error("cannot look for the server key in the token (see above)");
		return -1;
	}
	if (ex == 1) {
		fprintf(stderr, "%s: the server key already exists in the token; reusing it\n",
		    cacli_prog());
		if (p11_load_private_key(&d, cfg->tls.key, 0, key) == -1) {
			cacli_error("cannot load the server key from the token (see above)");
			return -1;
		}
		return 0;
	}
	if (p11_generate_ec_key(&d, cfg->tls.key, key) == -1) {
		cacli_error("cannot generate the server key in the token (see above)");
		return -1;
	}
	return 0;
}

int
casetup_server(struct config *cfg, struct cacli_args *a)
{
	struct certify_spec spec;
	struct castore s;
	struct cadb db;
	X509_NAME *name = NULL;
	ASN1_INTEGER *sn = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char err[1024], *san = NULL, *serial = NULL, *subj = NULL, *dir = NULL;
	char exp[CATIME_INDEX_LEN], na[CATIME_RFC3339_LEN];
	struct stat st;
	time_t t;
	int rc = 1;

	if (cfg->tls.key == NULL || !p11_is_uri(cfg->tls.key)) {
		cacli_error("tls.key must be a pkcs11: URI (the key is made in the token)");
		return 1;
	}
	if ((san = casetup_san(a)) == NULL)
		return 2;
	if ((name = certify_dn(CASETUP_SERVER_SUBJECT, err, sizeof(err))) == NULL) {
		cacli_error("%s", err);
		free(san);
		return 1;
	}
	if (cacli_begin(cfg, &s, &db) == -1)
		goto out;
	if (casetup_server_key(cfg, &key) == -1)
		goto fail;
	if ((sn = castore_serial(&s, &db, &serial, err, sizeof(err))) == NULL)
		goto sfail;
	memset(&spec, 0, sizeof(spec));
	spec.profile = CERTIFY_SERVER;
	spec.subject = name;
	spec.pubkey = key;
	spec.issuer = s.cert;
	spec.signer = s.key;
	spec.seconds = (long)cfg->ca.server_days * 86400L;
	spec.serial = sn;
	spec.san = san;
	spec.ocsp_url = cfg->ca.ocsp_url;
	if ((x = certify_cert(&spec, err, sizeof(err))) == NULL)
		goto sfail;
	if ((dir = file_dirname(cfg->tls.cert)) == NULL)
		goto fail;
	if (stat(dir, &st) == -1 && (mkdir(dir, 0755) == -1 || chmod(dir, 0755) == -1)) {
		cacli_error("cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (catime_from_asn1(X509_get0_notAfter(x), &t) == -1)
		goto fail;
	catime_format(t, exp, sizeof(exp));
	catime_rfc3339(t, na, sizeof(na));
	subj = X509_NAME_oneline(name, NULL, 0);
	if (castore_archive(&s, x, serial, err, sizeof(err)) == -1 ||
	    cabundle_write(cfg->tls.cert, x, s.b.chain, 0644, err, sizeof(err)) == -1)
		goto sfail;
	if (subj == NULL || cadb_add_valid(&db, exp, serial, subj) == -1 ||
	    cadb_save(cfg->ca.db, &db) == -1) {
		cacli_error("cannot record the server certificate in %s: %s", cfg->ca.db,
		    strerror(errno));
		goto fail;
	}
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "server",
	    .serial = serial, .subject = subj, .not_after = na }, NULL);
	printf("%s\n", serial);
	rc = 0;
	goto fail;
sfail:
	cacli_error("%s", err);
fail:
	cacli_end(&s, &db);
out:
	OPENSSL_free(serial);
	OPENSSL_free(subj);
	ASN1_INTEGER_free(sn);
	free(san);
	free(dir);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}
