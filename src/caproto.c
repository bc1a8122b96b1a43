/* The gateway <-> CA service protocol codec (caproto.h). */
#include "caproto.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/obj_mac.h>

#include "base64.h"
#include "certify.h"
#include "text.h"

#define CAPROTO_MAX_OCSP	32768

static const struct {
	const char *name;
	int nid;
	size_t len;
} caproto_mds[] = {
	{ "sha1", NID_sha1, 20 },
	{ "sha256", NID_sha256, 32 },
	{ "sha384", NID_sha384, 48 },
	{ "sha512", NID_sha512, 64 },
};

static const char *const caproto_errs[] = {
	[CAPROTO_OK] = "ok",
	[CAPROTO_E_BAD_REQUEST] = "bad_request",
	[CAPROTO_E_UNAUTHORIZED] = "unauthorized",
	[CAPROTO_E_FORBIDDEN] = "forbidden",
	[CAPROTO_E_RATE_LIMITED] = "rate_limited",
	[CAPROTO_E_UNAVAILABLE] = "unavailable",
	[CAPROTO_E_INTERNAL] = "internal",
};

const char *
caproto_err_name(enum caproto_err e)
{
	if ((size_t)e >= sizeof(caproto_errs) / sizeof(caproto_errs[0]))
		return NULL;
	return caproto_errs[e];
}

size_t
caproto_frame_len(const unsigned char p[4])
{
	uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];

	return n >= 1 && n <= CAPROTO_MAX ? n : 0;
}

int
caproto_sockaddr(const char *path, struct sockaddr_un *sa, unsigned *salen)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	if (n == 0 || n >= sizeof(sa->sun_path))
		return -1;
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n + 1);
	*salen = (unsigned)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

/* ---- field checks ---------------------------------------------------------- */

/* Only these keys, each at most once (duplicates are refused by the loader). */
static int
caproto_keys(json_t *o, const char *const *allowed, char *err, size_t errlen)
{
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach(o, k, v) {
		for (i = 0; allowed[i] && strcmp(allowed[i], k) != 0; i++)
			;
		if (allowed[i] == NULL) {
			snprintf(err, errlen, "unknown field \"%.40s\"", k);
			return -1;
		}
	}
	return 0;
}

/* A printable ASCII string of 1..max characters without space, quote or backslash. */
static const char *
caproto_word(json_t *o, const char *key, size_t max, int required, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	size_t i, n;

	if (v == NULL) {
		if (required)
			snprintf(err, errlen, "missing \"%s\"", key);
		return NULL;
	}
	if ((s = json_string_value(v)) == NULL) {
		snprintf(err, errlen, "\"%s\" must be a string", key);
		return NULL;
	}
	n = json_string_length(v);
	if (n == 0 || n > max || strlen(s) != n) {
		snprintf(err, errlen, "\"%s\" must be 1 to %zu characters", key, max);
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') {
			snprintf(err, errlen, "\"%s\" has a character that is not allowed", key);
			return NULL;
		}
	return s;
}

/* Base64 field of 1..max bytes, malloc'd. -1 when present but bad, or required and
 * missing; 0 with *out NULL when absent and optional. */
