/* RFC 4514 distinguished names: strict parsing into the normalized form, and the same
 * form for an X509_NAME (dn.h). Both sides go through dn_ava, so a name typed into the
 * identity map and the name in a certificate compare as strings.
 *
 * The value escaping mirrors OpenSSL 3's do_buf/do_esc_char under XN_FLAG_RFC2253
 * (crypto/asn1/a_strex.c), including its quirks: a one-character value gets only the
 * "last character" rule (so "#" alone is not escaped), UTF8String bytes are escaped one
 * by one without decoding, 1-byte string types are read as Latin-1. */
#include "dn.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>

#include "buf.h"
#include "text.h"

#define DN_MAX_INPUT 16384      /* longer DNs are refused (a certificate's is < 1 KiB) */
#define DN_MAX_AVAS 256

/* Characters per code unit of a string type as OpenSSL prints it (its tag2nbyte):
 * 0 UTF-8 bytes printed as they are, 1 Latin-1, 2 BMP, 4 UCS-4; -1 not text (dumped
 * as #DER). */
static int
dn_width(int tag)
{
	switch (tag) {
	case V_ASN1_UTF8STRING:
		return 0;
	case V_ASN1_NUMERICSTRING:
	case V_ASN1_PRINTABLESTRING:
	case V_ASN1_T61STRING:
	case V_ASN1_IA5STRING:
	case V_ASN1_UTCTIME:
	case V_ASN1_GENERALIZEDTIME:
	case V_ASN1_ISO64STRING:
		return 1;
	case V_ASN1_BMPSTRING:
		return 2;
	case V_ASN1_UNIVERSALSTRING:
		return 4;
	}
	return -1;
}

/* pos: 1 first character, 2 last (also when it is the only one), 0 otherwise. */
static void
dn_esc_byte(struct buf *b, unsigned char c, int pos)
{
	if (c < 0x20 || c >= 0x7f)
		buf_addf(b, "\\%02X", c);
	else if (strchr(",+\"\\<>;", c) != NULL || (pos == 1 && (c == '#' || c == ' ')) ||
	    (pos == 2 && c == ' ')) {
		buf_addc(b, '\\');
		buf_addc(b, (char)c);
	} else
		buf_addc(b, (char)c);
}

