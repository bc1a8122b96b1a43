/* caproto.c: the gateway <-> CA service codec. Round trips of every request and
 * reply, then tables of bodies each side must refuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/obj_mac.h>

#include "caproto.h"
#include "check.h"

static void
test_requests(void)
{
	struct caproto_req r, d;
	struct buf b;
	char err[256];

	memset(&r, 0, sizeof(r));
	r.op = CAPROTO_ENROLL;
	snprintf(r.token, sizeof(r.token), "cg1.abc.def");
	snprintf(r.agent, sizeof(r.agent), "bot-1");
	snprintf(r.peer, sizeof(r.peer), "[::1]:443");
	r.deadline_ms = 1764640000123LL;
	r.spki = (unsigned char *)"\x30\x03\x02\x01\x05";
	r.spki_len = 5;
	buf_init(&b);
	CHECK(caproto_req_encode(&r, &b, err, sizeof(err)) == 0);
	CHECK(b.len > 4 && caproto_frame_len((unsigned char *)b.p) == b.len - 4);
	CHECK(caproto_req_decode(b.p + 4, b.len - 4, &d, err, sizeof(err)) == 0);
	CHECK(d.op == CAPROTO_ENROLL);
	CHECK_STR(d.token, "cg1.abc.def");
	CHECK_STR(d.agent, "bot-1");
	CHECK_STR(d.peer, "[::1]:443");
	CHECK(d.deadline_ms == 1764640000123LL);
	CHECK(d.spki_len == 5 && memcmp(d.spki, r.spki, 5) == 0);
	caproto_req_clear(&d);
	CHECK(d.token[0] == '\0');

	buf_reset(&b);
	memset(&r, 0, sizeof(r));
	r.op = CAPROTO_OCSP;
	r.nids = 2;
	r.ids[0].md_nid = NID_sha1;
	r.ids[0].name_hash_len = r.ids[0].key_hash_len = 20;
	memset(r.ids[0].name_hash, 0xab, 20);
	snprintf(r.ids[0].serial, sizeof(r.ids[0].serial), "0A");
	r.ids[1].md_nid = NID_sha512;
	r.ids[1].name_hash_len = r.ids[1].key_hash_len = 64;
	snprintf(r.ids[1].serial, sizeof(r.ids[1].serial), "7f");
	r.has_nonce = 1;
	r.nonce_len = 3;
	memcpy(r.nonce, "\x04\x01\x00", 3);
	CHECK(caproto_req_encode(&r, &b, err, sizeof(err)) == 0);
	CHECK(caproto_req_decode(b.p + 4, b.len - 4, &d, err, sizeof(err)) == 0);
	CHECK(d.op == CAPROTO_OCSP && d.nids == 2 && d.ids[1].md_nid == NID_sha512);
	CHECK(memcmp(d.ids[0].name_hash, r.ids[0].name_hash, 20) == 0);
	CHECK_STR(d.ids[1].serial, "7F");
	CHECK(d.has_nonce && d.nonce_len == 3 && memcmp(d.nonce, "\x04\x01\x00", 3) == 0);
	caproto_req_clear(&d);

	/* What the other side would refuse is not even sent. */
	buf_reset(&b);
	memset(&r, 0, sizeof(r));
	r.op = CAPROTO_ENROLL;
	snprintf(r.token, sizeof(r.token), "with space");
	r.spki = (unsigned char *)"x";
	r.spki_len = 1;
	CHECK(caproto_req_encode(&r, &b, err, sizeof(err)) == -1);
	r.op = CAPROTO_OCSP;
	r.nids = 0;
	CHECK(caproto_req_encode(&r, &b, err, sizeof(err)) == -1);
	CHECK(b.len == 0);
	buf_free(&b);
}

struct bad { const char *json; const char *want; };

