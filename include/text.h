/* Small text helpers every parser needs: strict UTF-8 sequences, hex digits, and
 * error messages into a caller's buffer. Pure; thread-safe. */
#ifndef CERTGATE_TEXT_H
#define CERTGATE_TEXT_H
#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the well-formed UTF-8 sequence at s, of which n bytes may be read,
 * or 0 when it is ill-formed (overlong, surrogate, beyond U+10FFFF, cut short). The
 * code point goes to *cp when cp is not NULL. Bytes are read in order and the first
 * bad one ends the look, so a NUL-terminated string may pass n = 4. */
size_t text_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

/* The value of hex digit c (either case), or -1. */
int text_hexval(int c);

/* n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void text_hex(const void *p, size_t n, char *out);

/* vsnprintf into err[0..errlen) (an error message for the caller); nothing when err is
 * NULL or errlen 0. */
void text_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
