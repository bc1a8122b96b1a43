/* CA database (index.txt) parser/formatter: round trip against a file written by
 * `openssl ca`, malformed lines, revocation fields. */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cadb.h"
#include "check.h"

/* Written by OpenSSL 3.0 `openssl ca` (four issues, three revocations: with
 * -crl_reason keyCompromise, without reason, with -crl_reason unspecified). */
static const char sample[] =
    "R\t261206134059Z\t261126134059Z,keyCompromise\t01\tunknown\t/CN=alice/O=Example\n"
    "R\t261206134059Z\t261126134059Z\t02\tunknown\t/CN=bob/O=Example\n"
    "R\t261206134059Z\t261126134059Z,unspecified\t03\tunknown\t/CN=carol/O=Example\n"
    "V\t261206134059Z\t\t04\tunknown\t/CN=dave/O=Example\n"
    "V\t20510101000000Z\t\t3F2A9C0D1E2B3C4D5E6F708192A3B4C5\tunknown\t/CN=far-future\n"
    "E\t200101000000Z\t\t0A\t0A.pem\t/CN=old/O=Example Org\n";

static void
test_roundtrip(void)
{
	struct cadb db;
	char err[256] = "";
	char *out;

	CHECK(cadb_parse(sample, strlen(sample), &db, err, sizeof(err)) == 0);
	CHECK(db.n == 6);
	if (db.n != 6)
		return;
	CHECK(db.rows[0].status == 'R');
	CHECK_STR(db.rows[0].expiry, "261206134059Z");
	CHECK_STR(db.rows[0].revocation, "261126134059Z,keyCompromise");
	CHECK_STR(db.rows[0].serial, "01");
	CHECK_STR(db.rows[0].file, "unknown");
	CHECK_STR(db.rows[0].subject, "/CN=alice/O=Example");
	CHECK_STR(db.rows[1].revocation, "261126134059Z");
	CHECK_STR(db.rows[2].revocation, "261126134059Z,unspecified");
	CHECK(db.rows[3].status == 'V');
	CHECK_STR(db.rows[3].revocation, "");
	CHECK_STR(db.rows[4].expiry, "20510101000000Z");
	CHECK(db.rows[5].status == 'E');
	CHECK_STR(db.rows[5].file, "0A.pem");
	CHECK_STR(db.rows[5].subject, "/CN=old/O=Example Org");

	out = cadb_format(&db);
	CHECK(out != NULL);
	CHECK_STR(out, sample);
	free(out);

	CHECK(cadb_find_serial(&db, "04") == &db.rows[3]);
	CHECK(cadb_find_serial(&db, "4") == &db.rows[3]);
	CHECK(cadb_find_serial(&db, "0004") == &db.rows[3]);
	CHECK(cadb_find_serial(&db, "a") == &db.rows[5]);
	CHECK(cadb_find_serial(&db, "3f2a9c0d1e2b3c4d5e6f708192a3b4c5") == &db.rows[4]);
	CHECK(cadb_find_serial(&db, "05") == NULL);
	cadb_free(&db);
	CHECK(db.n == 0 && db.rows == NULL);
}

static void
test_empty(void)
{
	struct cadb db;
	char err[256];
	char *out;

	CHECK(cadb_parse("", 0, &db, err, sizeof(err)) == 0);
	CHECK(db.n == 0);
	out = cadb_format(&db);
	CHECK_STR(out, "");
	free(out);
	cadb_free(&db);
}

/* A last line without newline is accepted (and written back with one). */
static void
test_no_final_newline(void)
{
	const char *t = "V\t261206134059Z\t\t04\tunknown\t/CN=dave";
	struct cadb db;
	char err[256];
	char *out;

	CHECK(cadb_parse(t, strlen(t), &db, err, sizeof(err)) == 0);
	CHECK(db.n == 1);
	out = cadb_format(&db);
	CHECK_STR(out, "V\t261206134059Z\t\t04\tunknown\t/CN=dave\n");
	free(out);
	cadb_free(&db);
}

static void
bad(const char *text, const char *want)
{
	struct cadb db;
	char err[256] = "";
	int rc;

	rc = cadb_parse(text, strlen(text), &db, err, sizeof(err));
	CHECK(rc == -1);
	CHECK(db.n == 0 && db.rows == NULL);
	if (strstr(err, want) == NULL) {
		fprintf(stderr, "error '%s' does not contain '%s'\n", err, want);
		CHECK(0);
	} else
		CHECK(1);
}