static size_t
dn_utf8_put(unsigned char *o, unsigned long c)
{
	if (c < 0x80) {
		o[0] = (unsigned char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (unsigned char)(0xc0 | (c >> 6));
		o[1] = (unsigned char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (unsigned char)(0xe0 | (c >> 12));
		o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
		o[2] = (unsigned char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | (c >> 18));
	o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
	o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
	o[3] = (unsigned char)(0x80 | (c & 0x3f));
	return 4;
}

/* Text value d[0..n) of code-unit width w (dn_width >= 0), escaped. -1 when the
 * string cannot be decoded (OpenSSL refuses to print it too). */
static int
dn_text(struct buf *b, int w, const unsigned char *d, size_t n)
{
	unsigned char u[4];
	unsigned long c;
	size_t i, k, ul;
	int pos;

	if (w == 0) {
		for (i = 0; i < n; i++)
			dn_esc_byte(b, d[i], i + 1 == n ? 2 : i == 0 ? 1 : 0);
		return 0;
	}
	if (n % (size_t)w != 0)
		return -1;
	for (i = 0; i < n; i += (size_t)w) {
		c = 0;
		for (k = 0; k < (size_t)w; k++)
			c = (c << 8) | d[i + k];
		if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
			return -1;
		pos = i + (size_t)w == n ? 2 : i == 0 ? 1 : 0;
		ul = dn_utf8_put(u, c);
		for (k = 0; k < ul; k++)
			dn_esc_byte(b, u[k], pos);
	}
	return 0;
}

static void
dn_hex(struct buf *b, const unsigned char *d, size_t n)
{
	static const char hx[] = "0123456789ABCDEF";
	size_t i;

	buf_addc(b, '#');
	for (i = 0; i < n; i++) {
		buf_addc(b, hx[d[i] >> 4]);
		buf_addc(b, hx[d[i] & 0xf]);
	}
}

/* The value of an attribute: text when the type is known and the string type is one
 * OpenSSL prints, else '#' and the DER of the value. */
static int
dn_value(struct buf *b, int known, const ASN1_STRING *v)
{
	int type = ASN1_STRING_type(v), w = known ? dn_width(type) : -1, len, rv = -1;
	unsigned char *der = NULL, *p;
	ASN1_TYPE t;

	if (w >= 0)
		return dn_text(b, w, ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
	/* Only string-shaped types may sit in an ASN1_TYPE's asn1_string (names never
	 * hold the others: X509_NAME's decoder refuses them). */
	if (type <= 0 || type > 30 || type == V_ASN1_BOOLEAN || type == V_ASN1_INTEGER ||
	    type == V_ASN1_NULL || type == V_ASN1_OBJECT || type == V_ASN1_ENUMERATED)
		return -1;
	t.type = type;
	t.value.asn1_string = (ASN1_STRING *)v;
	if ((len = i2d_ASN1_TYPE(&t, NULL)) <= 0 || (der = p = malloc((size_t)len)) == NULL)
		return -1;
	if (i2d_ASN1_TYPE(&t, &p) == len) {
		dn_hex(b, der, (size_t)len);
		rv = 0;
	}
	free(der);
	return rv;
}

/* The name of an attribute type: OpenSSL's short name, or the dotted OID. */
static int
dn_type_name(const ASN1_OBJECT *o, char *out, size_t outlen, int *known)
{
	int nid = OBJ_obj2nid(o);
	const char *sn;

	*known = 0;
	if (nid != NID_undef && (sn = OBJ_nid2sn(nid)) != NULL) {
		if (strlen(sn) >= outlen)
			return -1;
		memcpy(out, sn, strlen(sn) + 1);
		*known = 1;
		return 0;
	}
	return OBJ_obj2txt(out, (int)outlen, o, 1) > 0 && strlen(out) < outlen - 1 ? 0 : -1;
}

static int
dn_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends one RDN (its AVAs sorted, joined by '+') and frees the AVAs. */
static void
dn_flush_rdn(struct buf *b, char **avas, size_t n, int first)
{
	size_t i;

	qsort(avas, n, sizeof(*avas), dn_strcmp);
	if (!first)
		buf_addc(b, ',');
	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_addc(b, '+');
		buf_adds(b, avas[i]);
		free(avas[i]);
	}
}

/* "TYPE=VALUE" as a new string, or NULL. */
static char *
dn_ava(const char *tname, int known, const ASN1_STRING *v)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, tname);
	buf_addc(&b, '=');
	if (dn_value(&b, known, v) == -1) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b, NULL);
}

char *
dn_format(const X509_NAME *name)
{
	const X509_NAME_ENTRY *e;
	char **avas = NULL, tname[128], *s = NULL;
	int i, n, set = -1, known, first = 1;
	size_t na = 0;
	struct buf b;

	if (name == NULL)
		return NULL;
	buf_init(&b);
	n = X509_NAME_entry_count(name);
	if (n > 0 && (avas = calloc((size_t)n, sizeof(*avas))) == NULL)
		return NULL;
	/* most specific (last encoded) first */
	for (i = n - 1; i >= 0; i--) {
		e = X509_NAME_get_entry(name, i);
		if (na > 0 && X509_NAME_ENTRY_set(e) != set) {
			dn_flush_rdn(&b, avas, na, first);
			first = 0;
			na = 0;
		}
		set = X509_NAME_ENTRY_set(e);
		if (dn_type_name(X509_NAME_ENTRY_get_object(e), tname, sizeof(tname),
		    &known) == -1 ||
		    (avas[na] = dn_ava(tname, known, X509_NAME_ENTRY_get_data(e))) == NULL)
			goto fail;
		na++;
	}
	if (na > 0)
		dn_flush_rdn(&b, avas, na, first);
	na = 0;
	s = buf_detach(&b, NULL);
	if (s == NULL && !buf_failed(&b))
		s = strdup("");
fail:
	while (na > 0)
		free(avas[--na]);
	free(avas);
	buf_free(&b);
	return s;
}

/* ---- parsing --------------------------------------------------------------------- */

struct dn_in {
	const unsigned char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
};

/* Attribute types RFC 4514 and X.520 name, for case-insensitive lookup (OBJ_txt2nid
 * matches names exactly). */
static const int dn_nids[] = {
	NID_commonName, NID_countryName, NID_localityName, NID_stateOrProvinceName,
	NID_organizationName, NID_organizationalUnitName, NID_domainComponent,
	NID_userId, NID_pkcs9_emailAddress, NID_serialNumber, NID_streetAddress,
	NID_title, NID_givenName, NID_surname, NID_initials, NID_generationQualifier,
	NID_dnQualifier, NID_pseudonym, NID_name, NID_postalCode, NID_businessCategory,
	NID_description, NID_postOfficeBox, NID_postalAddress,
};

