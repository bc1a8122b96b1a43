/* agent_key.c: key URIs the user may give, labels of renewed token keys, PEM round
 * trip of a file key. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "agent_key.h"
#include "check.h"
#include "file.h"

struct uri_case {
	const char *uri;
	int ok;
	const char *err;
};

static const struct uri_case uris[] = {
	{ "pkcs11:token=agent;object=bot", 1, NULL },
	{ "pkcs11:token=agent;object=bot;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/x/pin", 1, NULL },
	{ "pkcs11:token=agent;object=bot?pin-value=1234", 0, "pin-value is refused" },
	{ "pkcs11:object=bot", 0, "token=" },
	{ "pkcs11:token=agent", 0, "object=" },
	{ "pkcs11:token=agent;object=", 0, "object=" },
	{ "pkcs11:token=agent;object=bot;type=cert", 0, "private key" },
	{ "pkcs11:token=agent;object=bot;bogus=1", 0, "key URI" },
	{ "/path/key.pem", 0, "PKCS#11 URI" },
	{ "", 0, "PKCS#11 URI" },
};

struct next_case {
	const char *in, *want;
};

/* now = 2026-01-02T03:04:05Z */
static const struct next_case nexts[] = {
	{ "pkcs11:token=agent;object=bot", "pkcs11:token=agent;object=bot-20260102T030405Z" },
	{ "pkcs11:token=agent;object=bot-20250101T000000Z", "pkcs11:token=agent;object=bot-20260102T030405Z" },
	{ "pkcs11:token=agent;object=bot-2025010T000000Z", "pkcs11:token=agent;object=bot-2025010T000000Z-20260102T030405Z" },
	{ "pkcs11:object=bot;token=agent;id=%01%02", "pkcs11:object=bot-20260102T030405Z;token=agent" },
	{ "pkcs11:id=%01;token=a;object=my%20key?module-path=/m.so&pin-source=file:/p",
	  "pkcs11:token=a;object=my%20key-20260102T030405Z?module-path=/m.so&pin-source=file:/p" },
	{ "PKCS11:token=a;;object=b", "PKCS11:token=a;object=b-20260102T030405Z" },
	{ "pkcs11:token=a", NULL },
	{ "not a uri", NULL },
};

/* 1 when pem is one unencrypted PKCS#8 PEM block (OpenSSL's PEM_STRING_PKCS8INF
 * label) holding the same key as want. */
static int
test_pem_pkcs8_of(const struct buf *pem, EVP_PKEY *want)
{
	BIO *b;
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	long len = 0;
	EVP_PKEY *got = NULL;
	int ok = 0;

	if ((b = BIO_new_mem_buf(pem->p, (int)pem->len)) == NULL)
		return 0;
	if (PEM_read_bio(b, &name, &header, &der, &len) == 1 &&
	    strcmp(name, PEM_STRING_PKCS8INF) == 0 && header[0] == '\0') {
		p = der;
		got = d2i_AutoPrivateKey(NULL, &p, len);
		ok = got != NULL && EVP_PKEY_eq(got, want) == 1;
	}
	EVP_PKEY_free(got);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_clear_free(der, (size_t)len);
	BIO_free(b);
	return ok;
}

int
main(void)
{
	EVP_PKEY *k = NULL, *k2 = NULL;
	char err[300], path[] = "/tmp/test_agent_key.XXXXXX";
	struct buf pem;
	size_t i;
	int fd;

	for (i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		int rc = agent_key_check_uri(uris[i].uri, err, sizeof(err));

		if ((rc == 0) != uris[i].ok)
			fprintf(stderr, "uri case %zu: %s\n", i, err);
		CHECK((rc == 0) == uris[i].ok);
		if (uris[i].err != NULL)
			CHECK(strstr(err, uris[i].err) != NULL);
		CHECK(strstr(err, "1234") == NULL);
	}
	for (i = 0; i < sizeof(nexts) / sizeof(nexts[0]); i++) {
		char *got = agent_key_uri_next(nexts[i].in, 1767323045);

		if (nexts[i].want == NULL)
			CHECK(got == NULL);
		else
			CHECK_STR(got, nexts[i].want);
		free(got);
	}

	CHECK(agent_key_generate_file(&k) == 0);
	buf_init(&pem);
	CHECK(agent_key_pem(k, &pem) == 0);
	/* unencrypted PKCS#8 PEM, read back from memory as the same key */
	CHECK(test_pem_pkcs8_of(&pem, k));
	CHECK((fd = mkstemp(path)) >= 0);
	close(fd);
	CHECK(file_write_atomic(path, pem.p, pem.len, 0600) == 0);
	CHECK(agent_key_load_pem(path, &k2, err, sizeof(err)) == 0);
	CHECK(k2 != NULL && EVP_PKEY_eq(k, k2) == 1);
	EVP_PKEY_free(k2);
	CHECK(file_write_atomic(path, "junk", 4, 0600) == 0);
	CHECK(agent_key_load_pem(path, &k2, err, sizeof(err)) == -1);
	CHECK(strstr(err, "not a PEM private key") != NULL);
	unlink(path);
	CHECK(agent_key_load_pem(path, &k2, err, sizeof(err)) == -1);
	buf_wipe(&pem);
	EVP_PKEY_free(k);
	CHECK_DONE();
}
