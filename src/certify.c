/* The CA's signed objects: certificates, CRLs, OCSP responses (certify.h). */
#include "certify.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cadb.h"
#include "catime.h"
#include "file.h"

/* err = message, then ": " and each queued OpenSSL error (the queue is drained). */
static void __attribute__((format(printf, 3, 4)))
certify_err(char *err, size_t errlen, const char *fmt, ...)
{
	char one[256];
	unsigned long e;
	size_t off;
	va_list ap;

	if (err == NULL || errlen == 0) {
		ERR_clear_error();
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	while ((e = ERR_get_error()) != 0) {
		off = strlen(err);
		if (off + 3 >= errlen)
			continue;
		ERR_error_string_n(e, one, sizeof(one));
		snprintf(err + off, errlen - off, ": %s", one);
	}
}

int
certify_agent_id_valid(const char *id)
{
	size_t i, n = strlen(id);

	if (n == 0 || n > CERTIFY_AGENT_MAX || !isalnum((unsigned char)id[0]))
		return 0;
	for (i = 1; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
			return 0;
	return 1;
}

int
certify_key_acceptable(EVP_PKEY *k, char *err, size_t errlen)
{
	char group[64];
	size_t glen = 0;
	int bits = EVP_PKEY_get_bits(k);

	if (EVP_PKEY_is_a(k, "EC")) {
		if (!EVP_PKEY_get_group_name(k, group, sizeof(group), &glen)) {
			certify_err(err, errlen, "cannot read the curve of the EC key");
			return -1;
		}
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
		    strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			return 0;
		snprintf(err, errlen, "the EC key is on curve %s; only P-256 and P-384 are "
		    "accepted", group);
		return -1;
	}
	if (EVP_PKEY_is_a(k, "RSA")) {
		if (bits >= 2048 && bits <= 16384)
			return 0;
		snprintf(err, errlen, "the RSA key has %d bits; at least 2048 (and at most "
		    "16384) are required", bits);
		return -1;
	}
	snprintf(err, errlen, "the key type %s is not accepted (EC P-256/P-384 or RSA >= 2048)",
	    EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "?");
	return -1;
}

X509_NAME *
certify_dn(const char *dn, char *err, size_t errlen)
{
	X509_NAME *name = NULL;
	char *copy = NULL, *tok, *save = NULL, *eq;
	const char *sep = ",";

	if ((copy = strdup(dn)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (copy[0] == '/')
		sep = "/";
	if ((name = X509_NAME_new()) == NULL) {
		certify_err(err, errlen, "out of memory");
		goto fail;
	}
	for (tok = strtok_r(copy, sep, &save); tok; tok = strtok_r(NULL, sep, &save)) {
		while (*tok == ' ')
			tok++;
		if ((eq = strchr(tok, '=')) == NULL || eq == tok || eq[1] == '\0') {
			snprintf(err, errlen, "bad subject component '%s' (want TYPE=value)", tok);
			goto fail;
		}
		*eq = '\0';
		if (!X509_NAME_add_entry_by_txt(name, tok, MBSTRING_UTF8,
		    (unsigned char *)eq + 1, -1, -1, 0)) {
			certify_err(err, errlen, "bad subject attribute '%s'", tok);
			goto fail;
		}
	}
	if (X509_NAME_entry_count(name) == 0) {
		snprintf(err, errlen, "empty subject '%s'", dn);
		goto fail;
	}
	free(copy);
	return name;
fail:
	X509_NAME_free(name);
	free(copy);
	return NULL;
}

ASN1_INTEGER *
certify_serial(int (*taken)(const char *hex, void *arg), void *arg, char **hex, char *err,
    size_t errlen)
{
	unsigned char b[16];
	ASN1_INTEGER *ai = NULL;
	BIGNUM *bn = NULL;
	int tries;

	*hex = NULL;
	for (tries = 0; tries < 16; tries++) {
		if (RAND_bytes(b, sizeof(b)) != 1)
			goto fail;
		b[0] &= 0x7f;
		BN_free(bn);
		if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL)
			goto fail;
		if (BN_is_zero(bn))
			continue;
		OPENSSL_free(*hex);
		if ((*hex = BN_bn2hex(bn)) == NULL)
			goto fail;
		if (taken == NULL || !taken(*hex, arg))
			break;
	}
	if (tries == 16)
		goto fail;
	if ((ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto fail;
	BN_free(bn);
	return ai;
fail:
	certify_err(err, errlen, "cannot make a random serial number");
	BN_free(bn);
	OPENSSL_free(*hex);
	*hex = NULL;
	return NULL;
}

static int
certify_add_ext(X509 *cert, X509 *issuer, int nid, const char *value, char *err,
    size_t errlen)
{
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL) {
		certify_err(err, errlen, "cannot make extension %s = %s", OBJ_nid2sn(nid), value);
		return -1;
	}
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ok) {
		certify_err(err, errlen, "cannot add extension %s", OBJ_nid2sn(nid));
		return -1;
	}
	return 0;
}

struct certify_ext {
	int nid;
	const char *value;
};

/* The extensions of a profile, in the order certgate has always written them.
 * Returns the count; buf holds the "URI:..." SAN value for agents. */
static size_t
certify_exts(const struct certify_spec *s, struct certify_ext *e, char *aia, size_t aialen,
    char **sanbuf)
{
	size_t n = 0;

	*sanbuf = NULL;
	switch (s->profile) {
	case CERTIFY_CA:
		e[n++] = (struct certify_ext){ NID_basic_constraints, "critical,CA:TRUE,pathlen:0" };
		e[n++] = (struct certify_ext){ NID_key_usage, "critical,keyCertSign,cRLSign" };
		e[n++] = (struct certify_ext){ NID_subject_key_identifier, "hash" };
		e[n++] = (struct certify_ext){ NID_authority_key_identifier, "keyid:always" };
		return n;
	case CERTIFY_SERVER:
	case CERTIFY_AGENT:
		e[n++] = (struct certify_ext){ NID_basic_constraints, "critical,CA:FALSE" };
		e[n++] = (struct certify_ext){ NID_key_usage, "critical,digitalSignature" };
		e[n++] = (struct certify_ext){ NID_ext_key_usage,
		    s->profile == CERTIFY_SERVER ? "serverAuth" : "clientAuth" };
		if (s->profile == CERTIFY_AGENT) {
			if (asprintf(sanbuf, "URI:%s", s->san) < 0) {
				*sanbuf = NULL;
				return 0;
			}
			e[n++] = (struct certify_ext){ NID_subject_alt_name, *sanbuf };
		} else
			e[n++] = (struct certify_ext){ NID_subject_alt_name, s->san };
		e[n++] = (struct certify_ext){ NID_subject_key_identifier, "hash" };
		e[n++] = (struct certify_ext){ NID_authority_key_identifier, "keyid:always" };
		if (s->ocsp_url != NULL) {
			snprintf(aia, aialen, "OCSP;URI:%s", s->ocsp_url);
			e[n++] = (struct certify_ext){ NID_info_access, aia };
		}
		return n;
	}
	return 0;
}

X509 *
certify_cert(const struct certify_spec *s, char *err, size_t errlen)
{
	struct certify_ext ext[8];
	char aia[1100], *san = NULL;
	X509 *x = NULL;
	size_t i, next;

	if (s->profile != CERTIFY_CA && (s->issuer == NULL || s->san == NULL)) {
		snprintf(err, errlen, "internal error: certificate without issuer or SAN");
		return NULL;
	}
	if (s->ocsp_url != NULL && strlen(s->ocsp_url) > 1000) {
		snprintf(err, errlen, "OCSP URL too long");
		return NULL;
	}
	if ((next = certify_exts(s, ext, aia, sizeof(aia), &san)) == 0) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((x = X509_new()) == NULL)
		goto sslfail;
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_set_serialNumber(x, (ASN1_INTEGER *)s->serial) ||
	    !X509_set_subject_name(x, s->subject) ||
	    !X509_set_issuer_name(x, s->issuer ? X509_get_subject_name(s->issuer) : s->subject) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -CERTIFY_BACKDATE) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), 0, s->seconds, NULL) ||
	    !X509_set_pubkey(x, s->pubkey))
		goto sslfail;
	for (i = 0; i < next; i++)
		if (certify_add_ext(x, s->issuer, ext[i].nid, ext[i].value, err, errlen) == -1)
			goto fail;
	if (X509_sign(x, s->signer, EVP_sha256()) <= 0) {
		certify_err(err, errlen, "signing the certificate with the CA key failed");
		goto fail;
	}
	if (X509_verify(x, s->issuer ? X509_get0_pubkey(s->issuer) : s->pubkey) != 1) {
		certify_err(err, errlen, "the CA key does not match the CA certificate");
		goto fail;
	}
	free(san);
	return x;
