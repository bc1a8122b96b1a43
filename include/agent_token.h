/* Enrollment tokens, agent side: "cg1.<fingerprint>.<secret>", where fingerprint is
 * 64 lowercase hex digits, the SHA-256 of the DER of the trust anchor certificate,
 * and secret 43 base64url characters (32 random bytes, no padding). The format is
 * fixed by the CA side (scripts/agent-token), which keeps only a hash of the token.
 *
 * The fingerprint is what lets `certgate agent enroll` trust an enrollment listener it
 * has never seen (as step-ca's tokens do): the anchor fetched without verification is
 * used only if its SHA-256 equals the one in the token.
 *
 * Pure functions, no I/O, thread-safe. Error messages never contain the token. */
#ifndef CERTGATE_AGENT_TOKEN_H
#define CERTGATE_AGENT_TOKEN_H
#include <openssl/x509.h>
#include <stddef.h>

#define AGENT_TOKEN_FP_LEN  32     /* SHA-256 */
#define AGENT_TOKEN_LEN     112    /* "cg1." + 64 + "." + 43 */

/* Checks the whole token text tok (exactly AGENT_TOKEN_LEN characters, nothing
 * around it) and stores the fingerprint's bytes in fp. Returns 0 (err set to ""),
 * or -1 with a message in err saying what is wrong (a position, never the token's
 * text). */
int agent_token_parse(const char *tok, unsigned char fp[AGENT_TOKEN_FP_LEN],
    char *err, size_t errlen);

/* SHA-256 of the DER encoding of cert into fp. Returns 0/-1 (encoding failed). */
int agent_token_fingerprint(X509 *cert, unsigned char fp[AGENT_TOKEN_FP_LEN]);

/* Index of the first certificate of certs whose fingerprint is fp, or -1 when none
 * is (or certs is NULL). The comparison does not depend on secret data, so a plain
 * memcmp is fine: fingerprints of public certificates are public. */
int agent_token_find(STACK_OF(X509) *certs, const unsigned char fp[AGENT_TOKEN_FP_LEN]);

/* fp as 64 lowercase hex digits and a NUL, for messages. */
void agent_token_hex(const unsigned char fp[AGENT_TOKEN_FP_LEN], char out[65]);

#endif
