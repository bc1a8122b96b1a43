/* Base64 and base64url (base64.h). */
#include "base64.h"

static const char base64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
base64_len(size_t n, int flags)
{
	if (flags & BASE64_URL)
		return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	return (n + 2) / 3 * 4;
}

int
base64_encode(struct buf *out, const void *p, size_t n, int flags, size_t line)
{
	const unsigned char *s = p;
	const char *alpha = (flags & BASE64_URL) ? base64_url : base64_std;
	char q[4];
	size_t i, col = 0, k;
	unsigned v;

	for (i = 0; i < n; i += 3) {
		v = (unsigned)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = alpha[(v >> 18) & 63];
		q[1] = alpha[(v >> 12) & 63];
		q[2] = i + 1 < n ? alpha[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? alpha[v & 63] : '=';
		k = 4;
		if (flags & BASE64_URL)
			k = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
		buf_add(out, q, k);
		col += k;
		if (line > 0 && col >= line) {
			buf_addc(out, '\n');
			col = 0;
		}
	}
	if (line > 0 && col > 0)
		buf_addc(out, '\n');
	if (n == 0)
		buf_add(out, "", 0);
	return buf_failed(out) ? -1 : 0;
}

static int
base64_val(int c, int url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

int
base64_decode(struct buf *out, const char *s, size_t n, int flags)
{
	int url = (flags & BASE64_URL) != 0, d;
	unsigned v = 0;
	size_t i, got = 0, pad = 0;
	unsigned char b[3];

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if ((flags & BASE64_WS) && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
			continue;
		if (c == '=' && !url) {
			pad++;
			continue;
		}
		if (pad > 0 || (d = base64_val(c, url)) < 0)
			return -1;	/* data after padding, or not in the alphabet */
		v = v << 6 | (unsigned)d;
		if (++got % 4 == 0) {
			b[0] = (unsigned char)(v >> 16);
			b[1] = (unsigned char)(v >> 8);
			b[2] = (unsigned char)v;
			buf_add(out, b, 3);
			v = 0;
		}
	}
	switch (got % 4) {
	case 0:
		if (pad != 0)
			return -1;
		break;
	case 1:
		return -1;
	case 2:
		if ((!url && pad != 2) || (url && pad != 0) || (v & 0xf) != 0)
			return -1;
		b[0] = (unsigned char)(v >> 4);
		buf_add(out, b, 1);
		break;
	case 3:
		if ((!url && pad != 1) || (url && pad != 0) || (v & 0x3) != 0)
			return -1;
		b[0] = (unsigned char)(v >> 10);
		b[1] = (unsigned char)(v >> 2);
		buf_add(out, b, 2);
		break;
	}
	if (n == 0 || got == 0)
		buf_add(out, "", 0);
	return buf_failed(out) ? -1 : 0;
}
