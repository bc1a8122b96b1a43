/* AGENTDIR files and their crash-safe replacement (see include/agent_dir.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "agent_dir.h"
#include "agent_key.h"
#include "buf.h"
#include "file.h"
#include "log.h"

#define DIR_FILE_MAX (1 << 20)

static char *
agent_dir_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) == -1)
		return NULL;
	return p;
}

static int
agent_dir_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

STACK_OF(X509) *
agent_dir_read_certs(const char *path)
{
	STACK_OF(X509) *sk = NULL;
	char *data = NULL;
	size_t len;
	BIO *bio = NULL;
	X509 *c;

	if (file_read(path, DIR_FILE_MAX, &data, &len) == -1) {
		log_err("%s: %s", path, strerror(errno));
		return NULL;
	}
	if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL ||
	    (sk = sk_X509_new_null()) == NULL)
		goto oom;
	while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(sk, c) <= 0) {
			X509_free(c);
			goto oom;
		}
	ERR_clear_error();
	if (sk_X509_num(sk) == 0) {
		log_err("%s: no PEM certificate in it", path);
		sk_X509_free(sk);
		sk = NULL;
	}
	BIO_free(bio);
	free(data);
	return sk;
oom:
	log_err("%s: out of memory", path);
	sk_X509_pop_free(sk, X509_free);
	BIO_free(bio);
	free(data);
	return NULL;
}

/* The key file's URI: first line, surrounding whitespace removed; checked. */
static char *
agent_dir_read_uri(const char *path)
{
	char *data = NULL, *s, *e, err[300];
	size_t len;

	if (file_read(path, 8192, &data, &len) == -1) {
		log_err("%s: %s", path, strerror(errno));
		return NULL;
	}
	for (s = data; *s == ' ' || *s == '\t'; s++)
		;
	e = s + strcspn(s, "\r\n");
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*e = '\0';
	memmove(data, s, (size_t)(e - s) + 1);
	if (agent_key_check_uri(data, err, sizeof(err)) == -1) {
		log_err("%s: %s", path, err);
		free(data);
		return NULL;
	}
	return data;
}

/* Loads the key stored at path (a key.pem or key.uri, by name). *uri gets the URI
 * of a token key. */