sslfail:
	certify_err(err, errlen, "cannot build the certificate");
fail:
	free(san);
	X509_free(x);
	return NULL;
}

static X509_REVOKED *
certify_revoked_entry(const struct cadb_row *r, char *err, size_t errlen)
{
	X509_REVOKED *rev = NULL;
	ASN1_INTEGER *sn = NULL;
	ASN1_ENUMERATED *e = NULL;
	ASN1_TIME *t = NULL;
	BIGNUM *bn = NULL;
	const char *comma = strchr(r->revocation, ',');
	size_t dl = comma ? (size_t)(comma - r->revocation) : strlen(r->revocation);
	time_t when;
	int code = -1;

	if (catime_parse_n(r->revocation, dl, &when) == -1)
		goto bad;
	/* A reason OpenSSL knows by name but RFC 5280 has no code for is left out. */
	if (comma)
		code = cadb_reason_code(comma + 1);
	if (BN_hex2bn(&bn, r->serial) == 0 || (sn = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto bad;
	if ((rev = X509_REVOKED_new()) == NULL || (t = ASN1_TIME_set(NULL, when)) == NULL)
		goto sslfail;
	if (!X509_REVOKED_set_serialNumber(rev, sn) || !X509_REVOKED_set_revocationDate(rev, t))
		goto sslfail;
	/* RFC 5280 5.3.1: omit reasonCode rather than sending unspecified (0). */
	if (code > 0) {
		if ((e = ASN1_ENUMERATED_new()) == NULL || !ASN1_ENUMERATED_set(e, code) ||
		    !X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, e, 0, 0))
			goto sslfail;
	}
	goto out;
bad:
	snprintf(err, errlen, "database entry %s has a bad serial or revocation date", r->serial);
	goto fail;
sslfail:
	certify_err(err, errlen, "cannot build the CRL entry for %s", r->serial);
fail:
	X509_REVOKED_free(rev);
	rev = NULL;
out:
	ASN1_ENUMERATED_free(e);
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return rev;
}

static int
certify_crl_exts(X509_CRL *crl, X509 *cacert, const BIGNUM *number, char *err, size_t errlen)
{
	X509_EXTENSION *ext = NULL;
	ASN1_INTEGER *num = NULL;
	X509V3_CTX ctx;
	int rc = -1;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cacert, NULL, NULL, crl, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier,
	    "keyid:always")) == NULL || !X509_CRL_add_ext(crl, ext, -1))
		goto fail;
	if ((num = BN_to_ASN1_INTEGER(number, NULL)) == NULL ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
		goto fail;
	rc = 0;
fail:
	if (rc == -1)
		certify_err(err, errlen, "cannot add the CRL extensions");
	X509_EXTENSION_free(ext);
	ASN1_INTEGER_free(num);
	return rc;
}

