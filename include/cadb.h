/* The CA database: OpenSSL's index.txt format, so `openssl ca` and people can read
 * it, and the lock that serialises every process that changes the CA's files.
 *
 * One row per certificate issued, tab-separated:
 *   status(V|R|E) \t expiry(YYMMDDHHMMSSZ) \t revocation("YYMMDDHHMMSSZ[,reason]"|"")
 *   \t serial(uppercase hex) \t filename("unknown") \t subject("/CN=...")
 *
 * Parsing and formatting are pure; cadb_load/cadb_save read and atomically replace
 * the file; cadb_lock takes an flock. A struct cadb owns its rows and their strings.
 * Not thread-safe (one owner per struct). Functions return 0/-1 (or a pointer/NULL). */
#ifndef CERTGATE_CADB_H
#define CERTGATE_CADB_H
#include <stddef.h>
#include <time.h>

/* Largest index.txt cadb_load reads (about 100k certificates). */
#define CADB_MAX_FILE (64u * 1024 * 1024)

struct cadb_row {
	char status;        /* 'V', 'R' or 'E' */
	char *expiry;       /* index time string (catime.h) */
	char *revocation;   /* "" unless status is 'R' */
	char *serial;       /* uppercase hex, as BN_bn2hex writes it */
	char *file;         /* "unknown" for rows certgate writes */
	char *subject;      /* X509_NAME_oneline form, "/CN=id" for agents */
};

struct cadb {
	struct cadb_row *rows;
	size_t n, cap;
};

enum cadb_status { CADB_VALID, CADB_REVOKED, CADB_EXPIRED };

/* Parses index.txt text into db (emptied first). Duplicate serials are an error.
 * Returns 0, or -1 with "line N: problem" in err and db empty. */
int cadb_parse(const char *text, size_t len, struct cadb *db, char *err, size_t errlen);
/* Serialises to malloc'd text, byte for byte what OpenSSL writes. NULL on ENOMEM. */
char *cadb_format(const struct cadb *db);
/* Reads and parses path. -1 with "PATH: problem" in err. */
int cadb_load(const char *path, struct cadb *db, char *err, size_t errlen);
/* Replaces path atomically (file.h), mode 0644. 0/-1 with errno. */
int cadb_save(const char *path, const struct cadb *db);
void cadb_free(struct cadb *db);

/* The row whose serial equals serial (hex; case and leading zeros ignored), or NULL.
 * The pointer lives until db changes. */
struct cadb_row *cadb_find_serial(const struct cadb *db, const char *serial);
/* 1 when two hex serials are equal ignoring case and leading zeros. */
int cadb_serial_eq(const char *a, const char *b);

/* Appends a row with copies of the strings ('V', expiry, "", serial, "unknown",
 * subject). 0, or -1 on ENOMEM (db unchanged). */
int cadb_add_valid(struct cadb *db, const char *expiry, const char *serial,
    const char *subject);
/* Removes the last row (undoes cadb_add_valid). */
void cadb_pop(struct cadb *db);
/* Marks r revoked at when with an OpenSSL reason name (NULL: no reason). 0/-1. */
int cadb_revoke(struct cadb_row *r, time_t when, const char *reason);

/* V rows past their expiry count as expired. */
enum cadb_status cadb_status(const struct cadb_row *r, time_t now);
/* "valid", "revoked", "expired". */
const char *cadb_status_name(enum cadb_status s);
/* expiry of r as time_t; 0/-1. */
int cadb_expiry(const struct cadb_row *r, time_t *out);

/* CRL reason code (RFC 5280 5.3.1) of an OpenSSL reason name, case-insensitive, or -1. */
int cadb_reason_code(const char *name);

/* The agent id of a row: the CN when the subject is exactly "/CN=ID", else NULL.
 * Copies into buf (len >= 129). */
const char *cadb_agent_of(const struct cadb_row *r, char *buf, size_t len);

/* Exclusive flock on DIR/.lock where DIR is the directory of db_path (created 0700
 * if missing). Blocks until the lock is free. Returns the descriptor, or -1 with
 * errno (a message naming the file goes to err). Every process that changes the
 * CA's files (commands, the CA service) holds it for the whole change. */
int cadb_lock(const char *db_path, char *err, size_t errlen);
void cadb_unlock(int fd);

#endif