static const struct bad bad_reqs[] = {
	{ "", "JSON" },
	{ "{", "JSON" },
	{ "[]", "JSON object" },
	{ "{\"op\":\"ping\"}", "version" },
	{ "{\"v\":\"1\",\"op\":\"ping\"}", "version" },
	{ "{\"v\":1}", "op" },
	{ "{\"v\":1,\"op\":7}", "op" },
	{ "{\"v\":1,\"op\":\"sign\"}", "unknown op" },
	{ "{\"v\":1,\"op\":\"ping\",\"extra\":true}", "unknown field" },
	{ "{\"v\":1,\"op\":\"ping\",\"op\":\"ping\"}", "JSON" },
	{ "{\"v\":1,\"op\":\"enroll\",\"spki\":\"QQ==\"}", "token" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"\",\"spki\":\"QQ==\"}", "token" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"a\\u0000b\",\"spki\":\"QQ==\"}", "JSON" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"t\",\"spki\":\"QQ\"}", "spki" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"t\",\"spki\":\"QQ==\",\"agent\":\"-x\"}", "agent" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"t\",\"spki\":\"QQ==\",\"peer\":\"a b\"}", "peer" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"t\",\"spki\":\"QQ==\",\"deadline\":0}", "deadline" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"t\",\"spki\":\"QQ==\",\"deadline\":\"1\"}", "deadline" },
	{ "{\"v\":1,\"op\":\"renew\",\"cert\":\"QQ==\",\"spki\":\"QQ==\",\"deadline\":1.5}", "deadline" },
	{ "{\"v\":1,\"op\":\"renew\",\"cert\":\"QQ==\",\"spki\":\"QQ==\",\"deadline\":9007199254740993}", "deadline" },
	{ "{\"v\":1,\"op\":\"ocsp\",\"ids\":[],\"deadline\":5}", "unknown field" },
	{ "{\"v\":1,\"op\":\"enroll\",\"token\":\"t\",\"spki\":\"QQ==\",\"scopes\":[\"*\"]}", "unknown field" },
	{ "{\"v\":1,\"op\":\"renew\",\"spki\":\"QQ==\"}", "cert" },
	{ "{\"v\":1,\"op\":\"renew\",\"cert\":\"QQ==\",\"spki\":\"QQ==\",\"agent\":\"a\"}", "unknown field" },
	{ "{\"v\":1,\"op\":\"ocsp\"}", "ids" },
	{ "{\"v\":1,\"op\":\"ocsp\",\"ids\":[1]}", "object" },
	{ "{\"v\":1,\"op\":\"ocsp\",\"ids\":[{\"hash\":\"sha1\",\"name_hash\":\"00\",\"key_hash\":\"00\",\"serial\":\"1\"}]}", "hex" },
	{ "{\"v\":1,\"op\":\"ocsp\",\"ids\":[{\"hash\":\"sha1\",\"name_hash\":\"0000000000000000000000000000000000000000\",\"key_hash\":\"0000000000000000000000000000000000000000\",\"serial\":\"\"}]}", "serial" },
	{ "{\"v\":1,\"op\":\"ocsp\",\"ids\":[{\"hash\":\"sha1\",\"name_hash\":\"0000000000000000000000000000000000000000\",\"key_hash\":\"0000000000000000000000000000000000000000\",\"serial\":\"1\",\"x\":1}]}", "unknown field" },
	{ "{\"v\":1,\"op\":\"ocsp\",\"ids\":[{\"hash\":\"sha1\",\"name_hash\":\"0000000000000000000000000000000000000000\",\"key_hash\":\"0000000000000000000000000000000000000000\",\"serial\":\"1\"}],\"nonce\":\"\"}", "nonce" },
};

