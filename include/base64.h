/* Base64 (RFC 4648): the standard alphabet with padding, and base64url without
 * padding (section 5). Pure, thread-safe, no allocation beyond the struct buf given.
 * Decoding is strict by default: the alphabet only, correct padding, no non-zero
 * trailing bits, so one text decodes to exactly one byte string. */
#ifndef CERTGATE_BASE64_H
#define CERTGATE_BASE64_H
#include <stddef.h>

#include "buf.h"

#define BASE64_URL	0x1	/* '-' and '_' instead of '+' and '/', no padding */
#define BASE64_WS	0x2	/* decode: skip spaces, tabs, CR and LF anywhere */

/* Encoded length of n bytes (without line breaks). */
size_t base64_len(size_t n, int flags);

/* Appends the encoding of p[0..n) to out, with "\n" after every `line` characters
 * (and at the end) when line > 0 (multiple of 4). Returns 0/-1 (buf error). */
int base64_encode(struct buf *out, const void *p, size_t n, int flags, size_t line);

/* Appends the decoding of s[0..n) to out. Returns 0, or -1 when s is not base64
 * of the kind flags say (out then holds a partial result) or on buf error. */
int base64_decode(struct buf *out, const char *s, size_t n, int flags);

#endif