static EVP_PKEY *
agent_dir_read_key(const char *path, int token, char **uri)
{
	EVP_PKEY *key = NULL;
	struct stat st;
	char err[300];

	*uri = NULL;
	if (token) {
		if ((*uri = agent_dir_read_uri(path)) == NULL)
			return NULL;
		if (agent_key_load_token(*uri, &key) == -1) {
			log_err("%s: cannot load the key from the token (see above)", path);
			free(*uri);
			*uri = NULL;
		}
		return key;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("%s is readable by others (mode %03o): chmod 600 it",
		    path, (unsigned)(st.st_mode & 0777));
	if (agent_key_load_pem(path, &key, err, sizeof(err)) == -1)
		log_err("%s", err);
	return key;
}

/* 1 when the key in keypath belongs to the first certificate of certpath. */
static int
agent_dir_pair_matches(const char *certpath, const char *keypath, int token)
{
	STACK_OF(X509) *certs;
	EVP_PKEY *key;
	char *uri = NULL;
	int ok = 0;

	if ((certs = agent_dir_read_certs(certpath)) == NULL)
		return 0;
	if ((key = agent_dir_read_key(keypath, token, &uri)) != NULL) {
		ok = X509_check_private_key(sk_X509_value(certs, 0), key) == 1;
		ERR_clear_error();
	}
	EVP_PKEY_free(key);
	free(uri);
	sk_X509_pop_free(certs, X509_free);
	return ok;
}

static int
agent_dir_rename(const char *from, const char *to)
{
	if (rename(from, to) == -1) {
		log_err("rename %s to %s: %s", from, to, strerror(errno));
		return -1;
	}
	return 0;
}

/* Finishes or undoes a replacement interrupted by a crash. */
static int
agent_dir_recover(const char *dir)
{
	static const char *const kinds[2][2] = {
		{ "key.pem", "key.pem.new" }, { "key.uri", "key.uri.new" },
	};
	char *cert = NULL, *certnew = NULL, *key = NULL, *keynew = NULL;
	int rv = -1, k, done = 0;

	if ((cert = agent_dir_path(dir, "cert.pem")) == NULL ||
	    (certnew = agent_dir_path(dir, "cert.pem.new")) == NULL)
		goto oom;
	for (k = 0; k < 2 && !done; k++) {
		free(key);
		free(keynew);
		if ((key = agent_dir_path(dir, kinds[k][0])) == NULL ||
		    (keynew = agent_dir_path(dir, kinds[k][1])) == NULL)
			goto oom;
		if (!agent_dir_exists(certnew)) {
			/* A key written after the certificate cannot be alone. */
			if (agent_dir_exists(keynew) && unlink(keynew) == 0)
				log_warn("%s: removed a leftover new key", keynew);
			continue;
		}
		if (agent_dir_exists(keynew) &&
		    agent_dir_pair_matches(certnew, keynew, k)) {
			log_warn("%s: finishing an interrupted certificate replacement", dir);
			if (agent_dir_rename(keynew, key) == -1 ||
			    agent_dir_rename(certnew, cert) == -1)
				goto fail;
			done = 1;
		} else if (!agent_dir_exists(keynew) && agent_dir_exists(key) &&
		    agent_dir_pair_matches(certnew, key, k)) {
			log_warn("%s: finishing an interrupted certificate replacement "
			    "(the key was already in place)", dir);
			if (agent_dir_rename(certnew, cert) == -1)
				goto fail;
			done = 1;
		}
	}
	if (!done && agent_dir_exists(certnew)) {
		log_warn("%s: undoing an interrupted certificate replacement", dir);
		unlink(certnew);
		for (k = 0; k < 2; k++) {
			free(keynew);
			if ((keynew = agent_dir_path(dir, kinds[k][1])) == NULL)
				goto oom;
			unlink(keynew);
		}
		done = 1;
	}
	if (done)
		(void)file_fsync_dir(dir);
	rv = 0;
	goto fail;
oom:
	log_err("%s: out of memory", dir);
fail:
	free(cert);
	free(certnew);
	free(key);
	free(keynew);
	return rv;
}

int
agent_dir_has_cert(const char *dir)
{
	char *p = agent_dir_path(dir, "cert.pem");
	int rv;

	if (p == NULL)
		return -1;
	rv = agent_dir_exists(p);
	free(p);
	return rv;
}

int
agent_dir_load(const char *dir, struct agent_cred **out)
{
	STACK_OF(X509) *certs = NULL, *anchors = NULL;
	char *certp = NULL, *cap = NULL, *keyuri = NULL, *keypem = NULL, *uri = NULL;
	EVP_PKEY *key = NULL;
	X509 *leaf;
	int token;

	*out = NULL;
	if (agent_dir_recover(dir) == -1)
		return -1;
	if ((certp = agent_dir_path(dir, "cert.pem")) == NULL ||
	    (cap = agent_dir_path(dir, "ca.pem")) == NULL ||
	    (keyuri = agent_dir_path(dir, "key.uri")) == NULL ||
	    (keypem = agent_dir_path(dir, "key.pem")) == NULL) {
		log_err("%s: out of memory", dir);
		goto fail;
	}
	if (!agent_dir_exists(certp)) {
		log_err("%s: no cert.pem: enroll first (certgate agent enroll) or point "
		    "--dir at a directory written by scripts/agent-issue", dir);
		goto fail;
	}
	if ((certs = agent_dir_read_certs(certp)) == NULL ||
	    (anchors = agent_dir_read_certs(cap)) == NULL)
		goto fail;
	token = agent_dir_exists(keyuri);
	if (!token && !agent_dir_exists(keypem)) {
		log_err("%s: neither key.pem nor key.uri: the certificate's key is missing",
		    dir);
		goto fail;
	}
	if ((key = agent_dir_read_key(token ? keyuri : keypem, token, &uri)) == NULL)
		goto fail;
	leaf = sk_X509_shift(certs);
	if (X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		log_err("%s: the key in %s does not belong to cert.pem", dir,
		    token ? "key.uri" : "key.pem");
		X509_free(leaf);
		goto fail;
	}
	*out = agent_cred_new(leaf, certs, key, uri, anchors);
	certs = anchors = NULL;
	key = NULL;
fail:
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(anchors, X509_free);
	EVP_PKEY_free(key);
	free(certp);
	free(cap);
	free(keyuri);
	free(keypem);
	free(uri);
	return *out != NULL ? 0 : -1;
}

static int
agent_dir_pem_certs(struct buf *b, X509 *leaf, STACK_OF(X509) *chain)
{
	BIO *bio;
	char *p;
	long n;
	int i, ok;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	ok = leaf == NULL || PEM_write_bio_X509(bio, leaf) == 1;
	for (i = 0; ok && chain != NULL && i < sk_X509_num(chain); i++)
		ok = PEM_write_bio_X509(bio, sk_X509_value(chain, i)) == 1;
	if (ok && (n = BIO_get_mem_data(bio, &p)) > 0)
		ok = buf_add(b, p, (size_t)n) == 0;
	else
		ok = 0;
	BIO_free(bio);
	return ok ? 0 : -1;
}

static int
agent_dir_write(const char *dir, const char *name, const struct buf *b, mode_t mode)
{
	char *p = agent_dir_path(dir, name);
	int rv = -1;

	if (p == NULL) {
		log_err("%s: out of memory", dir);
		return -1;
	}
	if (file_write_atomic(p, b->p, b->len, mode) == -1)
		log_err("writing %s: %s", p, strerror(errno));
	else
		rv = 0;
	free(p);
	return rv;
}

int
agent_dir_commit(const char *dir, X509 *leaf, STACK_OF(X509) *chain,
    EVP_PKEY *file_key, const char *key_uri, STACK_OF(X509) *anchors)
{
	struct buf certs, keyb;
	char *cert = NULL, *certnew = NULL, *key = NULL, *keynew = NULL, *other = NULL;
	int rv = -1, token = key_uri != NULL;

	buf_init(&certs);
	buf_init(&keyb);
	if ((file_key == NULL) == (key_uri == NULL)) {
		log_err("%s: internal error: a key file or a key URI, not both", dir);
		return -1;
	}
	if (file_mkdirs(dir, 0700) == -1) {
		log_err("creating %s: %s", dir, strerror(errno));
		return -1;
	}
	if ((cert = agent_dir_path(dir, "cert.pem")) == NULL ||
	    (certnew = agent_dir_path(dir, "cert.pem.new")) == NULL ||
	    (key = agent_dir_path(dir, token ? "key.uri" : "key.pem")) == NULL ||
	    (keynew = agent_dir_path(dir, token ? "key.uri.new" : "key.pem.new")) == NULL ||
	    (other = agent_dir_path(dir, token ? "key.pem" : "key.uri")) == NULL)
		goto oom;
	if (anchors != NULL) {
		if (agent_dir_pem_certs(&certs, NULL, anchors) == -1)
			goto oom;
		if (agent_dir_write(dir, "ca.pem", &certs, 0644) == -1)
			goto fail;
		buf_reset(&certs);
	}
	if (agent_dir_pem_certs(&certs, leaf, chain) == -1)
		goto oom;
	if (token)
		buf_addf(&keyb, "%s\n", key_uri);
	else if (agent_key_pem(file_key, &keyb) == -1)
		goto oom;
	if (buf_failed(&keyb))
		goto oom;
	if (agent_dir_write(dir, "cert.pem.new", &certs, 0644) == -1 ||
	    agent_dir_write(dir, token ? "key.uri.new" : "key.pem.new", &keyb, 0600) == -1)
		goto fail;
	if (agent_dir_rename(keynew, key) == -1 || agent_dir_rename(certnew, cert) == -1)
		goto fail;
	if (unlink(other) == -1 && errno != ENOENT)
		log_warn("removing %s: %s", other, strerror(errno));
	(void)file_fsync_dir(dir);
	rv = 0;
	goto fail;
oom:
	log_err("%s: out of memory", dir);
fail:
	if (rv == -1 && certnew != NULL && keynew != NULL && agent_dir_exists(certnew) &&
	    agent_dir_exists(keynew)) {
		/* Nothing renamed yet: the old pair stays. */
		unlink(keynew);
		unlink(certnew);
	}
	buf_wipe(&keyb);
	buf_free(&certs);
	free(cert);
	free(certnew);
	free(key);
	free(keynew);
	free(other);
	return rv;
}

int
agent_dir_lock(const char *dir, int wait_s)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	char *p = agent_dir_path(dir, ".lock");
	int fd, i;

	if (p == NULL) {
		log_err("%s: out of memory", dir);
		return -1;
	}
	if ((fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		log_err("%s: %s", p, strerror(errno));
		free(p);
		return -1;
	}
	for (i = 0; flock(fd, LOCK_EX | LOCK_NB) == -1; i++) {
		if (errno != EWOULDBLOCK || i >= wait_s * 10) {
			log_err("%s: %s", p, errno == EWOULDBLOCK ?
			    "another process holds the renewal lock" : strerror(errno));
			close(fd);
			free(p);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	free(p);
	return fd;
}

void
agent_dir_unlock(int fd)
{
	if (fd >= 0) {
		(void)flock(fd, LOCK_UN);
		close(fd);
	}
}