X509_CRL *
certify_crl(X509 *cacert, EVP_PKEY *key, const struct cadb *db, const BIGNUM *number,
    time_t now, long seconds, char *err, size_t errlen)
{
	X509_CRL *crl = NULL;
	X509_REVOKED *rev;
	ASN1_TIME *last = NULL, *next = NULL;
	size_t i;

	if ((crl = X509_CRL_new()) == NULL ||
	    (last = ASN1_TIME_set(NULL, now)) == NULL ||
	    (next = ASN1_TIME_set(NULL, now + (time_t)seconds)) == NULL ||
	    !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(cacert)) ||
	    !X509_CRL_set1_lastUpdate(crl, last) ||
	    !X509_CRL_set1_nextUpdate(crl, next)) {
		certify_err(err, errlen, "cannot build the CRL");
		goto fail;
	}
	for (i = 0; i < db->n; i++) {
		if (db->rows[i].status != 'R')
			continue;
		if ((rev = certify_revoked_entry(&db->rows[i], err, errlen)) == NULL)
			goto fail;
		if (!X509_CRL_add0_revoked(crl, rev)) {
			X509_REVOKED_free(rev);
			certify_err(err, errlen, "cannot add a CRL entry");
			goto fail;
		}
	}
	if (!X509_CRL_sort(crl) || certify_crl_exts(crl, cacert, number, err, errlen) == -1)
		goto fail;
	if (X509_CRL_sign(crl, key, EVP_sha256()) <= 0) {
		certify_err(err, errlen, "signing the CRL with the CA key failed");
		goto fail;
	}
	if (X509_CRL_verify(crl, X509_get0_pubkey(cacert)) != 1) {
		certify_err(err, errlen, "the CA key does not match the CA certificate");
		goto fail;
	}
	goto out;