static int
caproto_b64(json_t *o, const char *key, size_t max, int required, unsigned char **out,
    size_t *outlen, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	struct buf b;

	*out = NULL;
	*outlen = 0;
	if (v == NULL) {
		if (!required)
			return 0;
		snprintf(err, errlen, "missing \"%s\"", key);
		return -1;
	}
	if (!json_is_string(v) || json_string_length(v) > base64_len(max, 0)) {
		snprintf(err, errlen, "\"%s\" must be base64 of at most %zu bytes", key, max);
		return -1;
	}
	buf_init(&b);
	if (base64_decode(&b, json_string_value(v), json_string_length(v), 0) == -1 ||
	    b.len == 0 || b.len > max) {
		buf_free(&b);
		snprintf(err, errlen, "\"%s\" is not base64 of 1 to %zu bytes", key, max);
		return -1;
	}
	*outlen = b.len;
	if ((*out = (unsigned char *)buf_detach(&b, NULL)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Exactly n bytes as 2n hex digits. */
static int
caproto_hex(json_t *v, unsigned char *out, size_t n)
{
	const char *s = json_string_value(v);
	size_t i;
	int hi, lo;

	if (s == NULL || json_string_length(v) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		if ((hi = text_hexval(s[2 * i])) < 0 || (lo = text_hexval(s[2 * i + 1])) < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* A serial: 1..64 hex digits, stored uppercase. */
static int
caproto_serial(json_t *v, char *out, size_t len)
{
	const char *s = json_string_value(v);
	size_t i, n;

	if (s == NULL || (n = json_string_length(v)) == 0 || n > 64 || n >= len)
		return -1;
	for (i = 0; i < n; i++) {
		if (text_hexval(s[i]) < 0)
			return -1;
		out[i] = (s[i] >= 'a' && s[i] <= 'f') ? (char)(s[i] - 32) : s[i];
	}
	out[n] = '\0';
	return 0;
}

static int
caproto_set_b64(json_t *o, const char *key, const unsigned char *p, size_t n)
{
	struct buf b;
	int rc;

	buf_init(&b);
	if (base64_encode(&b, p, n, 0, 0) == -1) {
		buf_free(&b);
		return -1;
	}
	rc = json_object_set_new(o, key, json_stringn(b.p, b.len));
	buf_free(&b);
	return rc;
}

static int
caproto_dump_cb(const char *p, size_t n, void *arg)
{
	return buf_add(arg, p, n);
}

/* Appends o as one frame. */
static int
caproto_frame(json_t *o, struct buf *out)
{
	unsigned char hdr[4];
	size_t start = out->len, n;

	if (buf_add(out, "\0\0\0\0", 4) == -1 ||
	    json_dump_callback(o, caproto_dump_cb, out, JSON_COMPACT) != 0 || buf_failed(out))
		return -1;
	n = out->len - start - 4;
	if (n == 0 || n > CAPROTO_MAX) {
		out->len = start;
		return -1;
	}
	hdr[0] = (unsigned char)(n >> 24);
	hdr[1] = (unsigned char)(n >> 16);
	hdr[2] = (unsigned char)(n >> 8);
	hdr[3] = (unsigned char)n;
	memcpy(out->p + start, hdr, 4);
	return 0;
}

/* ---- requests ----------------------------------------------------------------- */

static const char *
caproto_op_name(enum caproto_op op)
{
	switch (op) {
	case CAPROTO_PING: return "ping";
	case CAPROTO_ENROLL: return "enroll";
	case CAPROTO_RENEW: return "renew";
	case CAPROTO_OCSP: return "ocsp";
	}
	return NULL;
}

int
caproto_req_encode(const struct caproto_req *r, struct buf *out, char *err, size_t errlen)
{
	json_t *o = json_object(), *ids, *id;
	char hex[129];
	size_t i, m;
	int bad = 0, rc = -1;

	if (o == NULL)
		goto oom;
	bad |= json_object_set_new(o, "v", json_integer(1));
	bad |= json_object_set_new(o, "op", json_string(caproto_op_name(r->op)));
	switch (r->op) {
	case CAPROTO_PING:
		break;
	case CAPROTO_ENROLL:
		bad |= json_object_set_new(o, "token", json_string(r->token));
		bad |= caproto_set_b64(o, "spki", r->spki, r->spki_len);
		if (r->agent[0])
			bad |= json_object_set_new(o, "agent", json_string(r->agent));
		break;
	case CAPROTO_RENEW:
		bad |= caproto_set_b64(o, "cert", r->cert, r->cert_len);
		bad |= caproto_set_b64(o, "spki", r->spki, r->spki_len);
		break;
	case CAPROTO_OCSP:
		if (r->nids == 0 || r->nids > CAPROTO_MAX_IDS || (ids = json_array()) == NULL ||
		    json_object_set_new(o, "ids", ids) == -1)
			goto bad;
		for (i = 0; i < r->nids; i++) {
			for (m = 0; m < sizeof(caproto_mds) / sizeof(caproto_mds[0]); m++)
				if (caproto_mds[m].nid == r->ids[i].md_nid)
					break;
			if (m == sizeof(caproto_mds) / sizeof(caproto_mds[0]) ||
			    r->ids[i].name_hash_len != caproto_mds[m].len ||
			    r->ids[i].key_hash_len != caproto_mds[m].len)
				goto bad;
			if ((id = json_object()) == NULL || json_array_append_new(ids, id) == -1)
				goto oom;
			bad |= json_object_set_new(id, "hash", json_string(caproto_mds[m].name));
			text_hex(r->ids[i].name_hash, r->ids[i].name_hash_len, hex);
			bad |= json_object_set_new(id, "name_hash", json_string(hex));
			text_hex(r->ids[i].key_hash, r->ids[i].key_hash_len, hex);
			bad |= json_object_set_new(id, "key_hash", json_string(hex));
			bad |= json_object_set_new(id, "serial", json_string(r->ids[i].serial));
		}
		if (r->has_nonce)
			bad |= caproto_set_b64(o, "nonce", r->nonce, r->nonce_len);
		break;
	}
	if (r->peer[0] && (r->op == CAPROTO_ENROLL || r->op == CAPROTO_RENEW))
		bad |= json_object_set_new(o, "peer", json_string(r->peer));
	if (r->deadline_ms > 0 && (r->op == CAPROTO_ENROLL || r->op == CAPROTO_RENEW))
		bad |= json_object_set_new(o, "deadline", json_integer(r->deadline_ms));
	if (bad)
		goto oom;
	/* What this side would refuse, the other side would too: check before sending. */
	{
		struct caproto_req chk;
		struct buf b;

		buf_init(&b);
		if (caproto_frame(o, &b) == -1) {
			buf_free(&b);
			goto bad;
		}
		if (caproto_req_decode(b.p + 4, b.len - 4, &chk, err, errlen) == -1) {
			buf_wipe(&b);
			goto out;
		}
		caproto_req_clear(&chk);
		rc = buf_add(out, b.p, b.len);
		buf_wipe(&b);
		if (rc == -1)
			goto oom;
	}
	goto out;
bad:
	snprintf(err, errlen, "invalid request");
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	json_decref(o);
	return rc;
}

static int
caproto_decode_ocsp(json_t *o, struct caproto_req *r, char *err, size_t errlen)
{
	static const char *const idkeys[] = { "hash", "name_hash", "key_hash", "serial", NULL };
	json_t *ids = json_object_get(o, "ids"), *id;
	unsigned char *nonce = NULL;
	const char *h;
	size_t i, m, nl;

	if (!json_is_array(ids) || json_array_size(ids) == 0 ||
	    json_array_size(ids) > CAPROTO_MAX_IDS) {
		snprintf(err, errlen, "\"ids\" must be an array of 1 to %d CertIDs", CAPROTO_MAX_IDS);
		return -1;
	}
	json_array_foreach(ids, i, id) {
		struct caproto_id *c = &r->ids[i];

		if (!json_is_object(id) || caproto_keys(id, idkeys, err, errlen) == -1) {
			if (!json_is_object(id))
				snprintf(err, errlen, "a CertID must be an object");
			return -1;
		}
		h = json_string_value(json_object_get(id, "hash"));
		for (m = 0; h && m < sizeof(caproto_mds) / sizeof(caproto_mds[0]); m++)
			if (strcmp(caproto_mds[m].name, h) == 0)
				break;
		if (h == NULL || m == sizeof(caproto_mds) / sizeof(caproto_mds[0])) {
			snprintf(err, errlen, "CertID hash must be sha1, sha256, sha384 or sha512");
			return -1;
		}
		c->md_nid = caproto_mds[m].nid;
		c->name_hash_len = c->key_hash_len = caproto_mds[m].len;
		if (caproto_hex(json_object_get(id, "name_hash"), c->name_hash, c->name_hash_len) ||
		    caproto_hex(json_object_get(id, "key_hash"), c->key_hash, c->key_hash_len)) {
			snprintf(err, errlen, "CertID hashes must be %zu hex digits", 2 * caproto_mds[m].len);
			return -1;
		}
		if (caproto_serial(json_object_get(id, "serial"), c->serial, sizeof(c->serial))) {
			snprintf(err, errlen, "CertID serial must be 1 to 64 hex digits");
			return -1;
		}
		r->nids++;
	}
	if (caproto_b64(o, "nonce", CAPROTO_MAX_NONCE, 0, &nonce, &nl, err, errlen) == -1)
		return -1;
	if (nonce != NULL) {
		memcpy(r->nonce, nonce, nl);
		r->nonce_len = nl;
		r->has_nonce = 1;
		free(nonce);
	}
	return 0;
}

int
caproto_req_decode(const char *json, size_t len, struct caproto_req *r, char *err,
    size_t errlen)
{
	static const char *const k_ping[] = { "v", "op", NULL };
	static const char *const k_enroll[] = { "v", "op", "token", "spki", "agent", "peer",
	    "deadline", NULL };
	static const char *const k_renew[] = { "v", "op", "cert", "spki", "peer", "deadline",
	    NULL };
	static const char *const k_ocsp[] = { "v", "op", "ids", "nonce", NULL };
	const char *op, *s;
	json_t *o, *v;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (len == 0 || len > CAPROTO_MAX ||
	    (o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL)) == NULL) {
		snprintf(err, errlen, "not a JSON object");
		return -1;
	}
	if (!json_is_object(o)) {
		snprintf(err, errlen, "not a JSON object");
		goto fail;
	}
	v = json_object_get(o, "v");
	if (!json_is_integer(v) || json_integer_value(v) != 1) {
		snprintf(err, errlen, "unsupported protocol version (want \"v\": 1)");
		goto fail;
	}
	if ((op = json_string_value(json_object_get(o, "op"))) == NULL) {
		snprintf(err, errlen, "missing \"op\"");
		goto fail;
	}
	if (strcmp(op, "ping") == 0) {
		r->op = CAPROTO_PING;
		rc = caproto_keys(o, k_ping, err, errlen);
		goto fail;
	} else if (strcmp(op, "enroll") == 0) {
		r->op = CAPROTO_ENROLL;
		if (caproto_keys(o, k_enroll, err, errlen) == -1 ||
		    (s = caproto_word(o, "token", sizeof(r->token) - 1, 1, err, errlen)) == NULL)
			goto fail;
		snprintf(r->token, sizeof(r->token), "%s", s);
		if (json_object_get(o, "agent") != NULL) {
			if ((s = caproto_word(o, "agent", sizeof(r->agent) - 1, 1, err, errlen)) == NULL)
				goto fail;
			if (!certify_agent_id_valid(s)) {
				snprintf(err, errlen, "\"agent\" is not a valid agent id");
				goto fail;
			}
			snprintf(r->agent, sizeof(r->agent), "%s", s);
		}
	} else if (strcmp(op, "renew") == 0) {
		r->op = CAPROTO_RENEW;
		if (caproto_keys(o, k_renew, err, errlen) == -1 ||
		    caproto_b64(o, "cert", CAPROTO_MAX_DER, 1, &r->cert, &r->cert_len, err,
		    errlen) == -1)
			goto fail;
	} else if (strcmp(op, "ocsp") == 0) {
		r->op = CAPROTO_OCSP;
		if (caproto_keys(o, k_ocsp, err, errlen) == -1 ||
		    caproto_decode_ocsp(o, r, err, errlen) == -1)
			goto fail;
		rc = 0;
		goto fail;
	} else {
		snprintf(err, errlen, "unknown op \"%.20s\"", op);
		goto fail;
	}
	/* enroll and renew */
	if (caproto_b64(o, "spki", CAPROTO_MAX_DER, 1, &r->spki, &r->spki_len, err, errlen) == -1)
		goto fail;
	if (json_object_get(o, "peer") != NULL) {
		if ((s = caproto_word(o, "peer", sizeof(r->peer) - 1, 1, err, errlen)) == NULL)
			goto fail;
		snprintf(r->peer, sizeof(r->peer), "%s", s);
	}
	if ((v = json_object_get(o, "deadline")) != NULL) {
		/* Positive and below 2^53 ms (year 287396): an exact JSON number. */
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) >= (1LL << 53)) {
			snprintf(err, errlen, "\"deadline\" must be a positive integer (ms)");
			goto fail;
		}
		r->deadline_ms = json_integer_value(v);
	}
	rc = 0;
fail:
	json_decref(o);
	if (rc == -1)
		caproto_req_clear(r);
	return rc;
}

void
caproto_req_clear(struct caproto_req *r)
{
	OPENSSL_cleanse(r->token, sizeof(r->token));
	free(r->spki);
	free(r->cert);
	r->spki = r->cert = NULL;
	r->spki_len = r->cert_len = 0;
}

/* ---- replies ------------------------------------------------------------------- */

void
caproto_reply_error(struct caproto_reply *r, enum caproto_err e, const char *fmt, ...)
{
	va_list ap;

	r->err = e;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

int
caproto_reply_encode(const struct caproto_reply *r, struct buf *out)
{
	json_t *o = json_object(), *chain;
	size_t i;
	int bad = 0, rc = -1;

	if (o == NULL)
		return -1;
	if (r->err != CAPROTO_OK) {
		bad |= json_object_set_new(o, "ok", json_false());
		bad |= json_object_set_new(o, "error", json_string(caproto_err_name(r->err) ?
		    caproto_err_name(r->err) : "internal"));
		bad |= json_object_set_new(o, "message", json_string(r->message));
		if (r->err == CAPROTO_E_RATE_LIMITED)
			bad |= json_object_set_new(o, "retry_after",
			    json_integer(r->retry_after > 0 ? r->retry_after : 1));
		goto done;
	}
	bad |= json_object_set_new(o, "ok", json_true());
	if (r->ca[0]) {
		bad |= json_object_set_new(o, "ca", json_string(r->ca));
		bad |= json_object_set_new(o, "pid", json_integer(r->pid));
	}
	if (r->cert != NULL) {
		bad |= json_object_set_new(o, "serial", json_string(r->serial));
		bad |= json_object_set_new(o, "agent", json_string(r->agent));
		bad |= json_object_set_new(o, "not_after", json_string(r->not_after));
		bad |= caproto_set_b64(o, "cert", r->cert, r->cert_len);
		if ((chain = json_array()) == NULL || json_object_set_new(o, "chain", chain) == -1)
			goto fail;
		for (i = 0; i < r->nchain; i++) {
			json_t *tmp = json_object();

			if (tmp == NULL || caproto_set_b64(tmp, "x", r->chain[i], r->chain_len[i]) ||
			    json_array_append(chain, json_object_get(tmp, "x")) == -1)
				bad = 1;
			json_decref(tmp);
		}
	}
	if (r->ocsp != NULL)
		bad |= caproto_set_b64(o, "ocsp", r->ocsp, r->ocsp_len);
done:
	if (!bad)
		rc = caproto_frame(o, out);
fail:
	json_decref(o);
	return rc;
}

int
caproto_reply_decode(const char *json, size_t len, struct caproto_reply *r, char *err,
    size_t errlen)
{
	static const char *const k_err[] = { "ok", "error", "message", "retry_after", NULL };
	static const char *const k_ok[] = { "ok", "ca", "pid", "serial", "agent", "not_after",
	    "cert", "chain", "ocsp", NULL };
	const char *s;
	json_t *o, *v, *chain;
	size_t i, e;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (len == 0 || len > CAPROTO_MAX ||
	    (o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !json_is_object(o)) {
		if (len > 0 && len <= CAPROTO_MAX)
			json_decref(o);
		snprintf(err, errlen, "the CA's reply is not a JSON object");
		return -1;
	}
	v = json_object_get(o, "ok");
	if (json_is_false(v)) {
		if (caproto_keys(o, k_err, err, errlen) == -1)
			goto fail;
		s = json_string_value(json_object_get(o, "error"));
		for (e = 1; s && e < sizeof(caproto_errs) / sizeof(caproto_errs[0]); e++)
			if (strcmp(caproto_errs[e], s) == 0)
				break;
		if (s == NULL || e == sizeof(caproto_errs) / sizeof(caproto_errs[0])) {
			snprintf(err, errlen, "the CA's reply has an unknown error kind");
			goto fail;
		}
		r->err = (enum caproto_err)e;
		s = json_string_value(json_object_get(o, "message"));
		snprintf(r->message, sizeof(r->message), "%s", s ? s : "");
		v = json_object_get(o, "retry_after");
		if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 86400)) {
			snprintf(err, errlen, "the CA's reply has a bad retry_after");
			goto fail;
		}
		r->retry_after = v ? (int)json_integer_value(v) : 0;
		rc = 0;
		goto fail;
	}
	if (!json_is_true(v) || caproto_keys(o, k_ok, err, errlen) == -1) {
		if (!json_is_true(v))
			snprintf(err, errlen, "the CA's reply has no \"ok\"");
		goto fail;
	}
	if ((v = json_object_get(o, "ca")) != NULL) {
		s = json_string_value(v);
		if (s == NULL || strlen(s) != 64 || !json_is_integer(json_object_get(o, "pid")))
			goto bad;
		snprintf(r->ca, sizeof(r->ca), "%s", s);
		r->pid = json_integer_value(json_object_get(o, "pid"));
	}
	if (json_object_get(o, "cert") != NULL) {
		if (caproto_b64(o, "cert", CAPROTO_MAX_DER, 1, &r->cert, &r->cert_len, err,
		    errlen) == -1)
			goto fail;
		if ((s = caproto_word(o, "serial", 64, 1, err, errlen)) == NULL)
			goto fail;
		snprintf(r->serial, sizeof(r->serial), "%s", s);
		if ((s = caproto_word(o, "agent", 64, 1, err, errlen)) == NULL)
			goto fail;
		snprintf(r->agent, sizeof(r->agent), "%s", s);
		if ((s = caproto_word(o, "not_after", sizeof(r->not_after) - 1, 1, err, errlen)) == NULL)
			goto fail;
		snprintf(r->not_after, sizeof(r->not_after), "%s", s);
		chain = json_object_get(o, "chain");
		if (!json_is_array(chain) || json_array_size(chain) > CAPROTO_MAX_CHAIN)
			goto bad;
		json_array_foreach(chain, i, v) {
			json_t *tmp = json_pack("{s:O}", "x", v);

			if (tmp == NULL || caproto_b64(tmp, "x", CAPROTO_MAX_DER, 1, &r->chain[i],
			    &r->chain_len[i], err, errlen) == -1) {
				json_decref(tmp);
				goto fail;
			}
			json_decref(tmp);
			r->nchain++;
		}
	}
	if (json_object_get(o, "ocsp") != NULL &&
	    caproto_b64(o, "ocsp", CAPROTO_MAX_OCSP, 1, &r->ocsp, &r->ocsp_len, err, errlen) == -1)
		goto fail;
	r->err = CAPROTO_OK;
	rc = 0;
	goto fail;
bad:
	snprintf(err, errlen, "the CA's reply is malformed");
fail:
	json_decref(o);
	if (rc == -1)
		caproto_reply_clear(r);
	return rc;
}

void
caproto_reply_clear(struct caproto_reply *r)
{
	size_t i;

	free(r->cert);
	free(r->ocsp);
	for (i = 0; i < r->nchain; i++)
		free(r->chain[i]);
	r->cert = r->ocsp = NULL;
	r->nchain = 0;
}
