/* Fuzz target: the status page's HTML escaping. Invariants: no < > " ' or control
 * character survives, every & starts an entity we wrote, and the output is valid
 * UTF-8 (so no browser can resynchronise into markup). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "statuspage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0, len, k;
	unsigned cp;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			len = 2, cp = s[i] & 0x1f;
		else if (s[i] >= 0xe0 && s[i] <= 0xef)
			len = 3, cp = s[i] & 0x0f;
		else if (s[i] >= 0xf0 && s[i] <= 0xf4)
			len = 4, cp = s[i] & 0x07;
		else
			return 0;
		if (i + len > n)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const ents[] = { "&amp;", "&lt;", "&gt;", "&quot;", "&#39;" };
	char *in;
	const char *o;
	struct buf b;
	size_t i, k, n;

	if ((in = malloc(size + 1)) == NULL)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	buf_init(&b);
	if (statuspage_escape(&b, in) != 0)
		abort();
	o = buf_str(&b);
	n = strlen(o);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)o[i];

		if (c == '<' || c == '>' || c == '"' || c == '\'' || c < 0x20 || c == 0x7f)
			abort();
		if (c == '&') {
			for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++)
				if (strncmp(o + i, ents[k], strlen(ents[k])) == 0)
					break;
			if (k == sizeof(ents) / sizeof(ents[0]))
				abort();
		}
	}
	if (!valid_utf8((const unsigned char *)o, n))
		abort();
	buf_free(&b);
	free(in);
	return 0;
}