fail:
	X509_CRL_free(crl);
	crl = NULL;
out:
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	return crl;
}

int
certify_fingerprint(X509 *x, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	if (!X509_digest(x, EVP_sha256(), md, &n) || n != 32)
		return -1;
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int
certify_ocsp_issuer_is(X509 *cacert, const struct certify_ocsp_id *id)
{
	unsigned char nh[EVP_MAX_MD_SIZE], kh[EVP_MAX_MD_SIZE];
	unsigned int nl = 0, kl = 0;
	const EVP_MD *md = EVP_get_digestbynid(id->md_nid);

	if (md == NULL ||
	    !X509_NAME_digest(X509_get_subject_name(cacert), md, nh, &nl) ||
	    !X509_pubkey_digest(cacert, md, kh, &kl)) {
		ERR_clear_error();
		return 0;
	}
	return nl == id->name_hash_len && kl == id->key_hash_len &&
	    memcmp(nh, id->name_hash, nl) == 0 && memcmp(kh, id->key_hash, kl) == 0;
}

/* The requester's CertID: built for cacert, then given the requester's hashes, so
 * a CertID naming another issuer is echoed exactly (answered "unknown"). */
static OCSP_CERTID *
certify_ocsp_certid(X509 *cacert, const struct certify_ocsp_id *id)
{
	ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
	ASN1_INTEGER *sn = NULL;
	OCSP_CERTID *cid = NULL;
	BIGNUM *bn = NULL;
	const EVP_MD *md = EVP_get_digestbynid(id->md_nid);

	if (md == NULL || BN_hex2bn(&bn, id->serial) == 0 ||
	    (sn = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		goto fail;
	if ((cid = OCSP_cert_id_new(md, X509_get_subject_name(cacert),
	    X509_get0_pubkey_bitstr(cacert), sn)) == NULL)
		goto fail;
	if (!OCSP_id_get0_info(&nh, NULL, &kh, NULL, cid) || nh == NULL || kh == NULL ||
	    !ASN1_OCTET_STRING_set(nh, id->name_hash, (int)id->name_hash_len) ||
	    !ASN1_OCTET_STRING_set(kh, id->key_hash, (int)id->key_hash_len)) {
		OCSP_CERTID_free(cid);
		cid = NULL;
	}
fail:
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return cid;
}

unsigned char *
certify_ocsp(X509 *cacert, EVP_PKEY *key, const struct certify_ocsp_id *ids, size_t nids,
    const unsigned char *nonce, size_t nonce_len, time_t now, long validity, size_t *len,
    char *err, size_t errlen)
{
	OCSP_BASICRESP *bs = NULL;
	OCSP_RESPONSE *resp = NULL;
	OCSP_CERTID *cid = NULL;
	ASN1_TIME *thisupd = NULL, *nextupd = NULL, *revt = NULL;
	ASN1_OCTET_STRING *os = NULL;
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	size_t i;
	int n;

	*len = 0;
	if ((bs = OCSP_BASICRESP_new()) == NULL ||
	    (thisupd = ASN1_TIME_set(NULL, now)) == NULL ||
	    (nextupd = ASN1_TIME_set(NULL, now + (time_t)validity)) == NULL)
		goto sslfail;
	for (i = 0; i < nids; i++) {
		if ((cid = certify_ocsp_certid(cacert, &ids[i])) == NULL)
			goto sslfail;
		ASN1_TIME_free(revt);
		revt = NULL;
		if (ids[i].status == V_OCSP_CERTSTATUS_REVOKED &&
		    (revt = ASN1_TIME_set(NULL, ids[i].revoked_at)) == NULL)
			goto sslfail;
		if (OCSP_basic_add1_status(bs, cid, ids[i].status,
		    ids[i].status == V_OCSP_CERTSTATUS_REVOKED && ids[i].reason > 0 ?
		    ids[i].reason : OCSP_REVOKED_STATUS_NOSTATUS, revt, thisupd, nextupd) == NULL)
			goto sslfail;
		OCSP_CERTID_free(cid);
		cid = NULL;
	}
	if (nonce != NULL) {
		if ((os = ASN1_OCTET_STRING_new()) == NULL ||
		    !ASN1_OCTET_STRING_set(os, nonce, (int)nonce_len) ||
		    (ext = X509_EXTENSION_create_by_NID(NULL, NID_id_pkix_OCSP_Nonce, 0, os)) == NULL ||
		    !OCSP_BASICRESP_add_ext(bs, ext, -1))
			goto sslfail;
	}
	if (!OCSP_basic_sign(bs, cacert, key, EVP_sha256(), NULL,
	    OCSP_RESPID_KEY | OCSP_NOCERTS)) {
		certify_err(err, errlen, "signing the OCSP response with the CA key failed");
		goto fail;
	}
	if ((resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)) == NULL ||
	    (n = i2d_OCSP_RESPONSE(resp, &der)) <= 0)
		goto sslfail;
	*len = (size_t)n;
	goto out;
sslfail:
	certify_err(err, errlen, "cannot build the OCSP response");
fail:
	OPENSSL_free(der);
	der = NULL;
out:
	OCSP_CERTID_free(cid);
	OCSP_RESPONSE_free(resp);
	OCSP_BASICRESP_free(bs);
	ASN1_TIME_free(thisupd);
	ASN1_TIME_free(nextupd);
	ASN1_TIME_free(revt);
	ASN1_OCTET_STRING_free(os);
	X509_EXTENSION_free(ext);
	return der;
}

X509 *
certify_pem_cert(const char *path, char *err, size_t errlen)
{
	X509 *x = NULL;
	BIO *b;

	if ((b = BIO_new_file(path, "r")) == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL)
		certify_err(err, errlen, "cannot read a PEM certificate from %s", path);
	BIO_free(b);
	return x;
}

int
certify_pem_write(const char *path, X509 *x, X509_CRL *crl, EVP_PKEY *key, mode_t mode,
    char *err, size_t errlen)
{
	BIO *b = NULL;
	char *data;
	long len;
	int rc = -1, ok;

	if ((b = BIO_new(BIO_s_mem())) == NULL)
		goto sslfail;
	if (x)
		ok = PEM_write_bio_X509(b, x);
	else if (crl)
		ok = PEM_write_bio_X509_CRL(b, crl);
	else
		ok = PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	if (!ok)
		goto sslfail;
	len = BIO_get_mem_data(b, &data);
	if (file_write_atomic(path, data, (size_t)len, mode) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
sslfail:
	certify_err(err, errlen, "cannot encode %s", path);
out:
	BIO_free(b);
	return rc;
}
