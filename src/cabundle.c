/* The CA certificate file as a bundle (cabundle.h). */
#include "cabundle.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "file.h"

#define CABUNDLE_MAX_BYTES	(1024 * 1024)

int
cabundle_self_signed(X509 *x)
{
	EVP_PKEY *k = X509_get0_pubkey(x);
	int ok;

	if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) != 0 || k == NULL)
		return 0;
	ok = X509_verify(x, k) == 1;
	ERR_clear_error();
	return ok;
}

STACK_OF(X509) *
cabundle_read(const char *path, char *err, size_t errlen)
{
	STACK_OF(X509) *out = NULL;
	char *text = NULL;
	size_t len;
	BIO *b = NULL;
	X509 *x;

	if (file_read(path, CABUNDLE_MAX_BYTES, &text, &len) == -1) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	if ((out = sk_X509_new_null()) == NULL || (b = BIO_new_mem_buf(text, (int)len)) == NULL)
		goto oom;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(out, x) <= 0) {
			X509_free(x);
			goto oom;
		}
	ERR_clear_error();
	if (sk_X509_num(out) == 0) {
		snprintf(err, errlen, "%s holds no PEM certificate", path);
		goto fail;
	}
	BIO_free(b);
	free(text);
	return out;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	BIO_free(b);
	free(text);
	sk_X509_pop_free(out, X509_free);
	return NULL;
}

static int
cabundle_push(STACK_OF(X509) *sk, X509 *x)
{
	if (X509_up_ref(x) != 1)
		return -1;
	if (sk_X509_push(sk, x) <= 0) {
		X509_free(x);
		return -1;
	}
	return 0;
}

/* The certificate in certs that issued cur (not cur itself), or NULL. */
static X509 *
cabundle_issuer_of(STACK_OF(X509) *certs, X509 *cur)
{
	X509 *c;
	int i;

	for (i = 0; i < sk_X509_num(certs); i++) {
		c = sk_X509_value(certs, i);
		if (c != cur && X509_check_issued(c, cur) == X509_V_OK &&
		    X509_verify(cur, X509_get0_pubkey(c)) == 1)
			return c;
		ERR_clear_error();
	}
	return NULL;
}

int
cabundle_from(STACK_OF(X509) *certs, struct cabundle *b, char *err, size_t errlen)
{
	X509 *first, *cur, *x;
	int i, guard, first_root;

	memset(b, 0, sizeof(*b));
	if (sk_X509_num(certs) == 0) {
		snprintf(err, errlen, "no CA certificate");
		return -1;
	}
	if ((b->all = sk_X509_new_null()) == NULL || (b->ours = sk_X509_new_null()) == NULL ||
	    (b->chain = sk_X509_new_null()) == NULL || (b->anchors = sk_X509_new_null()) == NULL)
		goto oom;
	first = sk_X509_value(certs, 0);
	first_root = cabundle_self_signed(first);
	for (i = 0; i < sk_X509_num(certs); i++) {
		x = sk_X509_value(certs, i);
		if (cabundle_push(b->all, x) == -1)
			goto oom;
		if (cabundle_self_signed(x)) {
			if (cabundle_push(b->anchors, x) == -1)
				goto oom;
			if (first_root && cabundle_push(b->ours, x) == -1)
				goto oom;
		} else if (i == 0 && cabundle_push(b->ours, x) == -1)
			goto oom;
	}
	/* Walk up from the active CA by issuer, each certificate at most once. */
	cur = first;
	for (guard = 0; guard <= sk_X509_num(certs) && !cabundle_self_signed(cur); guard++) {
		if (cabundle_push(b->chain, cur) == -1)
			goto oom;
		if ((cur = cabundle_issuer_of(certs, cur)) == NULL)
			break;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	cabundle_free(b);
	return -1;
}

int
cabundle_load(const char *path, struct cabundle *b, char *err, size_t errlen)
{
	STACK_OF(X509) *certs;
	int rc;

	memset(b, 0, sizeof(*b));
	if ((certs = cabundle_read(path, err, errlen)) == NULL)
		return -1;
	rc = cabundle_from(certs, b, err, errlen);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

void
cabundle_free(struct cabundle *b)
{
	sk_X509_pop_free(b->all, X509_free);
	sk_X509_pop_free(b->ours, X509_free);
	sk_X509_pop_free(b->chain, X509_free);
	sk_X509_pop_free(b->anchors, X509_free);
	memset(b, 0, sizeof(*b));
}

char *
cabundle_serial_hex(X509 *x)
{
	BIGNUM *bn;
	char *hex;

	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) == NULL)
		return NULL;
	hex = BN_bn2hex(bn);
	BN_free(bn);
	return hex;
}

int
cabundle_find_serial(STACK_OF(X509) *certs, const char *hex)
{
	const char *h = hex;
	char *s;
	int i, hit;

	/* "0A1B" and "A1B" name the same serial. */
	while (h[0] == '0' && h[1] != '\0')
		h++;
	for (i = 0; i < sk_X509_num(certs); i++) {
		if ((s = cabundle_serial_hex(sk_X509_value(certs, i))) == NULL)
			continue;
		const char *t = s;

		while (t[0] == '0' && t[1] != '\0')
			t++;
		hit = strcasecmp(t, h) == 0;
		OPENSSL_free(s);
		if (hit)
			return i;
	}
	return -1;
}

int
cabundle_write(const char *path, X509 *first, STACK_OF(X509) *certs, mode_t mode,
    char *err, size_t errlen)
{
	BIO *b;
	char *data;
	long len;
	int i, rc = -1;

	if ((b = BIO_new(BIO_s_mem())) == NULL)
		goto oom;
	if (first != NULL && !PEM_write_bio_X509(b, first))
		goto oom;
	for (i = 0; i < sk_X509_num(certs); i++)
		if (!PEM_write_bio_X509(b, sk_X509_value(certs, i)))
			goto oom;
	len = BIO_get_mem_data(b, &data);
	if (file_write_atomic(path, data, (size_t)len, mode) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
oom:
	ERR_clear_error();
	snprintf(err, errlen, "out of memory");
out:
	BIO_free(b);
	return rc;
}
