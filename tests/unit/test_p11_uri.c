/* RFC 7512 URI parsing, redaction and PIN reading (no token needed). */
#include "p11.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int
parse_ok(const char *s, struct p11_uri *u)
{
	char err[256];
	int r;

	r = p11_uri_parse(s, u, err, sizeof(err));
	if (r != 0)
		fprintf(stderr, "unexpected parse error for %s: %s\n", s, err);
	return r == 0;
}

/* Expects a parse error whose message contains want (and never leak). */
static void
parse_bad(const char *s, const char *want, const char *never)
{
	struct p11_uri u;
	char err[256];

	CHECK(p11_uri_parse(s, &u, err, sizeof(err)) == -1);
	if (want != NULL && strstr(err, want) == NULL) {
		fprintf(stderr, "error for %s was \"%s\", expected to contain \"%s\"\n",
		    s, err, want);
		CHECK(0);
	}
	if (never != NULL)
		CHECK(strstr(err, never) == NULL);
	p11_uri_free(&u);
}

static void
test_valid(void)
{
	struct p11_uri u;

	CHECK(parse_ok("pkcs11:token=certgate;object=certgate-server;type=private", &u));
	CHECK_STR(u.token, "certgate");
	CHECK_STR(u.object, "certgate-server");
	CHECK_STR(u.type, "private");
	CHECK(u.id == NULL && u.slot_id == -1 && u.pin_value == NULL);
	p11_uri_free(&u);

	/* Scheme is case-insensitive; empty path is fine. */
	CHECK(parse_ok("PKCS11:", &u));
	CHECK(u.token == NULL && u.object == NULL);
	p11_uri_free(&u);
	CHECK(parse_ok("Pkcs11:token=a", &u));
	CHECK_STR(u.token, "a");
	p11_uri_free(&u);

	CHECK(parse_ok("pkcs11:token=My%20Token;object=key%3b1;manufacturer=Soft%2FHSM;"
	    "model=m;serial=0a1b;slot-id=7;id=%01%02%ff%00", &u));
	CHECK_STR(u.token, "My Token");
	CHECK_STR(u.object, "key;1");
	CHECK_STR(u.manufacturer, "Soft/HSM");
	CHECK_STR(u.model, "m");
	CHECK_STR(u.serial, "0a1b");
	CHECK(u.slot_id == 7);
	CHECK(u.id_len == 4 && u.id && memcmp(u.id, "\x01\x02\xff\x00", 4) == 0);
	p11_uri_free(&u);

	CHECK(parse_ok("pkcs11:token=t;object=o?module-path=/usr/lib/softhsm/"
	    "libsofthsm2.so&pin-source=file:/tmp/pin%20file&pin-value=12%2634", &u));
	CHECK_STR(u.module_path, "/usr/lib/softhsm/libsofthsm2.so");
	CHECK_STR(u.pin_source, "file:/tmp/pin file");
	CHECK_STR(u.pin_value, "12&34");
	CHECK_STR(u.object, "o");
	p11_uri_free(&u);

	CHECK(parse_ok("pkcs11:?module-name=softhsm2", &u));
	CHECK_STR(u.module_name, "softhsm2");
	p11_uri_free(&u);

	/* Query attributes in the path are accepted (engine_pkcs11 does too). */
	CHECK(parse_ok("pkcs11:token=t;pin-value=1234", &u));
	CHECK_STR(u.pin_value, "1234");
	p11_uri_free(&u);

	CHECK(parse_ok("pkcs11:id=", &u));
	CHECK(u.id != NULL && u.id_len == 0);
	p11_uri_free(&u);

	CHECK(p11_is_uri("pkcs11:x"));
	CHECK(p11_is_uri("PKCS11:"));
	CHECK(!p11_is_uri("/etc/key.pem"));
	CHECK(!p11_is_uri("pkcs11"));
	CHECK(!p11_is_uri(NULL));
}

static void
test_invalid(void)
{
	parse_bad("pkcs11:token=t;color=blue", "'color'", NULL);
	parse_bad("pkcs11:token=t?frobnicate=1", "'frobnicate'", NULL);
	parse_bad("pkcs11:token=t;token=u", "duplicate attribute 'token'", NULL);
	parse_bad("pkcs11:object=a?pin-value=1&pin-value=2", "duplicate attribute 'pin-value'", NULL);
	parse_bad("pkcs11:token=a%zz", "'token'", NULL);
	parse_bad("pkcs11:object=a%4", "'object'", NULL);
	parse_bad("pkcs11:id=%", "'id'", NULL);
	parse_bad("pkcs11:token=t?pin-value=secret%zz", "'pin-value'", "secret");
	parse_bad("pkcs11:token=t?pin-value=%2", "'pin-value'", NULL);
	parse_bad("pkcs11:type=banana", "'type'", NULL);
	parse_bad("pkcs11:slot-id=abc", "'slot-id'", NULL);
	parse_bad("pkcs11:slot-id=-1", "'slot-id'", NULL);
	parse_bad("pkcs11:token", "'token'", NULL);
	parse_bad("pkcs11:token=a%00b", "NUL", NULL);
	parse_bad("file:/etc/key.pem", "pkcs11:", NULL);
	parse_bad("pkcs12:token=t", "pkcs11:", NULL);
	parse_bad("", "pkcs11:", NULL);
	parse_bad("pkcs11:pinvalue=1234", "'pinvalue'", "1234");
}

