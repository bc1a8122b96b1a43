/* agent_token.c: the enrollment token format (table), fingerprints of certificates. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <string.h>

#include "agent_token.h"
#include "check.h"

#define FP  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SEC "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

struct tcase {
	const char *tok;
	int ok;
	const char *err;   /* substring of the message */
};

static const struct tcase cases[] = {
	{ "cg1." FP "." SEC, 1, NULL },
	{ "cg1." FP ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123456789E", 0, "characters" },
	{ "cg1." FP ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", 1, NULL },
	{ "cg1." FP ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01235", 0, "32 bytes" },
	{ "cg1." FP ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123A", 1, NULL },
	{ "cg1." FP ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123B", 0, "32 bytes" },
	{ "", 0, "does not start" },
	{ "cg2." FP "." SEC, 0, "does not start" },
	{ "CG1." FP "." SEC, 0, "does not start" },
	{ "cg1." FP "." SEC "A", 0, "113 characters" },
	{ "cg1." FP "." SEC " ", 0, "characters" },
	{ " cg1." FP "." SEC, 0, "does not start" },
	{ "cg1.0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef." SEC, 0, "character 15" },
	{ "cg1.g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef." SEC, 0, "character 5" },
	{ "cg1." FP ":" SEC, 0, "character 69 must be '.'" },
	{ "cg1." FP ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", 0, "character 112 is not base64url" },
	{ "cg1." FP ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0, "characters" },
	{ "cg1." FP ".AAAAAAAAAAAAAAAAAAAAA/AAAAAAAAAAAAAAAAAAAAA", 0, "not base64url" },
	{ "cg1.", 0, "4 characters" },
};

static X509 *
make_cert(const char *cn)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, k, EVP_sha256());
	EVP_PKEY_free(k);
	return x;
}

int
main(void)
{
	unsigned char fp[AGENT_TOKEN_FP_LEN], want[AGENT_TOKEN_FP_LEN], got[AGENT_TOKEN_FP_LEN];
	STACK_OF(X509) *sk;
	char err[256], hex[65];
	size_t i;
	X509 *a, *b;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		err[0] = '\0';
		rc = agent_token_parse(cases[i].tok, fp, err, sizeof(err));
		CHECK((rc == 0) == cases[i].ok);
		if (cases[i].err != NULL && strstr(err, cases[i].err) == NULL)
			fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", i, err, cases[i].err);
		CHECK(cases[i].err == NULL || strstr(err, cases[i].err) != NULL);
		/* The secret part never appears in a message. */
		if (strlen(cases[i].tok) > 70)
			CHECK(strstr(err, cases[i].tok + 69) == NULL);
	}
	CHECK(agent_token_parse(NULL, fp, err, sizeof(err)) == -1);
	CHECK(agent_token_parse("cg1." FP "." SEC, fp, err, sizeof(err)) == 0);
	agent_token_hex(fp, hex);
	CHECK_STR(hex, FP);
	CHECK(fp[0] == 0x01 && fp[31] == 0xef);

	a = make_cert("a");
	b = make_cert("b");
	CHECK(agent_token_fingerprint(a, want) == 0);
	{
		unsigned char *der = NULL;
		unsigned int n = 0;
		int len = i2d_X509(a, &der);

		CHECK(EVP_Digest(der, (size_t)len, got, &n, EVP_sha256(), NULL) == 1);
		CHECK(n == 32 && memcmp(got, want, 32) == 0);
		OPENSSL_free(der);
	}
	CHECK(agent_token_fingerprint(NULL, got) == -1);
	sk = sk_X509_new_null();
	CHECK(agent_token_find(sk, want) == -1);
	sk_X509_push(sk, b);
	CHECK(agent_token_find(sk, want) == -1);
	sk_X509_push(sk, a);
	CHECK(agent_token_find(sk, want) == 1);
	CHECK(agent_token_find(NULL, want) == -1);
	sk_X509_pop_free(sk, X509_free);
	CHECK_DONE();
}
