/* One-time enrollment tokens and their store (catoken.h). */
#include "catoken.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "base64.h"
#include "buf.h"
#include "certify.h"
#include "file.h"
#include "policy.h"
#include "text.h"

#define CATOKEN_FILE_MAX	(256 * 1024)

static int
catoken_sha256(const char *s, size_t n, unsigned char out[32])
{
	unsigned int len = 0;

	return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

int
catoken_make(const char *fp, char *out, size_t outlen, unsigned char hash[32])
{
	unsigned char rnd[32];
	struct buf b;
	int rc = -1;

	buf_init(&b);
	if (strlen(fp) != 64 || outlen < CATOKEN_LEN + 1)
		return -1;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto fail;
	if (buf_adds(&b, "cg1.") == -1 || buf_adds(&b, fp) == -1 || buf_addc(&b, '.') == -1 ||
	    base64_encode(&b, rnd, sizeof(rnd), BASE64_URL, 0) == -1 || b.len != CATOKEN_LEN)
		goto fail;
	if (catoken_sha256(b.p + 4 + 64 + 1, 43, hash) == -1)
		goto fail;
	memcpy(out, b.p, b.len + 1);
	rc = 0;
fail:
	OPENSSL_cleanse(rnd, sizeof(rnd));
	buf_wipe(&b);
	return rc;
}

int
catoken_parse(const char *tok, char fp[65], unsigned char hash[32], char *err, size_t errlen)
{
	struct buf b;
	size_t i, n = strlen(tok);
	const char *sec;

	if (n != CATOKEN_LEN || strncmp(tok, "cg1.", 4) != 0 || tok[68] != '.') {
		snprintf(err, errlen, "not a certgate enrollment token (want cg1.FINGERPRINT.SECRET)");
		return -1;
	}
	for (i = 4; i < 68; i++)
		if (!((tok[i] >= '0' && tok[i] <= '9') || (tok[i] >= 'a' && tok[i] <= 'f'))) {
			snprintf(err, errlen, "the token's fingerprint is not 64 lowercase hex digits");
			return -1;
		}
	sec = tok + 69;
	/* The secret must be the canonical base64url of 32 bytes. */
	buf_init(&b);
	if (base64_decode(&b, sec, 43, BASE64_URL) == -1 || b.len != 32) {
		buf_wipe(&b);
		snprintf(err, errlen, "the token's secret is not 43 base64url characters");
		return -1;
	}
	buf_wipe(&b);
	memcpy(fp, tok + 4, 64);
	fp[64] = '\0';
	if (catoken_sha256(sec, 43, hash) == -1) {
		snprintf(err, errlen, "cannot hash the token");
		return -1;
	}
	return 0;
}

void
catoken_id(const unsigned char hash[32], char id[17])
{
	text_hex(hash, 8, id);
}

/* 64 lowercase hex digits and nothing else. */
static int
catoken_is_hex64(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[64] == '\0';
}

int
catoken_key_hash(const unsigned char *spki, size_t len, char hex[65])
{
	unsigned char h[32];
	unsigned int n = 0;

	if (EVP_Digest(spki, len, h, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -1;
	text_hex(h, 32, hex);
	return 0;
}

int
catoken_redeliverable(const struct catoken_rec *r, const char *key_hex, long long now)
{
	/* Only the key the certificate was made for gets it again, and only while the
	 * token itself would still be valid: a retry, not a second grant. */
	return r->used_at != 0 && r->key[0] != '\0' && key_hex != NULL &&
	    strcmp(r->key, key_hex) == 0 && r->expires > now;
}

static void
catoken_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

void
catoken_rec_free(struct catoken_rec *r)
{
	catoken_strv_free(r->roles, r->nroles);
	catoken_strv_free(r->scopes, r->nscopes);
	r->roles = r->scopes = NULL;
	r->nroles = r->nscopes = 0;
}

static json_t *
catoken_strarray(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) == -1) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *
catoken_rec_json(const struct catoken_rec *r)
{
	json_t *o = json_object();
	int bad = 0;

	if (o == NULL)
		return NULL;
	bad |= json_object_set_new(o, "agent", json_string(r->agent));
	if (r->set_roles)
		bad |= json_object_set_new(o, "roles", catoken_strarray(r->roles, r->nroles));
	if (r->set_scopes)
		bad |= json_object_set_new(o, "scopes", catoken_strarray(r->scopes, r->nscopes));
	bad |= json_object_set_new(o, "lifetime_s", json_integer(r->lifetime_s));
	bad |= json_object_set_new(o, "created", json_integer(r->created));
	bad |= json_object_set_new(o, "expires", json_integer(r->expires));
	if (r->used_at != 0) {
		bad |= json_object_set_new(o, "used_at", json_integer(r->used_at));
		bad |= json_object_set_new(o, "serial", json_string(r->serial));
		if (r->key[0])
			bad |= json_object_set_new(o, "key", json_string(r->key));
	}
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int
catoken_strv(json_t *a, size_t max, int scopes, char ***out, size_t *n)
{
	json_t *v;
	size_t i;

	*out = NULL;
	*n = 0;
	if (!json_is_array(a) || json_array_size(a) > max)
		return -1;
	if ((*out = calloc(json_array_size(a) + 1, sizeof(char *))) == NULL)
		return -1;
	json_array_foreach(a, i, v) {
		const char *s = json_string_value(v);

		if (s == NULL || *s == '\0' || strlen(s) > 1024 ||
		    (scopes && !policy_scope_valid(s)))
			return -1;
		if (((*out)[i] = strdup(s)) == NULL)
			return -1;
		(*n)++;
	}
	return 0;
}

int
catoken_rec_parse(json_t *o, struct catoken_rec *r, char *err, size_t errlen)
{
	static const char *const keys[] = { "agent", "roles", "scopes", "lifetime_s",
	    "created", "expires", "used_at", "serial", "key", NULL };
	const char *k, *agent, *serial, *key;
	json_t *v;
	size_t i;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(o))
		goto bad;
	json_object_foreach(o, k, v) {
		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (keys[i] == NULL)
			goto bad;
	}
	agent = json_string_value(json_object_get(o, "agent"));
	if (agent == NULL || !certify_agent_id_valid(agent))
		goto bad;
	snprintf(r->agent, sizeof(r->agent), "%s", agent);
	if ((v = json_object_get(o, "roles")) != NULL) {
		r->set_roles = 1;
		if (catoken_strv(v, CATOKEN_MAX_ROLES, 0, &r->roles, &r->nroles) == -1)
			goto bad;
	}
	if ((v = json_object_get(o, "scopes")) != NULL) {
		r->set_scopes = 1;
		if (catoken_strv(v, CATOKEN_MAX_SCOPES, 1, &r->scopes, &r->nscopes) == -1)
			goto bad;
	}
	if (!json_is_integer(json_object_get(o, "lifetime_s")) ||
	    !json_is_integer(json_object_get(o, "created")) ||
	    !json_is_integer(json_object_get(o, "expires")))
		goto bad;
	r->lifetime_s = (long)json_integer_value(json_object_get(o, "lifetime_s"));
	r->created = json_integer_value(json_object_get(o, "created"));
	r->expires = json_integer_value(json_object_get(o, "expires"));
	if (r->lifetime_s <= 0 || r->created <= 0 || r->expires <= 0)
		goto bad;
	if ((v = json_object_get(o, "used_at")) != NULL) {
		serial = json_string_value(json_object_get(o, "serial"));
		if (!json_is_integer(v) || json_integer_value(v) <= 0 || serial == NULL ||
		    strlen(serial) >= sizeof(r->serial))
			goto bad;
		r->used_at = json_integer_value(v);
		snprintf(r->serial, sizeof(r->serial), "%s", serial);
		if ((v = json_object_get(o, "key")) != NULL) {
			key = json_string_value(v);
			if (key == NULL || !catoken_is_hex64(key))
				goto bad;
			memcpy(r->key, key, 65);
		}
	} else if (json_object_get(o, "serial") != NULL || json_object_get(o, "key") != NULL)
		goto bad;
	return 0;
bad:
	catoken_rec_free(r);
	snprintf(err, errlen, "malformed token record");
	return -1;
}

static char *
catoken_path(const char *dir, const unsigned char hash[32])
{
	char hex[65], *p;

	text_hex(hash, 32, hex);
	if (asprintf(&p, "%s/%s.json", dir, hex) < 0)
		return NULL;
	return p;
}

static int
catoken_write(const char *dir, const unsigned char hash[32], const struct catoken_rec *r,
    int create, int syncdir, struct file_stage *stage, char *err, size_t errlen)
{
	struct stat st;
	json_t *o = NULL;
	char *path = NULL, *text = NULL;
	int rc = -1;

	if (stat(dir, &st) == -1 && (file_mkdirs(dir, 0700) == -1 || chmod(dir, 0700) == -1)) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if ((path = catoken_path(dir, hash)) == NULL || (o = catoken_rec_json(r)) == NULL ||
	    (text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (create && access(path, F_OK) == 0) {
		snprintf(err, errlen, "a token with this hash already exists");
		goto fail;
	}
	if (!create && access(path, F_OK) == -1) {
		snprintf(err, errlen, "no such token");
		goto fail;
	}
	if ((stage ? file_stage_write(stage, path, text, strlen(text), 0600) :
	    syncdir ? file_write_atomic(path, text, strlen(text), 0600) :
	    file_write_atomic_nodirsync(path, text, strlen(text), 0600)) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		goto fail;
	}
	rc = 0;
fail:
	free(text);
	free(path);
	json_decref(o);
	return rc;
}

int
catoken_put(const char *dir, const unsigned char hash[32], const struct catoken_rec *r,
    char *err, size_t errlen)
{
	return catoken_write(dir, hash, r, 1, 1, NULL, err, errlen);
}

int
catoken_update(const char *dir, const unsigned char hash[32], const struct catoken_rec *r,
    char *err, size_t errlen)
{
	return catoken_write(dir, hash, r, 0, 1, NULL, err, errlen);
}

int
catoken_update_staged(const char *dir, const unsigned char hash[32],
    const struct catoken_rec *r, struct file_stage *stage, char *err, size_t errlen)
{
	return catoken_write(dir, hash, r, 0, 0, stage, err, errlen);
}

int
catoken_get(const char *dir, const unsigned char hash[32], struct catoken_rec *r, char *err,
    size_t errlen)
{
	json_error_t je;
	json_t *o = NULL;
	char *path, *text = NULL;
	size_t len;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if ((path = catoken_path(dir, hash)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (file_read(path, CATOKEN_FILE_MAX, &text, &len) == -1) {
		if (errno == ENOENT)
			rc = 1;
		else
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if ((o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je)) == NULL ||
	    catoken_rec_parse(o, r, err, errlen) == -1) {
		snprintf(err, errlen, "%s: malformed token record", path);
		goto fail;
	}
	rc = 0;
fail:
	json_decref(o);
	free(text);
	free(path);
	return rc;
}

int
catoken_prune(const char *dir, time_t now, long keep_s)
{
	unsigned char hash[32];
	struct catoken_rec r;
	struct dirent *de;
	char err[256], *path;
	size_t i;
	DIR *d;
	int removed = 0;

	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;

		if (strlen(n) != 64 + 5 || strcmp(n + 64, ".json") != 0)
			continue;
		for (i = 0; i < 32; i++) {
			unsigned hi, lo;

			if (sscanf(n + 2 * i, "%1x%1x", &hi, &lo) != 2)
				break;
			hash[i] = (unsigned char)(hi << 4 | lo);
		}
		if (i != 32 || catoken_get(dir, hash, &r, err, sizeof(err)) != 0)
			continue;
		if (r.expires + keep_s < (long long)now && (path = catoken_path(dir, hash)) != NULL) {
			if (unlink(path) == 0)
				removed++;
			free(path);
		}
		catoken_rec_free(&r);
	}
	closedir(d);
	if (removed > 0)
		(void)file_fsync_dir(dir);
	return removed;
}
