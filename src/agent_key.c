/* The agent's private key, in a file or a PKCS#11 token (see include/agent_key.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "agent_key.h"
#include "file.h"
#include "log.h"
#include "p11.h"

#define KEY_FILE_MAX (64 * 1024)
#define KEY_SUFFIX_LEN 17   /* "-YYYYMMDDTHHMMSSZ" */

int
agent_key_check_uri(const char *uri, char *err, size_t errlen)
{
	struct p11_uri u;
	char perr[256];
	int rv = -1;

	if (!p11_is_uri(uri)) {
		snprintf(err, errlen, "--key wants a PKCS#11 URI (pkcs11:token=LABEL;"
		    "object=KEYLABEL), got something else");
		return -1;
	}
	if (p11_uri_parse(uri, &u, perr, sizeof(perr)) == -1) {
		snprintf(err, errlen, "key URI: %s", perr);
		goto done;
	}
	if (u.pin_value != NULL) {
		snprintf(err, errlen, "key URI: pin-value is refused (a PIN on a command "
		    "line shows in ps and shell history): use pin-source=file:PATH or the "
		    "environment variable %s", AGENT_KEY_ENV_PIN);
		goto done;
	}
	if (u.token == NULL || *u.token == '\0') {
		snprintf(err, errlen, "key URI: token=LABEL is required");
		goto done;
	}
	if (u.object == NULL || *u.object == '\0') {
		snprintf(err, errlen, "key URI: object=LABEL (the key's label) is required");
		goto done;
	}
	if (u.type != NULL && strcmp(u.type, "private") != 0) {
		snprintf(err, errlen, "key URI: type=%s: the key is a private key", u.type);
		goto done;
	}
	rv = 0;
done:
	p11_uri_free(&u);
	return rv;
}

/* 1 when s[0..n) ends with "-YYYYMMDDTHHMMSSZ". */
static int
agent_key_has_suffix(const char *s, size_t n)
{
	const char *p;
	size_t i;

	if (n <= KEY_SUFFIX_LEN)
		return 0;
	p = s + n - KEY_SUFFIX_LEN;
	if (p[0] != '-' || p[9] != 'T' || p[16] != 'Z')
		return 0;
	for (i = 1; i < 16; i++)
		if (i != 9 && (p[i] < '0' || p[i] > '9'))
			return 0;
	return 1;
}

char *
agent_key_uri_next(const char *uri, time_t now)
{
	struct buf out;
	const char *path, *query, *seg, *end;
	char stamp[32];
	struct tm tm;
	size_t n, vlen;
	int found = 0, first = 1;

	if (!p11_is_uri(uri) || gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "-%Y%m%dT%H%M%SZ", &tm) == 0)
		return NULL;
	buf_init(&out);
	buf_add(&out, uri, 7);
	path = uri + 7;
	query = strchr(path, '?');
	end = query != NULL ? query : path + strlen(path);
	for (seg = path; seg < end; seg += n + 1) {
		const char *semi = memchr(seg, ';', (size_t)(end - seg));

		n = semi != NULL ? (size_t)(semi - seg) : (size_t)(end - seg);
		if (n == 0 || (n >= 3 && memcmp(seg, "id=", 3) == 0)) {
			if (semi == NULL)
				break;
			continue;
		}
		if (!first)
			buf_addc(&out, ';');
		first = 0;
		if (n >= 7 && memcmp(seg, "object=", 7) == 0) {
			vlen = n - 7;
			if (agent_key_has_suffix(seg + 7, vlen))
				vlen -= KEY_SUFFIX_LEN;
			buf_add(&out, seg, 7 + vlen);
			buf_adds(&out, stamp);
			found = 1;
		} else
			buf_add(&out, seg, n);
		if (semi == NULL)
			break;
	}
	if (query != NULL)
		buf_adds(&out, query);
	if (!found || buf_failed(&out)) {
		buf_free(&out);
		return NULL;
	}
	return buf_detach(&out, NULL);
}

/* Token defaults for agent keys: the module and PIN from the environment. */
static void
agent_key_defaults(struct p11_defaults *d)
{
	memset(d, 0, sizeof(*d));
	d->module = getenv(AGENT_KEY_ENV_MODULE);
	if (getenv(AGENT_KEY_ENV_PIN) != NULL)
		d->pin_env = AGENT_KEY_ENV_PIN;
}

int
agent_key_generate_file(EVP_PKEY **out)
{
	if ((*out = EVP_EC_gen("P-256")) == NULL) {
		log_sslerr("generating an EC P-256 key");
		return -1;
	}
	return 0;
}

int
agent_key_generate_token(const char *uri, EVP_PKEY **out)
{
	struct p11_defaults d;

	agent_key_defaults(&d);
	return p11_generate_ec_key(&d, uri, out);
}

int
agent_key_load_token(const char *uri, EVP_PKEY **out)
{
	struct p11_defaults d;

	agent_key_defaults(&d);
	return p11_load_private_key(&d, uri, 0, out);
}

int
agent_key_load_pem(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	int rv = -1;

	*out = NULL;
	if (file_read(path, KEY_FILE_MAX, &data, &len) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL ||
	    (*out = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL) {
		snprintf(err, errlen, "%s: not a PEM private key (or one with a "
		    "passphrase, which certgate agent does not use)", path);
		ERR_clear_error();
		goto done;
	}
	rv = 0;
done:
	BIO_free(bio);
	OPENSSL_cleanse(data, len);
	free(data);
	return rv;
}

int
agent_key_pem(EVP_PKEY *key, struct buf *out)
{
	BIO *bio;
	char *p;
	long n;
	int rv = -1;

	if ((bio = BIO_new(BIO_s_secmem())) == NULL)
		return -1;
	if (PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1 &&
	    (n = BIO_get_mem_data(bio, &p)) > 0)
		rv = buf_add(out, p, (size_t)n);
	BIO_free(bio);
	return rv;
}
