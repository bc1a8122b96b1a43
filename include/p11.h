/* PKCS#11 layer. The only file that includes libp11 (and the raw PKCS#11 API) is
 * src/p11.c; everything else sees EVP_PKEY objects whose private operations run in
 * the token.
 *
 * Object references are RFC 7512 URIs. Path attributes handled: token, manufacturer,
 * serial, model, object, type (private|public|cert|secret-key|data), id (percent-
 * encoded bytes), slot-id. Query attributes: pin-source (file path or
 * "file:PATH"), pin-value, module-path, module-name. Anything else is an error. */
#ifndef CERTGATE_P11_H
#define CERTGATE_P11_H
#include <openssl/evp.h>
#include <stddef.h>

struct p11_uri {
	char *token;
	char *manufacturer;
	char *serial;
	char *model;
	char *object;        /* CKA_LABEL */
	char *type;
	unsigned char *id;   /* CKA_ID bytes */
	size_t id_len;
	long slot_id;        /* -1 when absent */
	char *module_path;
	char *module_name;
	char *pin_source;
	char *pin_value;     /* wiped by p11_uri_free */
};

/* Parses s into u (zeroed first). Returns 0, or -1 with a message in err naming
 * the offending attribute (never the PIN value). Free with p11_uri_free even on error. */
int p11_uri_parse(const char *s, struct p11_uri *u, char *err, size_t errlen);
void p11_uri_free(struct p11_uri *u);

/* Returns a malloc'd copy of the URI text with any pin-value replaced by "***",
 * for messages. Never NULL on success; NULL on allocation failure. */
char *p11_uri_redact(const char *uri);

/* 1 when s starts with "pkcs11:" (case-insensitive scheme). */
int p11_is_uri(const char *s);

/* Where to find the token when a URI does not say: filled from the config. */
struct p11_defaults {
	const char *module;        /* module path */
	const char *token;         /* token label */
	const char *pin_file;      /* PIN file (preferred) */
	const char *pin_env;       /* or environment variable name */
	const char *softhsm2_conf; /* exported as SOFTHSM2_CONF before the module loads */
};

/* Loads the private key named by uri from the token (opening the module, finding the
 * token by label and logging in on first use; the PIN is read from the URI's
 * pin-source/pin-value or from defaults, and wiped right after C_Login).
 * Reads CKA_SENSITIVE and CKA_EXTRACTABLE and fails if the key is extractable or not
 * sensitive unless allow_extractable. On success *out holds a new reference the
 * caller frees with EVP_PKEY_free. Errors are logged with the redacted URI and the
 * PKCS#11 return code in words. Returns 0/-1. Thread-safe. */
int p11_load_private_key(const struct p11_defaults *d, const char *uri,
    int allow_extractable, EVP_PKEY **out);

/* Generates an EC P-256 key pair inside the token, labelled and with CKA_ID taken
 * from uri (object= is required; id= optional, random 16 bytes otherwise), private
 * half CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, CKA_TOKEN=true. Fails if an object
 * with that label already exists. *out is the private key (as from
 * p11_load_private_key), whose public half can be put into certificates. */
int p11_generate_ec_key(const struct p11_defaults *d, const char *uri, EVP_PKEY **out);

/* 1 if a private key matching uri exists in the token, 0 if not, -1 on error. */
int p11_key_exists(const struct p11_defaults *d, const char *uri);


/* Token health. /healthz must never wait for a token, and a liveness probe must
 * never spend a real HSM's PIN retries, so the checks run on a monitor thread and
 * /healthz reads their last result.
 *
 * p11_health_check: checks every token opened so far now, on the calling thread
 * (C_GetSessionInfo; after a lost session it re-opens one and logs in again,
 * reading the PIN again from its file or environment variable; a token opened with
 * pin-value cannot be logged in again). A failed login is retried only after a
 * back-off (1 s, doubling to 5 min); after CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
 * CKR_PIN_EXPIRED or CKR_PIN_INVALID no login is tried again until
 * p11_health_reset() (SIGHUP), so a wrong PIN file cannot lock the token. Returns 1
 * when every token is usable (also when none is open), 0 otherwise, and stores it
 * for p11_health(). May block as long as the token does; thread-safe.
 * p11_health: the last stored result, without touching the token (1 before any
 * check). Lock-free.
 * p11_health_reset: forgets back-offs and PIN stops; the next check may log in.
 * p11_health_logins: login attempts made by health checks so far (metrics, tests).
 * p11_monitor_start: runs p11_health_check every interval_ms on a thread of its
 * own (and at once after p11_health_reset). Returns 0/-1. p11_monitor_stop joins
 * it (waits for a check in progress). */
int p11_health_check(void);
int p11_health(void);
void p11_health_reset(void);
long p11_health_logins(void);
int p11_monitor_start(int interval_ms);
void p11_monitor_stop(void);

/* The PKCS#11 return code in words, e.g. "CKR_PIN_INCORRECT". Never NULL. */
const char *p11_rv_str(unsigned long rv);

/* Reads a secret (PIN) from a file (first line, trailing newline removed) or from an
 * environment variable. *out is malloc'd; the caller wipes it with p11_secret_free.
 * Returns 0/-1 with a message in err. */
int p11_read_secret(const char *file, const char *env, char **out, char *err, size_t errlen);
void p11_secret_free(char *s);
/* Where the PIN for a key of URI u comes from: the URI first (pin-value, pin-source),
 * then d (pin_file, pin_env). Exactly one of *pin (a literal), *file and *env is set,
 * malloc'd, or none when neither names a source. Returns 0, or -1 (out of memory). */
int p11_pin_source(const struct p11_defaults *d, const struct p11_uri *u, char **pin,
    char **file, char **env);

struct signer_pool;

/* Makes key's signatures run on pool (signer.h) when they are made inside an
 * OpenSSL async job (a handshake with SSL_MODE_ASYNC); outside a job they stay
 * synchronous. pool NULL detaches it again (do that before freeing the pool); the
 * key then signs synchronously on the calling thread. Either way, once called, the
 * key signs in per-thread PKCS#11 sessions of its own rather than libp11's session
 * pool, which in 0.4.12 blocks a thread forever when the token is gone.
 * The pool is borrowed. Returns 0, or -1 when key cannot sign asynchronously (a
 * software key, or a key type without a wrapped method; logged when pool is set):
 * it then keeps signing synchronously. */
int p11_key_enable_async(EVP_PKEY *key, struct signer_pool *pool);

/* Logs out and unloads every module. Safe to call when nothing is open. Free
 * every EVP_PKEY obtained from this module first: they refer to the token. */
void p11_shutdown(void);

#endif
