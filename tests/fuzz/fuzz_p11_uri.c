/* Fuzz target: RFC 7512 URI parsing (p11_uri_parse) and redaction for messages
 * (p11_uri_redact) on a NUL-terminated copy of the input. The properties that
 * matter: a parse error never echoes the PIN, and a redacted URI never shows a
 * pin-value, whichever case, separator or position the attribute uses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "p11.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PINATTR "pin-value="
#define PINATTR_LEN (sizeof(PINATTR) - 1)

static int
is_sep(char c)
{
	return c == ';' || c == '?' || c == '&';
}

/* Where an attribute may start for the redactor: after the scheme or a separator. */
static int
seg_start(const char *s, size_t i)
{
	if (p11_is_uri(s))
		return i == 7 || (i > 7 && is_sep(s[i - 1]));
	return i == 0 || is_sep(s[i - 1]);
}

/* Every pin-value attribute of the output reads "pin-value=***". */
static void
check_redacted(const char *out)
{
	size_t i, n = strlen(out);

	for (i = 0; i + PINATTR_LEN <= n; i++) {
		if (strncasecmp(out + i, PINATTR, PINATTR_LEN) != 0 || !seg_start(out, i))
			continue;
		if (strncmp(out + i + PINATTR_LEN, "***", 3) != 0)
			abort();
		if (out[i + PINATTR_LEN + 3] != '\0' && !is_sep(out[i + PINATTR_LEN + 3]))
			abort();
	}
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0, nl = strlen(needle);
	const char *p = hay;

	if (nl == 0)
		return 0;
	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p++;
	}
	return n;
}

/* The PIN written literally as a whole attribute, "pin-value=PIN" then a separator
 * or the end, at an attribute start? */
static int
literal_pin(const char *s, const char *pin)
{
	size_t i, n = strlen(s), pl = strlen(pin);

	for (i = 0; i + PINATTR_LEN + pl <= n; i++)
		if (seg_start(s, i) && strncasecmp(s + i, PINATTR, PINATTR_LEN) == 0 &&
		    strncmp(s + i + PINATTR_LEN, pin, pl) == 0 &&
		    (s[i + PINATTR_LEN + pl] == '\0' || is_sep(s[i + PINATTR_LEN + pl])))
			return 1;
	return 0;
}

/* Case-insensitive count of (overlapping) occurrences. */
static size_t
casecount(const char *hay, const char *needle)
{
	size_t n = 0;
	const char *p = hay;

	if (needle[0] == '\0')
		return 0;
	while ((p = strcasestr(p, needle)) != NULL) {
		n++;
		p++;
	}
	return n;
}

/* A failed parse names attributes in quotes but never shows the PIN. Only the
 * quoted parts of the message come from the input; an attribute name is input
 * text too, so a PIN written once (any case) cannot be a name. 'type' echoes its
 * decoded value, which may spell anything. */
static void
check_error(const char *s, const char *err)
{
	char raw[256];
	const char *p, *m;
	size_t i, n, q;

	if (!p11_is_uri(s) || strstr(err, "'type'") != NULL)
		return;
	for (i = 7; s[i] != '\0'; i++)
		if (seg_start(s, i) && strncasecmp(s + i, PINATTR, PINATTR_LEN) == 0)
			break;
	if (s[i] == '\0')
		return;
	p = s + i + PINATTR_LEN;
	for (n = 0; p[n] != '\0' && !is_sep(p[n]); n++)
		;
	if (n == 0 || n >= sizeof(raw))
		return;
	memcpy(raw, p, n);
	raw[n] = '\0';
	if (strchr(raw, '\'') != NULL || casecount(s, raw) != 1)
		return;
	for (m = err; (m = strcasestr(m, raw)) != NULL; m++) {
		for (q = 0, p = err; p < m; p++)
			q += *p == '\'';
		if (q % 2 == 1)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p11_uri u;
	char err[256], *s, *red, *pin = NULL;
	int rc;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	memset(err, 'x', sizeof(err));
	rc = p11_uri_parse(s, &u, err, sizeof(err));
	if (rc != 0 && rc != -1)
		abort();
	if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	if (rc == 0 && (err[0] != '\0' || !p11_is_uri(s)))
		abort();
	if (rc == -1 && err[0] == '\0')
		abort();
	if (rc == 0) {
		if (u.id == NULL && u.id_len != 0)
			abort();
		if (u.slot_id < -1)
			abort();
		if (u.pin_value != NULL && (pin = strdup(u.pin_value)) == NULL)
			abort();
	}
	p11_uri_free(&u);
	if (u.pin_value != NULL || u.token != NULL || u.id != NULL || u.slot_id != -1)
		abort();

	if ((red = p11_uri_redact(s)) == NULL)
		abort();
	if (strlen(red) > 2 * size + 3)
		abort();
	check_redacted(red);
	/* A PIN found once in the input, as the pin-value attribute itself, is gone.
	 * ('*' could be rebuilt from the mask, separators split the attribute.) */
	if (pin != NULL && pin[0] != '\0' && strpbrk(pin, "*;?&") == NULL &&
	    count(s, pin) == 1 && literal_pin(s, pin) && strstr(red, pin) != NULL)
		abort();
	if (rc == -1)
		check_error(s, err);
	free(red);
	free(pin);
	free(s);
	return 0;
}
