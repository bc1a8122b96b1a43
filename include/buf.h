/* A growable byte buffer: the one certgate uses wherever bytes are assembled in
 * memory (heads, JSON bodies, refusal texts, file contents).
 *
 * Ownership: the buffer owns p. A buffer may start on caller-provided storage
 * (buf_init_stack) and moves to the heap only when that is too small; buf_free
 * releases heap memory only. Errors are sticky: after one failed append every
 * further append is a no-op and buf_failed() is 1, so a sequence of appends is
 * checked once at the end. p is always NUL-terminated after a successful append
 * (the NUL is not counted in len). Not thread-safe (one owner). */
#ifndef CERTGATE_BUF_H
#define CERTGATE_BUF_H
#include <stddef.h>

struct buf {
	char *p;        /* contents, NUL-terminated when len > 0 or after buf_str */
	size_t len;     /* bytes used, without the NUL */
	size_t cap;     /* bytes allocated (or of the stack storage) */
	size_t max;     /* 0: unlimited; else an append beyond max bytes fails */
	int heap;       /* p is malloc'd */
	int err;        /* an append failed (ENOMEM or over max) */
};

/* Empty heap buffer (no allocation yet). */
void buf_init(struct buf *b);
/* Empty buffer on storage[size] (size >= 1) until it outgrows it. */
void buf_init_stack(struct buf *b, char *storage, size_t size);
/* Appends n bytes. Returns 0, or -1 (sticky, see above). */
int buf_add(struct buf *b, const void *p, size_t n);
int buf_adds(struct buf *b, const char *s);
int buf_addc(struct buf *b, char c);
int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal number without printf. */
int buf_addu(struct buf *b, unsigned long long v);
/* NUL-terminated contents ("" when empty); never NULL. */
const char *buf_str(struct buf *b);
/* Forgets the contents, keeps the memory (and the error state cleared). */
void buf_reset(struct buf *b);
/* Hands the contents to the caller as a malloc'd NUL-terminated string (a copy when
 * the buffer was on the stack); the buffer is empty afterwards. NULL on failure
 * (or after an earlier error). */
char *buf_detach(struct buf *b, size_t *len);
/* 1 after a failed append. */
int buf_failed(const struct buf *b);
/* Wipes the contents with explicit_bzero (secrets) and frees. */
void buf_wipe(struct buf *b);
void buf_free(struct buf *b);

#endif