static const struct bad bad_replies[] = {
	{ "{}", "ok" },
	{ "{\"ok\":1}", "ok" },
	{ "{\"ok\":false,\"error\":\"teapot\",\"message\":\"x\"}", "error kind" },
	{ "{\"ok\":false,\"error\":\"rate_limited\",\"message\":\"x\",\"retry_after\":0}", "retry_after" },
	{ "{\"ok\":false,\"error\":\"internal\",\"message\":\"x\",\"cert\":\"QQ==\"}", "unknown field" },
	{ "{\"ok\":true,\"cert\":\"QQ==\"}", "serial" },
	{ "{\"ok\":true,\"cert\":\"QQ==\",\"serial\":\"1\",\"agent\":\"a\",\"not_after\":\"t\"}", "malformed" },
	{ "{\"ok\":true,\"ca\":\"short\",\"pid\":1}", "malformed" },
	{ "{\"ok\":true,\"ocsp\":\"%%\"}", "ocsp" },
	{ "{\"ok\":true,\"issued_for\":\"x\"}", "unknown field" },
};

static void
test_refusals(void)
{
	struct caproto_req r;
	struct caproto_reply rep;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
		err[0] = '\0';
		if (caproto_req_decode(bad_reqs[i].json, strlen(bad_reqs[i].json), &r, err,
		    sizeof(err)) != -1 || strstr(err, bad_reqs[i].want) == NULL) {
			fprintf(stderr, "request %s: err '%s', want '%s'\n", bad_reqs[i].json, err,
			    bad_reqs[i].want);
			CHECK(0);
		} else
			CHECK(1);
	}
	for (i = 0; i < sizeof(bad_replies) / sizeof(bad_replies[0]); i++) {
		err[0] = '\0';
		if (caproto_reply_decode(bad_replies[i].json, strlen(bad_replies[i].json), &rep, err,
		    sizeof(err)) != -1 || strstr(err, bad_replies[i].want) == NULL) {
			fprintf(stderr, "reply %s: err '%s', want '%s'\n", bad_replies[i].json, err,
			    bad_replies[i].want);
			CHECK(0);
		} else
			CHECK(1);
	}
}

static void
test_replies(void)
{
	struct caproto_reply r, d;
	struct buf b;
	char err[256];

	memset(&r, 0, sizeof(r));
	snprintf(r.serial, sizeof(r.serial), "0A1B");
	snprintf(r.agent, sizeof(r.agent), "bot");
	snprintf(r.not_after, sizeof(r.not_after), "2030-01-01T00:00:00Z");
	r.cert = (unsigned char *)"\x30\x00";
	r.cert_len = 2;
	r.chain[0] = (unsigned char *)"\x30\x01\x00";
	r.chain_len[0] = 3;
	r.nchain = 1;
	buf_init(&b);
	CHECK(caproto_reply_encode(&r, &b) == 0);
	CHECK(caproto_reply_decode(b.p + 4, b.len - 4, &d, err, sizeof(err)) == 0);
	CHECK(d.err == CAPROTO_OK && d.cert_len == 2 && d.nchain == 1 && d.chain_len[0] == 3);
	CHECK_STR(d.serial, "0A1B");
	CHECK_STR(d.not_after, "2030-01-01T00:00:00Z");
	caproto_reply_clear(&d);
	buf_reset(&b);
	memset(&r, 0, sizeof(r));
	caproto_reply_error(&r, CAPROTO_E_RATE_LIMITED, "slow down %d", 3);
	r.retry_after = 42;
	CHECK(caproto_reply_encode(&r, &b) == 0);
	CHECK(caproto_reply_decode(b.p + 4, b.len - 4, &d, err, sizeof(err)) == 0);
	CHECK(d.err == CAPROTO_E_RATE_LIMITED && d.retry_after == 42);
	CHECK_STR(d.message, "slow down 3");
	buf_free(&b);
	CHECK_STR(caproto_err_name(CAPROTO_E_FORBIDDEN), "forbidden");
	CHECK(caproto_err_name((enum caproto_err)99) == NULL);
	CHECK(caproto_frame_len((const unsigned char *)"\0\0\0\0") == 0);
	CHECK(caproto_frame_len((const unsigned char *)"\0\1\0\0") == 65536);
	CHECK(caproto_frame_len((const unsigned char *)"\0\1\0\1") == 0);
}

int
main(void)
{
	test_requests();
	test_refusals();
	test_replies();
	CHECK_DONE();
}
