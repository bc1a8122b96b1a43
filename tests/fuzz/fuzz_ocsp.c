/* Fuzz target: ocsp_response_eval on arbitrary bytes as an OCSP response, against a
 * fixed issuer, certificate and request. Invariant: nothing but a response signed by
 * the issuer for the certificate asked about is GOOD or REVOKED (the fuzzer cannot
 * forge the issuer's signature, so any non-error verdict is a bug), and every error
 * has a message. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "ocsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *ca, *leaf;
static X509_STORE *store;
static STACK_OF(X509) *chain;
static OCSP_REQUEST *req;
static OCSP_CERTID *id;

static X509 *
mk(const char *cn, EVP_PKEY *k, X509 *issuer, EVP_PKEY *ik)
{
	X509 *x = X509_new();

	ASN1_INTEGER_set(X509_get_serialNumber(x), issuer ? 7 : 1);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	X509_sign(x, ik ? ik : k, EVP_sha256());
	return x;
}

static void
setup(void)
{
	EVP_PKEY *ck = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");
	unsigned char *der = NULL;
	int n;

	ca = mk("ca", ck, NULL, NULL);
	leaf = mk("leaf", lk, ca, ck);
	store = X509_STORE_new();
	X509_STORE_add_cert(store, ca);
	chain = sk_X509_new_null();
	sk_X509_push(chain, ca);
	if (ocsp_request_new(leaf, ca, &req, &id, &der, &n) == -1)
		abort();
	OPENSSL_free(der);
	EVP_PKEY_free(ck);
	EVP_PKEY_free(lk);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	time_t next;
	enum ocsp_verdict v;

	if (store == NULL)
		setup();
	v = ocsp_response_eval(data, size, req, id, store, chain, time(NULL), &next, &why);
	if (v != OCSP_VERDICT_ERROR || why == NULL)
		abort();
	return 0;
}
