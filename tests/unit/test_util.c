/* The shared utility modules: buf.h, file.h, hash.h, jsonl.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "file.h"
#include "hash.h"
#include "text.h"
#include "jsonl.h"

static void
test_buf(void)
{
	struct buf b;
	char stack[8], *s;
	size_t len;
	int i;

	buf_init(&b);
	CHECK_STR(buf_str(&b), "");
	CHECK(buf_adds(&b, "abc") == 0 && b.len == 3);
	CHECK(buf_addf(&b, "-%d-", 42) == 0);
	CHECK(buf_addu(&b, 0) == 0 && buf_addu(&b, 18446744073709551615ull) == 0);
	CHECK_STR(buf_str(&b), "abc-42-018446744073709551615");
	buf_free(&b);

	/* stack storage moves to the heap when outgrown, contents kept */
	buf_init_stack(&b, stack, sizeof(stack));
	CHECK(buf_adds(&b, "1234567") == 0 && !b.heap);
	CHECK(buf_adds(&b, "89") == 0 && b.heap);
	CHECK_STR(buf_str(&b), "123456789");
	s = buf_detach(&b, &len);
	CHECK(s != NULL && len == 9 && strcmp(s, "123456789") == 0);
	free(s);
	buf_init_stack(&b, stack, sizeof(stack));
	CHECK(buf_adds(&b, "xy") == 0);
	s = buf_detach(&b, &len);    /* a copy: the stack storage is the caller's */
	CHECK(s != NULL && s != stack && strcmp(s, "xy") == 0 && len == 2);
	free(s);

	/* max: errors are sticky */
	buf_init(&b);
	b.max = 10;
	for (i = 0; i < 3; i++)
		(void)buf_adds(&b, "abcd");
	CHECK(buf_failed(&b) && b.len == 8);
	CHECK(buf_adds(&b, "") == -1);
	CHECK(buf_detach(&b, NULL) == NULL);
	buf_reset(&b);
	CHECK(!buf_failed(&b));
	buf_free(&b);

	buf_init(&b);
	CHECK(buf_add(&b, "s\0cret", 6) == 0 && b.len == 6);
	buf_wipe(&b);
	CHECK(b.p == NULL && b.len == 0);
}

static void
test_file(const char *dir)
{
	char path[512], *out = NULL;
	size_t len = 0;
	struct stat sb;

	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	CHECK(file_mkdirs(path, 0700) == 0);
	CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
	CHECK(file_mkdirs(path, 0700) == 0);     /* idempotent */
	snprintf(path, sizeof(path), "%s/a/f.txt", dir);
	CHECK(file_write_atomic(path, "hello\n", 6, 0640) == 0);
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0640);
	CHECK(file_read(path, 0, &out, &len) == 0 && len == 6 && strcmp(out, "hello\n") == 0);
	free(out);
	CHECK(file_read(path, 5, &out, &len) == -1 && errno == EFBIG && out == NULL);
	CHECK(file_write_atomic(path, "", 0, 0600) == 0);
	CHECK(file_read(path, 0, &out, &len) == 0 && len == 0 && out[0] == '\0');
	free(out);
	snprintf(path, sizeof(path), "%s/missing", dir);
	CHECK(file_read(path, 0, &out, &len) == -1 && errno == ENOENT);
	snprintf(path, sizeof(path), "%s/nodir/x", dir);
	CHECK(file_write_atomic(path, "x", 1, 0600) == -1 && errno == ENOENT);
	/* a FIFO (as /dev/null or /dev/stdout would be) is written to, not replaced */
	{
		char got[8] = { 0 };
		int rfd;

		snprintf(path, sizeof(path), "%s/fifo", dir);
		CHECK(mkfifo(path, 0600) == 0);
		rfd = open(path, O_RDONLY | O_NONBLOCK);
		CHECK(rfd != -1);
		CHECK(file_write_atomic(path, "out", 3, 0600) == 0);
		CHECK(stat(path, &sb) == 0 && S_ISFIFO(sb.st_mode));
		CHECK(read(rfd, got, sizeof(got)) == 3 && strcmp(got, "out") == 0);
		close(rfd);
		snprintf(path, sizeof(path), "%s/a", dir);
		CHECK(file_write_atomic(path, "x", 1, 0600) == -1 && errno == EISDIR);
	}
	/* staged replacements: nothing visible before the commit, both after it; a
	 * discarded stage leaves nothing behind */
	{
		struct file_stage st[3], *sp[2];
		char p2[512];

		memset(st, 0, sizeof(st));
		snprintf(path, sizeof(path), "%s/a/s1", dir);
		snprintf(p2, sizeof(p2), "%s/a/f.txt", dir);
		CHECK(file_stage_write(&st[0], path, "one", 3, 0644) == 0);
		CHECK(file_stage_write(&st[1], p2, "two", 3, 0600) == 0);
		CHECK(access(path, F_OK) == -1 && errno == ENOENT);
		CHECK(file_read(p2, 0, &out, &len) == 0 && len == 0);
		free(out);
		sp[0] = &st[0];
		sp[1] = &st[1];
		CHECK(file_stage_commit(sp, 2) == 0);
		CHECK(file_read(path, 0, &out, &len) == 0 && strcmp(out, "one") == 0);
		free(out);
		CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
		CHECK(file_read(p2, 0, &out, &len) == 0 && strcmp(out, "two") == 0);
		free(out);
		file_stage_discard(&st[0]);	/* committed: nothing to do */
		snprintf(path, sizeof(path), "%s/a/s3", dir);
		CHECK(file_stage_write(&st[2], path, "three", 5, 0644) == 0);
		CHECK(st[2].tmp != NULL && access(st[2].tmp, F_OK) == 0);
		snprintf(p2, sizeof(p2), "%s", st[2].tmp);
		file_stage_discard(&st[2]);
		CHECK(access(p2, F_OK) == -1 && access(path, F_OK) == -1);
		snprintf(path, sizeof(path), "%s/nodir/x", dir);
		CHECK(file_stage_write(&st[2], path, "x", 1, 0600) == -1 && errno == ENOENT);
		CHECK(file_stage_commit(sp, 0) == 0);
	}
	out = file_dirname("/x/y/z");
	CHECK_STR(out, "/x/y");
	free(out);
	out = file_dirname("z");
	CHECK_STR(out, ".");
	free(out);
}