static int
dn_descr_nid(const char *d)
{
	size_t i;

	/* the directory's names first: OpenSSL's "uid" is uniqueIdentifier, RFC 4514's
	 * UID is userId */
	for (i = 0; i < sizeof(dn_nids) / sizeof(dn_nids[0]); i++)
		if (strcasecmp(d, OBJ_nid2sn(dn_nids[i])) == 0 ||
		    strcasecmp(d, OBJ_nid2ln(dn_nids[i])) == 0)
			return dn_nids[i];
	/* RFC 4514's own name for streetAddress (OpenSSL's short name is "street") */
	if (strcasecmp(d, "STREET") == 0)
		return NID_streetAddress;
	return OBJ_txt2nid(d);
}

static int
dn_fail(struct dn_in *in, const char *what)
{
	text_seterr(in->err, in->errlen, "%s at offset %zu", what, in->pos);
	return -1;
}

/* attributeType: descr or numericoid, into tname; *known when OpenSSL knows it. */
static int
dn_parse_type(struct dn_in *in, char *tname, size_t tlen, int *known)
{
	size_t start = in->pos, n;
	char tmp[128];
	ASN1_OBJECT *o;
	int nid, digits, rv;

	if (in->pos < in->len && isalpha(in->s[in->pos])) {
		while (in->pos < in->len && (isalnum(in->s[in->pos]) || in->s[in->pos] == '-'))
			in->pos++;
	} else if (in->pos < in->len && isdigit(in->s[in->pos])) {
		for (;;) {
			digits = 0;
			if (in->pos < in->len && in->s[in->pos] == '0' && in->pos + 1 < in->len &&
			    isdigit(in->s[in->pos + 1]))
				return dn_fail(in, "OID number with a leading zero");
			while (in->pos < in->len && isdigit(in->s[in->pos])) {
				in->pos++;
				digits++;
			}
			if (digits == 0)
				return dn_fail(in, "bad OID");
			if (in->pos >= in->len || in->s[in->pos] != '.')
				break;
			in->pos++;
		}
		if (memchr(in->s + start, '.', in->pos - start) == NULL)
			return dn_fail(in, "an OID needs at least two numbers");
	} else if (in->pos < in->len && in->s[in->pos] == ' ')
		return dn_fail(in, "space before an attribute type (RFC 4514 has no spaces "
		    "after ',' or '+')");
	else
		return dn_fail(in, "attribute type (e.g. CN) expected");
	n = in->pos - start;
	if (n >= sizeof(tmp))
		return dn_fail(in, "attribute type too long");
	memcpy(tmp, in->s + start, n);
	tmp[n] = '\0';
	if (in->pos >= in->len || in->s[in->pos] != '=') {
		if (in->pos < in->len && in->s[in->pos] == ' ')
			return dn_fail(in, "space before '=' (RFC 4514 has no spaces around '=')");
		return dn_fail(in, "'=' expected after the attribute type");
	}
	in->pos++;
	if (isalpha((unsigned char)tmp[0])) {
		if ((nid = dn_descr_nid(tmp)) == NID_undef) {
			text_seterr(in->err, in->errlen, "unknown attribute type \"%s\" (use "
			    "CN, O, OU, C, L, ST, DC, UID, emailAddress, ... or a dotted OID)",
			    tmp);
			return -1;
		}
		*known = 1;
		snprintf(tname, tlen, "%s", OBJ_nid2sn(nid));
		return 0;
	}
	if ((o = OBJ_txt2obj(tmp, 1)) == NULL)
		return dn_fail(in, "bad OID");
	rv = dn_type_name(o, tname, tlen, known);
	ASN1_OBJECT_free(o);
	if (rv == -1)
		return dn_fail(in, "bad OID");
	return 0;
}

/* A #HEX value: DER of one value. A text string type of a known attribute becomes its
 * text (as a certificate holding it prints); anything else stays #HEX. */
