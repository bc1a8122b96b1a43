/* PIN sources (p11.h): where a token's PIN comes from and reading it, from a file
 * or the environment, into memory that is wiped after use. No PKCS#11 calls. */
#include "p11.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"

#define P11_PIN_MAX	256

/* ------------------------------------------------------------------------- */
/* Secrets */

static int
p11_read_fd_line(const char *file, char *buf, size_t bufsz, size_t *lenp,
    char *err, size_t errlen)
{
	struct stat st;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot open PIN file %s: %s", file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("PIN file %s is accessible by group or others (mode %03o)",
		    file, (unsigned int)(st.st_mode & 0777));
	while (len < bufsz - 1) {
		n = read(fd, buf + len, bufsz - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "cannot read PIN file %s: %s", file,
			    strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	close(fd);
	buf[len] = '\0';
	*lenp = strcspn(buf, "\n");
	if (*lenp == len && len == bufsz - 1) {
		snprintf(err, errlen, "PIN in %s is too long", file);
		return -1;
	}
	return 0;
}

int
p11_read_secret(const char *file, const char *env, char **out, char *err,
    size_t errlen)
{
	char buf[P11_PIN_MAX + 2];
	const char *v;
	size_t len;
	int ret = -1;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (file != NULL && *file != '\0') {
		if (p11_read_fd_line(file, buf, sizeof(buf), &len, err, errlen) == -1)
			goto done;
	} else if (env != NULL && *env != '\0') {
		if ((v = getenv(env)) == NULL) {
			snprintf(err, errlen, "environment variable %s is not set", env);
			goto done;
		}
		if ((len = strlen(v)) > P11_PIN_MAX) {
			snprintf(err, errlen, "PIN in environment variable %s is too long", env);
			goto done;
		}
		memcpy(buf, v, len);
	} else {
		snprintf(err, errlen, "no PIN source: set pkcs11.pin_file (or pin_env), "
		    "or pin-source in the URI");
		goto done;
	}
	/* Files written on Windows end their line with \r\n. */
	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
		len--;
	if (len == 0) {
		snprintf(err, errlen, "the PIN from %s %s is empty",
		    file && *file ? "file" : "environment variable", file && *file ? file : env);
		goto done;
	}
	if ((*out = malloc(len + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	memcpy(*out, buf, len);
	(*out)[len] = '\0';
	ret = 0;
done:
	OPENSSL_cleanse(buf, sizeof(buf));
	return ret;
}

void
p11_secret_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

int
p11_pin_source(const struct p11_defaults *d, const struct p11_uri *u, char **pin,
    char **file, char **env)
{
	const char *src;

	*pin = *file = *env = NULL;
	if (u->pin_value != NULL)
		*pin = strdup(u->pin_value);
	else if (u->pin_source != NULL) {
		src = u->pin_source;
		if (strncasecmp(src, "file://", 7) == 0)
			src += 7;
		else if (strncasecmp(src, "file:", 5) == 0)
			src += 5;
		*file = strdup(src);
	} else if (d->pin_file != NULL && *d->pin_file != '\0')
		*file = strdup(d->pin_file);
	else if (d->pin_env != NULL && *d->pin_env != '\0')
		*env = strdup(d->pin_env);
	else
		return 0;
	if (*pin == NULL && *file == NULL && *env == NULL)
		return -1;
	return 0;
}