static void
test_jsonl(const char *dir)
{
	char path[512], *out = NULL;
	json_t *o = json_pack("{s:s,s:i}", "b", "x\ny", "a", 1);

	snprintf(path, sizeof(path), "%s/log.jsonl", dir);
	CHECK(jsonl_append(path, o, 1) == 0);
	CHECK(jsonl_append(path, o, 0) == 0);
	CHECK(file_read(path, 0, &out, NULL) == 0);
	CHECK_STR(out, "{\"b\":\"x\\ny\",\"a\":1}\n{\"b\":\"x\\ny\",\"a\":1}\n");
	free(out);
	json_decref(o);
}

static void
test_hash(void)
{
	/* FNV-1a 32 reference values */
	CHECK(hash_str("") == 2166136261u);
	CHECK(hash_str("a") == 0xe40c292cu);
	CHECK(hash_str("foobar") == 0xbf9cf968u);
	CHECK(hash_fnv1a(HASH_FNV_INIT, "foobar", 6) == hash_str("foobar"));
}

/* text.h: UTF-8 sequences (Unicode Table 3-7 boundaries), hex. */
static const struct { const char *bytes; size_t n, len; uint32_t cp; } utf8[] = {
	{ "A", 1, 1, 0x41 },
	{ "\xc2\x80", 2, 2, 0x80 },
	{ "\xdf\xbf", 2, 2, 0x7ff },
	{ "\xe0\xa0\x80", 3, 3, 0x800 },
	{ "\xed\x9f\xbf", 3, 3, 0xd7ff },
	{ "\xee\x80\x80", 3, 3, 0xe000 },
	{ "\xf0\x90\x80\x80", 4, 4, 0x10000 },
	{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff },
	{ "\xc0\x80", 2, 0, 0 },             /* overlong NUL */
	{ "\xc1\xbf", 2, 0, 0 },
	{ "\xe0\x9f\xbf", 3, 0, 0 },        /* overlong */
	{ "\xed\xa0\x80", 3, 0, 0 },        /* surrogate */
	{ "\xf0\x8f\xbf\xbf", 4, 0, 0 },    /* overlong */
	{ "\xf4\x90\x80\x80", 4, 0, 0 },    /* beyond U+10FFFF */
	{ "\xf5\x80\x80\x80", 4, 0, 0 },
	{ "\x80", 1, 0, 0 },                 /* lone continuation */
	{ "\xe2\x82", 2, 0, 0 },             /* cut short */
	{ "\xe2\x82\xac", 2, 0, 0 },         /* n says cut short */
	{ "\xe2\x00\xac", 3, 0, 0 },
};

static void
test_text(void)
{
	char hex[9], err[8];
	uint32_t cp;
	size_t i;

	for (i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++) {
		cp = 0xdeadbeef;
		CHECK(text_utf8_seq((const unsigned char *)utf8[i].bytes, utf8[i].n, &cp) ==
		    utf8[i].len);
		if (utf8[i].len > 0)
			CHECK(cp == utf8[i].cp);
	}
	CHECK(text_utf8_seq((const unsigned char *)"\xe2\x82\xac", 3, NULL) == 3);
	CHECK(text_utf8_seq((const unsigned char *)"x", 0, NULL) == 0);
	CHECK(text_hexval('0') == 0 && text_hexval('f') == 15 && text_hexval('F') == 15);
	CHECK(text_hexval('g') == -1 && text_hexval('/') == -1 && text_hexval(':') == -1);
	text_hex("\x00\x9f\xff\x10", 4, hex);
	CHECK_STR(hex, "009fff10");
	text_seterr(err, sizeof(err), "%s %d", "abcdef", 42);
	CHECK_STR(err, "abcdef ");
	text_seterr(NULL, 0, "%s", "no buffer");
}

int
main(void)
{
	char dir[] = "/tmp/certgate-test-util.XXXXXX", cmd[600];

	CHECK(mkdtemp(dir) != NULL);
	test_buf();
	test_file(dir);
	test_jsonl(dir);
	test_hash();
	test_text();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	CHECK_DONE();
}
