/* RFC 9440 values: the client certificate and its chain as the upstream receives
 * them in Client-Cert and Client-Cert-Chain. Each certificate is a Structured Field
 * Byte Sequence (RFC 8941 §3.3.5): ':' base64(DER) ':'; the chain is a List of them,
 * separated by ", ", in TLS order (each certifies the one before it), without the
 * end-entity certificate. Pure (no I/O); thread-safe. */
#ifndef CERTGATE_CLIENTCERT_H
#define CERTGATE_CLIENTCERT_H
#include <openssl/x509.h>

/* Client-Cert for cert. Returns a malloc'd string, or NULL (DER or memory error). */
char *clientcert_field(X509 *cert);

/* Client-Cert-Chain for a verified chain chain[0..] whose element 0 is the end-entity
 * certificate (as SSL_get0_verified_chain gives it): elements 1.. are listed. Returns
 * a malloc'd string ("" when the chain holds only the end entity), or NULL. */
char *clientcert_chain_field(STACK_OF(X509) *chain);

#endif