static int
dn_parse_hex(struct dn_in *in, int known, struct buf *out)
{
	unsigned char *der = NULL;
	size_t start = ++in->pos, n, i, hl, cl;
	ASN1_STRING *str = NULL;
	int rv = -1, hi, lo;

	while (in->pos < in->len && in->s[in->pos] != ',' && in->s[in->pos] != '+')
		in->pos++;
	n = in->pos - start;
	if (n == 0 || n % 2 != 0)
		return dn_fail(in, "a #value needs an even, non-zero number of hex digits");
	if ((der = malloc(n / 2)) == NULL)
		return dn_fail(in, "out of memory");
	for (i = 0; i < n / 2; i++) {
		if ((hi = text_hexval(in->s[start + 2 * i])) < 0 ||
		    (lo = text_hexval(in->s[start + 2 * i + 1])) < 0) {
			dn_fail(in, "bad hex digit in a #value");
			goto out;
		}
		der[i] = (unsigned char)(hi << 4 | lo);
	}
	n /= 2;
	/* one universal TLV with a definite length, exactly n bytes */
	if (n < 2 || (der[0] & 0xc0) != 0 || (der[0] & 0x1f) == 0x1f) {
		dn_fail(in, "a #value must be the DER of one universal value");
		goto out;
	}
	if (der[1] < 0x80) {
		hl = 2;
		cl = der[1];
	} else {
		size_t k = der[1] & 0x7f;

		if (k == 0 || k > 4 || 2 + k > n) {
			dn_fail(in, "bad DER length in a #value");
			goto out;
		}
		for (cl = 0, i = 0; i < k; i++)
			cl = (cl << 8) | der[2 + i];
		hl = 2 + k;
	}
	if (hl + cl != n) {
		dn_fail(in, "the DER in a #value does not have its stated length");
		goto out;
	}
	if (known && dn_width(der[0]) >= 0) {
		if ((str = ASN1_STRING_type_new(der[0])) == NULL ||
		    ASN1_STRING_set(str, der + hl, (int)cl) != 1) {
			dn_fail(in, "out of memory");
			goto out;
		}
		if (dn_value(out, 1, str) == -1) {
			dn_fail(in, "the string in a #value cannot be decoded");
			goto out;
		}
	} else
		dn_hex(out, der, n);
	rv = 0;
out:
	ASN1_STRING_free(str);
	free(der);
	return rv;
}

/* A string value, unescaped into raw bytes, then written in the normalized form. */
static int
dn_parse_string(struct dn_in *in, int known, struct buf *out)
{
	struct buf raw;
	ASN1_STRING *str = NULL;
	size_t start = in->pos, u;
	int last_plain_space = 0, hi, lo, rv = -1;
	unsigned char c;

	buf_init(&raw);
	while (in->pos < in->len && in->s[in->pos] != ',' && in->s[in->pos] != '+') {
		c = in->s[in->pos];
		last_plain_space = 0;
		if (c == '\\') {
			if (in->pos + 1 >= in->len) {
				dn_fail(in, "'\\' at the end of a value");
				goto out;
			}
			c = in->s[in->pos + 1];
			if (strchr("\"+,;<> #=\\", c) != NULL) {
				buf_addc(&raw, (char)c);
				in->pos += 2;
				continue;
			}
			if (in->pos + 2 < in->len && (hi = text_hexval(c)) >= 0 &&
			    (lo = text_hexval(in->s[in->pos + 2])) >= 0) {
				buf_addc(&raw, (char)(hi << 4 | lo));
				in->pos += 3;
				continue;
			}
			dn_fail(in, "bad escape (\\ takes one of \" + , ; < > space # = \\ "
			    "or two hex digits)");
			goto out;
		}
		if (c == '"' || c == ';' || c == '<' || c == '>') {
			text_seterr(in->err, in->errlen, "unescaped '%c' in a value at offset "
			    "%zu (write \\%c)", c, in->pos, c);
			goto out;
		}
		if (c == '\0') {
			dn_fail(in, "NUL byte in a value");
			goto out;
		}
		if (c == ' ' && in->pos == start) {
			dn_fail(in, "unescaped space at the start of a value (write \\ ; RFC "
			    "4514 has no spaces around '=' or after ',')");
			goto out;
		}
		if (c >= 0x80) {
			if ((u = text_utf8_seq(in->s + in->pos, in->len - in->pos, NULL)) == 0) {
				dn_fail(in, "value is not UTF-8");
				goto out;
			}
			buf_add(&raw, in->s + in->pos, u);
			in->pos += u;
			continue;
		}
		last_plain_space = c == ' ';
		buf_addc(&raw, (char)c);
		in->pos++;
	}
	if (last_plain_space) {
		in->pos--;
		dn_fail(in, "unescaped space at the end of a value (write \\ )");
		goto out;
	}
	if (buf_failed(&raw) || (str = ASN1_STRING_type_new(V_ASN1_UTF8STRING)) == NULL ||
	    ASN1_STRING_set(str, raw.len ? raw.p : "", (int)raw.len) != 1) {
		dn_fail(in, "out of memory");
		goto out;
	}
	if (!known) {
		text_seterr(in->err, in->errlen, "an attribute type certgate does not know "
		    "needs a #HEX (DER) value, as certificates print it");
		goto out;
	}
	rv = dn_value(out, 1, str);
out:
	ASN1_STRING_free(str);
	buf_free(&raw);
	return rv;
}

