/* Time and duration formats of the CA: the ASN.1 UTCTime/GeneralizedTime strings of
 * OpenSSL's index.txt, RFC 3339 for people and audit lines, and the lifetimes
 * operators type ("15m", "24h", "7d"). Pure functions, thread-safe, no I/O. */
#ifndef CERTGATE_CATIME_H
#define CERTGATE_CATIME_H
#include <openssl/asn1.h>
#include <stddef.h>
#include <time.h>

/* Buffer sizes that always suffice. */
#define CATIME_INDEX_LEN	20	/* "YYYYMMDDHHMMSSZ" + NUL, with room */
#define CATIME_RFC3339_LEN	32

/* Parses "YYMMDDHHMMSSZ" (UTCTime, 1950..2049) or "YYYYMMDDHHMMSSZ" (n characters of
 * s, no NUL needed). Returns 0 and *out (may be NULL: validation only), or -1. */
int catime_parse_n(const char *s, size_t n, time_t *out);
/* The same for a NUL-terminated string. */
int catime_parse(const char *s, time_t *out);

/* The index.txt form of t: UTCTime for 1950..2049, GeneralizedTime otherwise
 * (RFC 5280 4.1.2.5), as OpenSSL writes it. buf holds CATIME_INDEX_LEN. */
void catime_format(time_t t, char *buf, size_t len);

/* "2026-11-26T13:41:00Z". buf holds CATIME_RFC3339_LEN. */
void catime_rfc3339(time_t t, char *buf, size_t len);

/* time_t of an ASN1_TIME. Returns 0/-1 (malformed). */
int catime_from_asn1(const ASN1_TIME *at, time_t *out);

/* Parses a duration "Nm", "Nh" or "Nd" (N decimal, no sign, no spaces) into seconds
 * within [min_s, max_s]. Returns 0, or -1 with a message in err ("want Nm, Nh or Nd",
 * "at least 2m", ...) that does not repeat the input. */
int catime_duration(const char *s, long min_s, long max_s, long *out, char *err,
    size_t errlen);

/* Duration in the largest units that keep it short: "2d3h", "4h59m", "17m", "<1m";
 * "-" for secs <= 0. buf holds 16 bytes. */
void catime_left(long secs, char *buf, size_t len);

/* A duration for messages in the largest unit that divides it, the form
 * catime_duration reads: 86400 -> "1d", 5400 -> "90m", 90 -> "90s". buf holds 16 bytes. */
void catime_duration_str(long secs, char *buf, size_t len);

#endif
