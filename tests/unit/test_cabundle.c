/* cabundle.h: how ca.cert splits into certgate's CAs, the chain after a leaf and the
 * anchors, for a self-signed CA, a rollover (two self-signed CAs) and an intermediate
 * under a root (with an unrelated certificate in the file); serial lookup. */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "cabundle.h"
#include "check.h"

static EVP_PKEY *
mkkey(void)
{
	return EVP_EC_gen("P-256");
}

static X509 *
mkca(const char *cn, long serial, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
	X509 *x = X509_new();

	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_sign(x, ikey ? ikey : key, EVP_sha256());
	return x;
}

static STACK_OF(X509) *
stack(X509 *a, X509 *b, X509 *c)
{
	STACK_OF(X509) *s = sk_X509_new_null();

	sk_X509_push(s, a);
	if (b)
		sk_X509_push(s, b);
	if (c)
		sk_X509_push(s, c);
	return s;
}

int
main(void)
{
	EVP_PKEY *k1 = mkkey(), *k2 = mkkey(), *kr = mkkey(), *ki = mkkey(), *ko = mkkey();
	X509 *ca1 = mkca("certgate CA", 0x0A1B, k1, NULL, NULL);
	X509 *ca2 = mkca("certgate CA G2", 2, k2, NULL, NULL);
	X509 *root = mkca("Corp Root", 3, kr, NULL, NULL);
	X509 *inter = mkca("certgate CA", 4, ki, root, kr);
	X509 *other = mkca("Other Root", 5, ko, NULL, NULL);
	STACK_OF(X509) *s;
	struct cabundle b;
	char err[256];

	CHECK(cabundle_self_signed(ca1) == 1);
	CHECK(cabundle_self_signed(inter) == 0);

	/* one self-signed CA: it is ours and the anchor; leaves need no chain */
	s = stack(ca1, NULL, NULL);
	CHECK(cabundle_from(s, &b, err, sizeof(err)) == 0);
	CHECK(sk_X509_num(b.ours) == 1 && sk_X509_num(b.anchors) == 1 && sk_X509_num(b.chain) == 0);
	cabundle_free(&b);
	sk_X509_free(s);

	/* rollover: new first, old behind; both ours and anchors */
	s = stack(ca2, ca1, NULL);
	CHECK(cabundle_from(s, &b, err, sizeof(err)) == 0);
	CHECK(sk_X509_num(b.ours) == 2 && sk_X509_num(b.anchors) == 2 && sk_X509_num(b.chain) == 0);
	CHECK(X509_cmp(sk_X509_value(b.all, 0), ca2) == 0);
	CHECK(cabundle_find_serial(b.all, "0a1b") == 1);
	CHECK(cabundle_find_serial(b.all, "00A1B") == 1);
	CHECK(cabundle_find_serial(b.all, "02") == 0);
	CHECK(cabundle_find_serial(b.all, "FF") == -1);
	cabundle_free(&b);
	sk_X509_free(s);

	/* intermediate under a root, plus a stranger: only the intermediate is ours, the
	 * chain after a leaf is the intermediate, the anchors are the self-signed ones */
	s = stack(inter, other, root);
	CHECK(cabundle_from(s, &b, err, sizeof(err)) == 0);
	CHECK(sk_X509_num(b.ours) == 1 && X509_cmp(sk_X509_value(b.ours, 0), inter) == 0);
	CHECK(sk_X509_num(b.chain) == 1 && X509_cmp(sk_X509_value(b.chain, 0), inter) == 0);
	CHECK(sk_X509_num(b.anchors) == 2);
	cabundle_free(&b);
	sk_X509_free(s);

	/* an empty bundle is refused */
	s = sk_X509_new_null();
	CHECK(cabundle_from(s, &b, err, sizeof(err)) == -1);
	sk_X509_free(s);

	X509_free(ca1); X509_free(ca2); X509_free(root); X509_free(inter); X509_free(other);
	EVP_PKEY_free(k1); EVP_PKEY_free(k2); EVP_PKEY_free(kr); EVP_PKEY_free(ki);
	EVP_PKEY_free(ko);
	CHECK_DONE();
}
