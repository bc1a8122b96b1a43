/* The agent's TLS credentials: its certificate (with the chain it sends) and private
 * key, and the trust anchors it verifies the gateway with (ca.pem). One immutable,
 * reference-counted object per certificate generation: a renewal makes a new one,
 * connections made with the old one keep it alive until they end.
 *
 * Transfers use a credential through libcurl's OpenSSL back end: agent_cred_curl sets
 * CURLOPT_SSL_CTX_FUNCTION, whose callback installs the certificate, the chain and the
 * EVP_PKEY (a token key from p11.c signs inside the token) into each new SSL_CTX and
 * replaces curl's trust store with the anchors only, so no system CA is ever trusted.
 * curl still checks the gateway's host name or IP address.
 *
 * References may be taken and dropped from any thread; the object never changes. */
#ifndef CERTGATE_AGENT_CRED_H
#define CERTGATE_AGENT_CRED_H
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

struct agent_cred;

/* Makes a credential. Takes ownership of every object passed, also on failure:
 * leaf and key may be NULL together (trust only: enrollment), chain may be NULL,
 * anchors must hold at least one certificate. key_uri is copied (NULL for a file
 * key). With a leaf, checks that key belongs to it. Returns NULL on failure (logged). */
struct agent_cred *agent_cred_new(X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key,
    const char *key_uri, STACK_OF(X509) *anchors);

struct agent_cred *agent_cred_ref(struct agent_cred *c);
/* Drops a reference; the last one frees. NULL is a no-op. */
void agent_cred_unref(struct agent_cred *c);

/* Borrowed views, valid while a reference is held. */
X509 *agent_cred_leaf(const struct agent_cred *c);
STACK_OF(X509) *agent_cred_chain(const struct agent_cred *c);
EVP_PKEY *agent_cred_key(const struct agent_cred *c);
STACK_OF(X509) *agent_cred_anchors(const struct agent_cred *c);
/* The key's PKCS#11 URI, or NULL for a key from key.pem. */
const char *agent_cred_key_uri(const struct agent_cred *c);
/* The leaf's validity (0 when there is no leaf). */
time_t agent_cred_not_before(const struct agent_cred *c);
time_t agent_cred_not_after(const struct agent_cred *c);
/* The leaf's serial in hex and subject (RFC 4514), for messages ("-" without a leaf). */
const char *agent_cred_serial(const struct agent_cred *c);
const char *agent_cred_subject(const struct agent_cred *c);

/* Verifies leaf (with the untrusted chain) against anchors for TLS client use at the
 * current time. Returns 0, or -1 with the reason in err. */
int agent_cred_verify_chain(X509 *leaf, STACK_OF(X509) *chain, STACK_OF(X509) *anchors,
    char *err, size_t errlen);

/* Sets up the TLS options of easy handle e: the anchors as the only trust, peer and
 * host verification on, TLS 1.2 minimum, and the client certificate and key when c
 * has them. c must stay referenced until the transfer is done (the callback runs
 * when a connection is made). Returns 0, or -1 when libcurl refuses (not built with
 * OpenSSL: logged). */
int agent_cred_curl(CURL *e, struct agent_cred *c);

/* What it means when a fresh connection is closed right after the TLS handshake
 * completed on our side, before any answer: in TLS 1.3 a server that refuses the
 * client's certificate says so only after the client has finished, and the alert
 * is usually lost in the reset. */
#define AGENT_CRED_CLOSED_HINT "the gateway closed the connection right after the " \
	"TLS handshake: it most likely refused this agent's certificate (revoked, " \
	"expired, or not from its CA; the gateway's log says which)"

/* What a TLS failure reported by libcurl (msg) most likely means for the agent, as
 * a short sentence ("" when nothing specific is known). Pure; never NULL. */
const char *agent_cred_hint(const char *msg);

/* 1 when libcurl's TLS back end is OpenSSL (needed by agent_cred_curl). */
int agent_cred_curl_usable(void);

#endif