static void
test_malformed(void)
{
	const char *ok = "V\t261206134059Z\t\t04\tunknown\t/CN=dave\n";
	char buf[512];

	bad("X\t261206134059Z\t\t04\tunknown\t/CN=a\n", "line 1: status");
	snprintf(buf, sizeof(buf), "%sV\t2612061340Z\t\t05\tunknown\t/CN=b\n", ok);
	CHECK(strlen(buf) > 0);
	bad(buf, "line 2: bad expiry");
	snprintf(buf, sizeof(buf), "%s%sV\t261306134059Z\t\t06\tunknown\t/CN=b\n", ok,
	    "V\t261206134059Z\t\t05\tunknown\t/CN=c\n");
	bad(buf, "line 3: bad expiry");
	bad("V\t261206134059Z\t\t04\tunknown\n", "line 1: expected 6");
	bad("V\t261206134059Z\t\t04\tunknown\t/CN=a\textra\n", "line 1: more than 6");
	bad("R\t261206134059Z\t\t04\tunknown\t/CN=a\n", "line 1: revoked entry without");
	bad("R\t261206134059Z\tyesterday\t04\tunknown\t/CN=a\n", "line 1: bad revocation date");
	bad("R\t261206134059Z\t261126134059Z,\t04\tunknown\t/CN=a\n", "line 1: empty revocation reason");
	bad("V\t261206134059Z\t261126134059Z\t04\tunknown\t/CN=a\n", "line 1: revocation date on");
	bad("V\t261206134059Z\t\t0G\tunknown\t/CN=a\n", "line 1: serial is not hex");
	bad("V\t261206134059Z\t\t\tunknown\t/CN=a\n", "line 1: empty serial");
	bad("V\t261206134059Z\t\t04\t\t/CN=a\n", "line 1: empty file");
	bad("V\t261206134059Z\t\t04\tunknown\t\n", "line 1: empty subject");
	snprintf(buf, sizeof(buf), "%s\n%s", ok, ok);
	bad(buf, "line 2: empty line");
	snprintf(buf, sizeof(buf), "%sV\t261206134059Z\t\t0004\tunknown\t/CN=e\n", ok);
	bad(buf, "line 2: duplicate serial");
	bad("V\t261206134059Z\t\t04\tunknown\t/CN=a\r\n", "line 1: control character");
}

static void
test_load_save(void)
{
	char dir[] = "/tmp/test_ca_db.XXXXXX", path[256], err[256];
	struct cadb db, db2;
	struct stat st;
	FILE *f;
	char *out;

	if (mkdtemp(dir) == NULL) {
		CHECK(0);
		return;
	}
	snprintf(path, sizeof(path), "%s/index.txt", dir);
	CHECK(cadb_load(path, &db, err, sizeof(err)) == -1);
	CHECK(strstr(err, "No such file") != NULL);
	f = fopen(path, "w");
	fputs(sample, f);
	fclose(f);
	CHECK(cadb_load(path, &db, err, sizeof(err)) == 0);
	CHECK(db.n == 6);
	/* Revoke dave the way `certgate ca revoke` does, save, reload. */
	db.rows[3].status = 'R';
	free(db.rows[3].revocation);
	db.rows[3].revocation = strdup("261127000000Z,superseded");
	CHECK(cadb_save(path, &db) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
	CHECK(cadb_load(path, &db2, err, sizeof(err)) == 0);
	CHECK(db2.n == 6);
	if (db2.n == 6) {
		CHECK(db2.rows[3].status == 'R');
		CHECK_STR(db2.rows[3].revocation, "261127000000Z,superseded");
	}
	out = cadb_format(&db2);
	CHECK(out && strstr(out, "R\t261206134059Z\t261127000000Z,superseded\t04\tunknown\t/CN=dave/O=Example\n"));
	free(out);
	cadb_free(&db);
	cadb_free(&db2);

	f = fopen(path, "w");
	fputs("V\t261206134059Z\t\t04\tunknown\t/CN=a\nbroken\n", f);
	fclose(f);
	CHECK(cadb_load(path, &db, err, sizeof(err)) == -1);
	CHECK(strstr(err, "index.txt: line 2:") != NULL);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	test_roundtrip();
	test_empty();
	test_no_final_newline();
	test_malformed();
	test_load_save();
	CHECK_DONE();
}
