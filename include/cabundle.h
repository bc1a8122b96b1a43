/* The CA certificate file (ca.cert) as a bundle, and PEM bundles in general.
 *
 * ca.cert holds, in this order: certgate's active CA certificate (the one that
 * signs), the certgate CAs still trusted from before a rollover (`certgate ca
 * rollover`; self-signed), and, when certgate's CA is an intermediate under a
 * corporate root (`certgate ca import`), the chain above it up to that root. The
 * same file is tls.ca (the gateway trusts every certificate in it; anchors are the
 * self-signed ones) and what EST /cacerts returns.
 *
 * OpenSSL and file.h only, no config. Objects returned are owned by the caller.
 * Thread-safe (no shared state). Functions return 0/-1 with a message in err. */
#ifndef CERTGATE_CABUNDLE_H
#define CERTGATE_CABUNDLE_H
#include <stddef.h>
#include <sys/types.h>

#include <openssl/x509.h>

struct cabundle {
	STACK_OF(X509) *all;     /* every certificate, file order; all[0] is active */
	STACK_OF(X509) *ours;    /* certgate's CAs: all[0], and when it is self-signed
	                          * every other self-signed certificate */
	STACK_OF(X509) *chain;   /* what follows a leaf of all[0]: all[0] and the
	                          * certificates above it, without the self-signed root */
	STACK_OF(X509) *anchors; /* the self-signed certificates (agents' ca.pem) */
};

/* Every PEM certificate of path (at least one). */
STACK_OF(X509) *cabundle_read(const char *path, char *err, size_t errlen);
/* Splits certs (borrowed; references are taken) into b. */
int cabundle_from(STACK_OF(X509) *certs, struct cabundle *b, char *err, size_t errlen);
/* cabundle_read + cabundle_from. */
int cabundle_load(const char *path, struct cabundle *b, char *err, size_t errlen);
void cabundle_free(struct cabundle *b);
/* 1 when x is self-signed (issuer = subject and its own key verifies it). */
int cabundle_self_signed(X509 *x);
/* Index of the certificate with serial hex (uppercase or lowercase) in certs, or -1. */
int cabundle_find_serial(STACK_OF(X509) *certs, const char *hex);
/* Writes first (may be NULL) then certs (may be NULL) as PEM, atomically. */
int cabundle_write(const char *path, X509 *first, STACK_OF(X509) *certs, mode_t mode,
    char *err, size_t errlen);
/* The serial of x as uppercase hex (OPENSSL_free), or NULL. */
char *cabundle_serial_hex(X509 *x);
#endif