static void
test_redact(void)
{
	char *r;

	r = p11_uri_redact("pkcs11:token=t;object=o?pin-value=123456&module-path=/m.so");
	CHECK_STR(r, "pkcs11:token=t;object=o?pin-value=***&module-path=/m.so");
	free(r);
	r = p11_uri_redact("pkcs11:token=t;PIN-VALUE=9876");
	CHECK_STR(r, "pkcs11:token=t;PIN-VALUE=***");
	free(r);
	r = p11_uri_redact("pkcs11:pin-value=;pin-value=;pin-value=");
	CHECK_STR(r, "pkcs11:pin-value=***;pin-value=***;pin-value=***");
	free(r);
	r = p11_uri_redact("pkcs11:token=t;object=o");
	CHECK_STR(r, "pkcs11:token=t;object=o");
	free(r);
}

static void
test_secret(void)
{
	char dir[] = "/tmp/p11uriXXXXXX", path[256], err[256], *s = NULL;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/pin", dir);

	f = fopen(path, "w");
	fputs("1234\r\nsecond line\n", f);
	fclose(f);
	chmod(path, 0600);
	CHECK(p11_read_secret(path, NULL, &s, err, sizeof(err)) == 0);
	CHECK_STR(s, "1234");
	p11_secret_free(s);

	f = fopen(path, "w");
	fputs("abcd", f);
	fclose(f);
	CHECK(p11_read_secret(path, "IGNORED", &s, err, sizeof(err)) == 0);
	CHECK_STR(s, "abcd");
	p11_secret_free(s);

	f = fopen(path, "w");
	fputs("\n", f);
	fclose(f);
	CHECK(p11_read_secret(path, NULL, &s, err, sizeof(err)) == -1);
	CHECK(s == NULL && strstr(err, "empty") != NULL);

	setenv("P11_TEST_PIN", "5678\n", 1);
	CHECK(p11_read_secret(NULL, "P11_TEST_PIN", &s, err, sizeof(err)) == 0);
	CHECK_STR(s, "5678");
	p11_secret_free(s);
	CHECK(p11_read_secret("", "P11_TEST_PIN", &s, err, sizeof(err)) == 0);
	p11_secret_free(s);

	unsetenv("P11_TEST_PIN_MISSING");
	CHECK(p11_read_secret(NULL, "P11_TEST_PIN_MISSING", &s, err, sizeof(err)) == -1);
	CHECK(strstr(err, "P11_TEST_PIN_MISSING") != NULL);

	snprintf(path, sizeof(path), "%s/nonexistent", dir);
	CHECK(p11_read_secret(path, NULL, &s, err, sizeof(err)) == -1);
	CHECK(strstr(err, "nonexistent") != NULL && strstr(err, "No such file") != NULL);

	CHECK(p11_read_secret(NULL, NULL, &s, err, sizeof(err)) == -1);
	CHECK(strstr(err, "no PIN source") != NULL);

	snprintf(path, sizeof(path), "%s/pin", dir);
	unlink(path);
	rmdir(dir);
}

static void
test_load_errors(void)
{
	struct p11_defaults d = { .module = "/usr/lib/softhsm/libsofthsm2.so" };
	struct p11_defaults none = { 0 };
	EVP_PKEY *pk = (EVP_PKEY *)1;

	/* No token label anywhere: refused before any module is loaded. */
	CHECK(p11_load_private_key(&d, "pkcs11:object=k;type=private", 0, &pk) == -1);
	CHECK(pk == NULL);
	/* No module anywhere. */
	CHECK(p11_load_private_key(&none, "pkcs11:token=t;object=k", 0, &pk) == -1);
	CHECK(p11_load_private_key(&d, "pkcs11:token=t;bogus=1", 0, &pk) == -1);
	CHECK(p11_load_private_key(&d, "pkcs11:token=t;object=k;type=cert", 0, &pk) == -1);
	CHECK(p11_generate_ec_key(&none, "pkcs11:token=t", &pk) == -1);
	CHECK(p11_key_exists(&none, "pkcs11:object=k") == -1);
	/* Nothing open: healthy (nothing to check) and shutdown is a no-op. */
	CHECK(p11_health_check() == 1);
	p11_shutdown();
}

static void
test_rv_str(void)
{
	CHECK_STR(p11_rv_str(0xa0), "CKR_PIN_INCORRECT");
	CHECK_STR(p11_rv_str(0xe0), "CKR_TOKEN_NOT_PRESENT");
	CHECK_STR(p11_rv_str(0x30), "CKR_DEVICE_ERROR");
	CHECK_STR(p11_rv_str(0xb3), "CKR_SESSION_HANDLE_INVALID");
	CHECK_STR(p11_rv_str(0x70), "CKR_MECHANISM_INVALID");
	CHECK_STR(p11_rv_str(0x82), "CKR_OBJECT_HANDLE_INVALID");
	CHECK_STR(p11_rv_str(0), "CKR_OK");
	CHECK_STR(p11_rv_str(0x12345), "CKR_0x12345");
}

int
main(void)
{
	test_valid();
	test_invalid();
	test_redact();
	test_secret();
	test_load_errors();
	test_rv_str();
	CHECK_DONE();
}
