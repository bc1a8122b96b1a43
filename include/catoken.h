/* One-time enrollment tokens: their text form and the CA's store of their hashes.
 *
 * Token text (fixed; the agent side reads the fingerprint to check the server):
 *   cg1.<64 lowercase hex: SHA-256 of the DER trust anchor>.<43 base64url chars: 32
 *   random bytes>
 * Only SHA-256 of the secret part (its 43 characters) is stored: one file per token,
 * TOKENS_DIR/<hash hex>.json, written atomically, changed only under the CA lock
 * (cadb.h). A token's id in audit lines and messages is the first 16 hex digits of
 * the hash, which reveals nothing about the secret.
 *
 * catoken_make/catoken_parse and the record codec are pure; the store functions do
 * file I/O. Thread-safe (no shared state). Functions return 0/-1 unless stated. */
#ifndef CERTGATE_CATOKEN_H
#define CERTGATE_CATOKEN_H
#include <stddef.h>
#include <time.h>

#include <jansson.h>

#define CATOKEN_LEN	(4 + 64 + 1 + 43)	/* strlen of a token */
#define CATOKEN_MAX_ROLES	64
#define CATOKEN_MAX_SCOPES	256

/* A new random token for the trust anchor with fingerprint fp (64 lowercase hex).
 * out holds CATOKEN_LEN + 1; hash receives SHA-256 of the secret. */
int catoken_make(const char *fp, char *out, size_t outlen, unsigned char hash[32]);

/* Checks the form of tok and splits it: fp (65 bytes) the fingerprint, hash the
 * SHA-256 of the secret. -1 (with a reason in err) for anything malformed. */
int catoken_parse(const char *tok, char fp[65], unsigned char hash[32], char *err,
    size_t errlen);

/* The id: first 16 hex digits of the hash. id holds 17 bytes. */
void catoken_id(const unsigned char hash[32], char id[17]);

/* What a token grants; stored in its file. */
struct catoken_rec {
	char agent[65];
	char **roles;          /* NULL with set_roles 0: keep the agent's roles */
	size_t nroles;
	int set_roles;
	char **scopes;
	size_t nscopes;
	int set_scopes;
	long lifetime_s;       /* of the certificate */
	long long created;     /* epoch seconds */
	long long expires;     /* the token's own expiry */
	long long used_at;     /* 0: unused */
	char serial[80];       /* set when used: the certificate it was used for */
	char key[65];          /* set when used: SHA-256 (lowercase hex) of the DER
	                        * SubjectPublicKeyInfo certified, written in the same
	                        * record as used_at so a retry with the same key can be
	                        * recognised; "" in records written before it existed */
};

void catoken_rec_free(struct catoken_rec *r);
/* Encodes r as a JSON object (new reference) or NULL. */
json_t *catoken_rec_json(const struct catoken_rec *r);
/* Decodes and validates a stored record (agent id, role and scope strings, positive
 * times, "key" 64 lowercase hex and only with "used_at"). -1 with err for anything
 * unexpected. */
int catoken_rec_parse(json_t *o, struct catoken_rec *r, char *err, size_t errlen);

/* SHA-256 of a DER SubjectPublicKeyInfo as 64 lowercase hex (hex holds 65). 0/-1. */
int catoken_key_hash(const unsigned char *spki, size_t len, char hex[65]);

/* Whether a spent token may hand its certificate out again to a retry (the first
 * answer was lost, e.g. the gateway timed out while the CA completed): 1 when r is
 * used, recorded key_hex (the retry's key hash) and has not expired at now, else 0. */
int catoken_redeliverable(const struct catoken_rec *r, const char *key_hex, long long now);

/* Store. put creates the file (-1 if it already exists); get returns 0 and *r,
 * 1 when no such token, -1 on error; update replaces an existing record. */
int catoken_put(const char *dir, const unsigned char hash[32], const struct catoken_rec *r,
    char *err, size_t errlen);
int catoken_get(const char *dir, const unsigned char hash[32], struct catoken_rec *r,
    char *err, size_t errlen);
int catoken_update(const char *dir, const unsigned char hash[32],
    const struct catoken_rec *r, char *err, size_t errlen);
/* catoken_update staged (file.h, file_stage_write): the record replaces the old
 * one when the caller commits stage (file_stage_commit), durable once it fsyncs dir
 * too (cabatch.h does both for a batch). */
struct file_stage;
int catoken_update_staged(const char *dir, const unsigned char hash[32],
    const struct catoken_rec *r, struct file_stage *stage, char *err, size_t errlen);
/* Removes records whose expiry is more than keep_s before now. Returns the number
 * removed, or -1. */
int catoken_prune(const char *dir, time_t now, long keep_s);

#endif
