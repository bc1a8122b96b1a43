/* catoken.c, catime.c durations, base64.c: the enrollment token's form, its store
 * record, lifetimes as operators type them, RFC 4648 vectors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base64.h"
#include "catime.h"
#include "catoken.h"
#include "check.h"
#include "text.h"

#define FP "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEYHEX "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static void
test_token(void)
{
	unsigned char h1[32], h2[32], want[32];
	char tok[CATOKEN_LEN + 1], fp[65], err[256], id[17], bad[CATOKEN_LEN + 8];
	unsigned int n;

	CHECK(catoken_make(FP, tok, sizeof(tok), h1) == 0);
	CHECK(strlen(tok) == CATOKEN_LEN && strncmp(tok, "cg1." FP ".", 69) == 0);
	CHECK(catoken_parse(tok, fp, h2, err, sizeof(err)) == 0);
	CHECK_STR(fp, FP);
	CHECK(memcmp(h1, h2, 32) == 0);
	/* The hash is SHA-256 of the 43 characters of the secret. */
	EVP_Digest(tok + 69, 43, want, &n, EVP_sha256(), NULL);
	CHECK(memcmp(h1, want, 32) == 0);
	catoken_id(h1, id);
	CHECK(strlen(id) == 16);
	CHECK(catoken_make(FP, bad, sizeof(bad), h2) == 0 && strcmp(bad, tok) != 0);
	/* Malformed tokens. */
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[0] = 'C';
	CHECK(catoken_parse(bad, fp, h2, err, sizeof(err)) == -1);
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[10] = 'A';	/* uppercase hex */
	CHECK(catoken_parse(bad, fp, h2, err, sizeof(err)) == -1 && strstr(err, "fingerprint"));
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[80] = '+';	/* not base64url */
	CHECK(catoken_parse(bad, fp, h2, err, sizeof(err)) == -1 && strstr(err, "secret"));
	snprintf(bad, sizeof(bad), "%sA", tok);
	CHECK(catoken_parse(bad, fp, h2, err, sizeof(err)) == -1);
	snprintf(bad, sizeof(bad), "%s", tok);
	bad[CATOKEN_LEN - 1] = 'B';	/* non-zero trailing bits: not canonical */
	CHECK(catoken_parse(bad, fp, h2, err, sizeof(err)) == -1);
	CHECK(catoken_parse("", fp, h2, err, sizeof(err)) == -1);
	CHECK(catoken_make("short", tok, sizeof(tok), h1) == -1);
}

