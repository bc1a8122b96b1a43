/* The agent's private key: an EC P-256 key in a 0600 PEM file (AGENTDIR/key.pem) or
 * inside a PKCS#11 token named by an RFC 7512 URI (stored in AGENTDIR/key.uri; the
 * key never leaves the token). Token access goes through p11.h (SoftHSM in tests, a
 * smart card, YubiKey or TPM token in production).
 *
 * Where the token is found: the URI's module-path (or module-name), else the
 * environment variable CERTGATE_PKCS11_MODULE. The PIN: the URI's pin-source
 * (file:PATH), else the environment variable CERTGATE_PKCS11_PIN. A pin-value in a
 * URI is refused: a PIN must never be on a command line or in AGENTDIR. Module
 * settings such as SOFTHSM2_CONF come from the environment as usual.
 *
 * Every function may be called from any thread (p11.c serialises the token). */
#ifndef CERTGATE_AGENT_KEY_H
#define CERTGATE_AGENT_KEY_H
#include <openssl/evp.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"

/* Environment variables read for token keys. */
#define AGENT_KEY_ENV_MODULE "CERTGATE_PKCS11_MODULE"
#define AGENT_KEY_ENV_PIN    "CERTGATE_PKCS11_PIN"

/* Checks a key URI given by the user: a pkcs11: URI with token= and object= (the
 * label the new key gets), type absent or private, and no pin-value. Returns 0, or
 * -1 with a message in err (never the PIN). Pure. */
int agent_key_check_uri(const char *uri, char *err, size_t errlen);

/* The URI for the next key when renewing a token key: uri with object= set to the
 * base label followed by "-YYYYMMDDTHHMMSSZ" of now (a previous such suffix is
 * replaced, so labels do not grow) and without id= (the token picks a new CKA_ID).
 * Other attributes are kept as written. Returns a malloc'd string, NULL when uri
 * has no object= or memory ran out. Pure. */
char *agent_key_uri_next(const char *uri, time_t now);

/* A new software EC P-256 key into *out (caller frees). Returns 0/-1 (logged). */
int agent_key_generate_file(EVP_PKEY **out);

/* Generates a new EC P-256 key inside the token of uri (labelled by its object=,
 * sensitive and not extractable) into *out. Fails if the label is taken. Returns
 * 0/-1 (logged). */
int agent_key_generate_token(const char *uri, EVP_PKEY **out);

/* Loads the token key named by uri into *out. Returns 0/-1 (logged). */
int agent_key_load_token(const char *uri, EVP_PKEY **out);

/* Reads a PEM private key file into *out. Returns 0/-1 with err. The file's bytes
 * are wiped from memory after parsing. */
int agent_key_load_pem(const char *path, EVP_PKEY **out, char *err, size_t errlen);

/* Appends key as unencrypted PKCS#8 PEM to out, which then holds a secret
 * (release it with buf_wipe). Returns 0/-1. */
int agent_key_pem(EVP_PKEY *key, struct buf *out);

#endif