/* OpenSSL's "/CN=x/O=y": say so, and suggest the RFC 4514 form when the naive
 * conversion (reverse the parts, join with ',') parses. */
static void
dn_slash_hint(const char *s, size_t len, char *err, size_t errlen)
{
	char *copy, *parts[DN_MAX_AVAS], *p, *norm = NULL, e2[8];
	size_t np = 0, i;
	struct buf b;

	text_seterr(err, errlen, "OpenSSL's \"/CN=.../O=...\" form is not RFC 4514: write "
	    "the RDNs most specific first, joined by ',' (as scripts/agent-list prints them)");
	if ((copy = strndup(s, len)) == NULL)
		return;
	for (p = strtok(copy + 1, "/"); p != NULL && np < DN_MAX_AVAS; p = strtok(NULL, "/"))
		parts[np++] = p;
	buf_init(&b);
	for (i = np; i > 0; i--) {
		buf_adds(&b, parts[i - 1]);
		if (i > 1)
			buf_addc(&b, ',');
	}
	if (np > 0 && !buf_failed(&b) && dn_parse(buf_str(&b), b.len, &norm, e2,
	    sizeof(e2)) == 0)
		text_seterr(err, errlen, "OpenSSL's \"/CN=.../O=...\" form is not RFC 4514: "
		    "write \"%.200s\" (most specific first, joined by ',', as "
		    "scripts/agent-list prints them)", norm);
	free(norm);
	buf_free(&b);
	free(copy);
}

int
dn_parse(const char *s, size_t len, char **out, char *err, size_t errlen)
{
	struct dn_in in = { (const unsigned char *)s, len, 0, err, errlen };
	char *avas[DN_MAX_AVAS], tname[128];
	size_t na = 0, navas = 0;
	int known = 0, first = 1, rv = -1;
	struct buf b, v;

	*out = NULL;
	buf_init(&b);
	buf_init(&v);
	if (len == 0) {
		text_seterr(err, errlen, "empty DN");
		return -1;
	}
	if (len > DN_MAX_INPUT) {
		text_seterr(err, errlen, "DN longer than %d bytes", DN_MAX_INPUT);
		return -1;
	}
	if (s[0] == '/') {
		dn_slash_hint(s, len, err, errlen);
		return -1;
	}
	for (;;) {
		if (++navas > DN_MAX_AVAS) {
			dn_fail(&in, "too many attributes");
			goto out;
		}
		if (dn_parse_type(&in, tname, sizeof(tname), &known) == -1)
			goto out;
		buf_reset(&v);
		buf_adds(&v, tname);
		buf_addc(&v, '=');
		/* '#' alone is the text "#": the one leading '#' OpenSSL leaves unescaped */
		if (in.pos + 1 < in.len && in.s[in.pos] == '#' && in.s[in.pos + 1] != ',' &&
		    in.s[in.pos + 1] != '+') {
			if (dn_parse_hex(&in, known, &v) == -1)
				goto out;
		} else if (dn_parse_string(&in, known, &v) == -1)
			goto out;
		if (buf_failed(&v) || (avas[na] = strdup(buf_str(&v))) == NULL) {
			text_seterr(err, errlen, "out of memory");
			goto out;
		}
		na++;
		if (in.pos < in.len && in.s[in.pos] == '+') {
			in.pos++;
			continue;
		}
		dn_flush_rdn(&b, avas, na, first);
		first = 0;
		na = 0;
		if (in.pos >= in.len)
			break;
		in.pos++;       /* ',' */
		if (in.pos >= in.len) {
			dn_fail(&in, "',' at the end");
			goto out;
		}
	}
	if (buf_failed(&b) || (*out = buf_detach(&b, NULL)) == NULL) {
		text_seterr(err, errlen, "out of memory");
		goto out;
	}
	rv = 0;
out:
	while (na > 0)
		free(avas[--na]);
	buf_free(&v);
	buf_free(&b);
	return rv;
}