static void
test_store(void)
{
	char dir[] = "/tmp/test_catoken.XXXXXX", err[256], sub[64];
	const char *roles[] = { "guest" };
	struct catoken_rec r = { 0 }, g;
	unsigned char hash[32];
	struct stat st;
	json_t *o;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof(sub), "%s/tokens", dir);
	memset(hash, 7, sizeof(hash));
	snprintf(r.agent, sizeof(r.agent), "bot");
	r.roles = (char **)roles;
	r.nroles = 1;
	r.set_roles = 1;
	r.lifetime_s = 3600;
	r.created = 1000;
	r.expires = 2000;
	CHECK(catoken_get(sub, hash, &g, err, sizeof(err)) == 1);
	CHECK(catoken_put(sub, hash, &r, err, sizeof(err)) == 0);
	CHECK(stat(sub, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK(catoken_put(sub, hash, &r, err, sizeof(err)) == -1);	/* exists */
	CHECK(catoken_get(sub, hash, &g, err, sizeof(err)) == 0);
	CHECK_STR(g.agent, "bot");
	CHECK(g.set_roles && g.nroles == 1 && strcmp(g.roles[0], "guest") == 0 && !g.set_scopes);
	CHECK(g.used_at == 0 && g.expires == 2000);
	g.used_at = 1500;
	snprintf(g.serial, sizeof(g.serial), "ABCD");
	CHECK(catoken_update(sub, hash, &g, err, sizeof(err)) == 0);
	catoken_rec_free(&g);
	CHECK(catoken_get(sub, hash, &g, err, sizeof(err)) == 0 && g.used_at == 1500);
	CHECK_STR(g.serial, "ABCD");
	CHECK(g.key[0] == '\0');	/* records spent before key hashes existed */
	snprintf(g.key, sizeof(g.key), "%s", KEYHEX);
	CHECK(catoken_update(sub, hash, &g, err, sizeof(err)) == 0);
	catoken_rec_free(&g);
	CHECK(catoken_get(sub, hash, &g, err, sizeof(err)) == 0 && g.used_at == 1500);
	CHECK_STR(g.key, KEYHEX);
	catoken_rec_free(&g);
	/* A key hash is 64 lowercase hex and belongs to a used token only. */
	o = json_pack("{s:s, s:i, s:i, s:i, s:s}", "agent", "bot", "lifetime_s", 60, "created", 1,
	    "expires", 2, "key", KEYHEX);
	CHECK(catoken_rec_parse(o, &g, err, sizeof(err)) == -1);
	json_decref(o);
	o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:s, s:s}", "agent", "bot", "lifetime_s", 60,
	    "created", 1, "expires", 2, "used_at", 1, "serial", "AB", "key", "ABCD");
	CHECK(catoken_rec_parse(o, &g, err, sizeof(err)) == -1);
	json_decref(o);
	o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:s, s:s}", "agent", "bot", "lifetime_s", 60,
	    "created", 1, "expires", 2, "used_at", 1, "serial", "AB", "key",
	    KEYHEX "0");
	CHECK(catoken_rec_parse(o, &g, err, sizeof(err)) == -1);
	json_decref(o);
	/* Records that are not what the CA writes are refused. */
	o = json_pack("{s:s, s:i, s:i, s:i, s:s}", "agent", "bot", "lifetime_s", 60, "created", 1,
	    "expires", 2, "role", "admin");
	CHECK(catoken_rec_parse(o, &g, err, sizeof(err)) == -1);
	json_decref(o);
	o = json_pack("{s:s, s:i, s:i, s:i, s:[s]}", "agent", "bot", "lifetime_s", 60, "created", 1,
	    "expires", 2, "scopes", "bogus");
	CHECK(catoken_rec_parse(o, &g, err, sizeof(err)) == -1);
	json_decref(o);
	o = json_pack("{s:s, s:i, s:i, s:i}", "agent", "../x", "lifetime_s", 60, "created", 1,
	    "expires", 2);
	CHECK(catoken_rec_parse(o, &g, err, sizeof(err)) == -1);
	json_decref(o);
	/* Pruning: expired more than keep_s ago. */
	CHECK(catoken_prune(sub, 2000 + 100, 200) == 0);
	CHECK(catoken_prune(sub, 2000 + 300, 200) == 1);
	CHECK(catoken_get(sub, hash, &g, err, sizeof(err)) == 1);
	rmdir(sub);
	rmdir(dir);
}

/* A spent token hands its certificate out again only to the same key, before the
 * token's own expiry, and never when unspent or spent before key hashes existed. */
