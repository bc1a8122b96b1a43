/* The CA whose key lives in the token: `certgate ca init|server|issue|revoke|crl|list`.
 * Every signature is made by the token key (EVP_PKEY from p11.c). */
#ifndef CERTGATE_CA_H
#define CERTGATE_CA_H
#include <stddef.h>
#include <time.h>

/* One row of the CA database (OpenSSL index.txt format, tab-separated):
 * status(V|R|E) \t expiry(YYMMDDHHMMSSZ) \t revocation("YYMMDDHHMMSSZ[,reason]" or "")
 * \t serial(uppercase hex) \t filename("unknown") \t subject("/CN=...") */
struct ca_db_row {
	char status;
	char *expiry;
	char *revocation;
	char *serial;
	char *file;
	char *subject;
};

struct ca_db {
	struct ca_db_row *rows;
	size_t n, cap;
};

/* Parses index.txt text. Returns 0, or -1 with "line N: problem" in err. */
int ca_db_parse(const char *text, size_t len, struct ca_db *db, char *err, size_t errlen);
/* Serialises to malloc'd text (the exact format OpenSSL writes). */
char *ca_db_format(const struct ca_db *db);
int ca_db_load(const char *path, struct ca_db *db, char *err, size_t errlen);
/* Writes atomically (temp file + fsync + rename). */
int ca_db_save(const char *path, const struct ca_db *db);
void ca_db_free(struct ca_db *db);
struct ca_db_row *ca_db_find_serial(struct ca_db *db, const char *serial);

/* Entry point for `certgate ca ...` (argv[0] is "ca"). Returns the exit code. */
int ca_main(int argc, char **argv);

#endif