static void
test_redeliverable(void)
{
	static const unsigned char spki[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	struct catoken_rec r = { 0 };
	char hex[65], want[65];
	unsigned char h[32];
	unsigned int n = 0;

	CHECK(catoken_key_hash(spki, sizeof(spki), hex) == 0 && strlen(hex) == 64);
	CHECK(EVP_Digest(spki, sizeof(spki), h, &n, EVP_sha256(), NULL) == 1);
	text_hex(h, 32, want);
	CHECK_STR(hex, want);
	r.expires = 2000;
	CHECK(!catoken_redeliverable(&r, hex, 1000));		/* unused */
	r.used_at = 1500;
	CHECK(!catoken_redeliverable(&r, hex, 1000));		/* no key recorded */
	snprintf(r.key, sizeof(r.key), "%s", hex);
	CHECK(catoken_redeliverable(&r, hex, 1999));
	CHECK(!catoken_redeliverable(&r, hex, 2000));		/* the token expired */
	CHECK(!catoken_redeliverable(&r, KEYHEX, 1000));	/* another key */
	CHECK(!catoken_redeliverable(&r, NULL, 1000));
}

struct dur { const char *s; long min, max, want; };

static const struct dur durs[] = {
	{ "2m", 120, 86400, 120 }, { "15m", 60, 86400, 900 }, { "24h", 120, 86400 * 365, 86400 },
	{ "7d", 120, 86400 * 365, 604800 }, { "365d", 120, 86400 * 365, 31536000 },
	{ "1m", 120, 86400, -1 }, { "366d", 120, 86400 * 365, -1 }, { "10", 1, 100, -1 },
	{ "10s", 1, 100, -1 }, { "m", 1, 100, -1 }, { "-5m", 1, 10000, -1 }, { "1.5h", 1, 1e9, -1 },
	{ " 5m", 1, 10000, -1 }, { "5M", 1, 10000, -1 }, { "999999999999d", 1, 1e9, -1 },
	{ "", 1, 10, -1 }, { "0m", 0, 10, 0 },
};

static void
test_durations(void)
{
	char err[256], buf[16];
	size_t i;
	long v;

	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		v = -1;
		if (catime_duration(durs[i].s, durs[i].min, durs[i].max, &v, err, sizeof(err)) == -1)
			v = -1;
		if (v != durs[i].want) {
			fprintf(stderr, "duration '%s': %ld, want %ld\n", durs[i].s, v, durs[i].want);
			CHECK(0);
		} else
			CHECK(1);
	}
	CHECK(catime_duration("1m", 120, 600, &v, err, sizeof(err)) == -1 &&
	    strstr(err, "at least 2m and at most 10m"));
	catime_left(0, buf, sizeof(buf));
	CHECK_STR(buf, "-");
	catime_left(30, buf, sizeof(buf));
	CHECK_STR(buf, "<1m");
	catime_left(3599, buf, sizeof(buf));
	CHECK_STR(buf, "59m");
	catime_left(5 * 3600 - 60, buf, sizeof(buf));
	CHECK_STR(buf, "4h59m");
	catime_left(2 * 86400 + 7200, buf, sizeof(buf));
	CHECK_STR(buf, "2d2h");
	catime_duration_str(5400, buf, sizeof(buf));
	CHECK_STR(buf, "90m");
	catime_duration_str(86400, buf, sizeof(buf));
	CHECK_STR(buf, "1d");
}

static void
test_base64(void)
{
	static const struct { const char *in, *std, *url; } v[] = {	/* RFC 4648 section 10 */
		{ "", "", "" }, { "f", "Zg==", "Zg" }, { "fo", "Zm8=", "Zm8" }, { "foo", "Zm9v", "Zm9v" },
		{ "foob", "Zm9vYg==", "Zm9vYg" }, { "fooba", "Zm9vYmE=", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy", "Zm9vYmFy" }, { "\xfb\xff", "+/8=", "-_8" },
	};
	static const char *const bad[] = { "Zg=", "Zg===", "Z", "Zm9v=", "Zh==", "Zg==Zg==", "Zm 9v",
	    "-_8=", NULL };
	struct buf b;
	size_t i;

	buf_init(&b);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		buf_reset(&b);
		CHECK(base64_encode(&b, v[i].in, strlen(v[i].in), 0, 0) == 0);
		CHECK_STR(buf_str(&b), v[i].std);
		CHECK(base64_len(strlen(v[i].in), 0) == strlen(v[i].std));
		buf_reset(&b);
		CHECK(base64_encode(&b, v[i].in, strlen(v[i].in), BASE64_URL, 0) == 0);
		CHECK_STR(buf_str(&b), v[i].url);
		buf_reset(&b);
		CHECK(base64_decode(&b, v[i].std, strlen(v[i].std), 0) == 0);
		CHECK(b.len == strlen(v[i].in) && memcmp(buf_str(&b), v[i].in, b.len) == 0);
		buf_reset(&b);
		CHECK(base64_decode(&b, v[i].url, strlen(v[i].url), BASE64_URL) == 0);
		CHECK(b.len == strlen(v[i].in));
	}
	for (i = 0; bad[i]; i++) {
		buf_reset(&b);
		CHECK(base64_decode(&b, bad[i], strlen(bad[i]), 0) == -1);
	}
	buf_reset(&b);
	CHECK(base64_decode(&b, " Zm9v\r\nYmFy\n", 12, BASE64_WS) == 0);
	CHECK_STR(buf_str(&b), "foobar");
	buf_reset(&b);
	CHECK(base64_encode(&b, "foobarfoobar", 12, 0, 8) == 0);
	CHECK_STR(buf_str(&b), "Zm9vYmFy\nZm9vYmFy\n");
	buf_free(&b);
}

int
main(void)
{
	test_token();
	test_store();
	test_redeliverable();
	test_durations();
	test_base64();
	CHECK_DONE();
}
