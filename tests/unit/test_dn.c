/* dn.c: strict RFC 4514 parsing into the normalized form, the same form for an
 * X509_NAME, agreement with OpenSSL's XN_FLAG_RFC2253 printing, and refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "check.h"
#include "dn.h"

static char *
norm(const char *s)
{
	char *out = NULL, err[256];

	if (dn_parse(s, strlen(s), &out, err, sizeof(err)) == -1)
		return NULL;
	return out;
}

static void
check_norm(const char *in, const char *want)
{
	char *got = norm(in);

	CHECK_STR(got, want);
	free(got);
}

/* The error for in, or NULL when it parses. Static buffer. */
static const char *
refusal(const char *in)
{
	static char err[512];
	char *out = NULL;

	if (dn_parse(in, strlen(in), &out, err, sizeof(err)) == 0) {
		free(out);
		return NULL;
	}
	return err;
}

static char *
openssl_rfc2253(const X509_NAME *n)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s = NULL;
	long len;

	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (len = BIO_get_mem_data(b, &data)) >= 0 && (s = malloc((size_t)len + 1)) != NULL) {
		memcpy(s, data, (size_t)len);
		s[len] = '\0';
	}
	BIO_free(b);
	return s;
}

static void
test_parse(void)
{
	check_norm("CN=research-bot,O=certgate", "CN=research-bot,O=certgate");
	check_norm("cn=a,o=b", "CN=a,O=b");
	check_norm("commonName=a,organizationName=b,organizationalUnitName=c",
	    "CN=a,O=b,OU=c");
	check_norm("2.5.4.3=a,2.5.4.10=b", "CN=a,O=b");
	check_norm("emailaddress=a@b,dc=example,DC=com", "emailAddress=a@b,DC=example,DC=com");
	check_norm("STREET=x,uid=y", "street=x,UID=y");
	/* escapes: specials stay escaped, needless ones are dropped, hex pairs decoded */
	check_norm("CN=a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h", "CN=a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h");
	check_norm("CN=a\\=b\\#c", "CN=a=b#c");
	check_norm("CN=\\41\\62c", "CN=Abc");
	check_norm("CN=\\#x", "CN=\\#x");
	check_norm("CN=\\ x\\ ", "CN=\\ x\\ ");
	check_norm("CN=a b", "CN=a b");
	check_norm("CN=", "CN=");
	/* non-ASCII: raw UTF-8 and its \XX form are the same name */
	check_norm("CN=M\xc3\xbcller", "CN=M\\C3\\BCller");
	check_norm("CN=M\\c3\\bcller", "CN=M\\C3\\BCller");
	/* multi-valued RDNs are sorted */
	check_norm("UID=b+CN=a,O=x", "CN=a+UID=b,O=x");
	check_norm("CN=a+UID=b,O=x", "CN=a+UID=b,O=x");
	/* #DER: a string type becomes text, anything else stays (uppercased) hex */
	check_norm("CN=#0C03616263", "CN=abc");
	check_norm("CN=#130161", "CN=a");
	check_norm("CN=#0403ab01ff", "CN=#0403AB01FF");
	check_norm("1.2.3.4=#0c03616263", "1.2.3.4=#0C03616263");
	/* an already normalized string is a fixed point */
	check_norm("CN=\\#,O=\\ ", "CN=#,O=\\ ");
	check_norm("CN=#", "CN=#");
}

static void
test_refusals(void)
{
	const char *e;

	CHECK(refusal("") != NULL);
	CHECK((e = refusal("/O=y/CN=x")) != NULL && strstr(e, "OpenSSL") != NULL &&
	    strstr(e, "\"CN=x,O=y\"") != NULL);
	CHECK((e = refusal("CN = x")) != NULL && strstr(e, "space before '='") != NULL);
	CHECK((e = refusal("CN=x, O=y")) != NULL && strstr(e, "space") != NULL);
	CHECK((e = refusal("CN= x")) != NULL && strstr(e, "space at the start") != NULL);
	CHECK((e = refusal("CN=x ")) != NULL && strstr(e, "end of a value") != NULL);
	CHECK((e = refusal("CN=a;b")) != NULL && strstr(e, "';'") != NULL);
	CHECK(refusal("CN=a\"b") != NULL);
	CHECK(refusal("CN=a<b") != NULL);
	CHECK(refusal("CN=a\\") != NULL);
	CHECK(refusal("CN=a\\x") != NULL);
	CHECK(refusal("CN=a\\4") != NULL);
	CHECK(refusal("CN=a,") != NULL);
	CHECK(refusal("CN=a+") != NULL);
	CHECK(refusal(",CN=a") != NULL);
	CHECK(refusal("CN") != NULL);
	CHECK(refusal("=a") != NULL);
	CHECK((e = refusal("foo=a")) != NULL && strstr(e, "unknown attribute type") != NULL);
	CHECK((e = refusal("1.2.3.4=abc")) != NULL && strstr(e, "#HEX") != NULL);
	CHECK(refusal("1=abc") != NULL);
	CHECK(refusal("1.02=#0401aa") != NULL);
	CHECK(refusal("CN=#") == NULL);        /* "#" alone is a value ... */
	CHECK(refusal("CN=#0") != NULL);       /* ... but # with hex is DER, whole bytes */
	CHECK(refusal("CN=#zz") != NULL);
	CHECK(refusal("CN=#0C05616263") != NULL);      /* stated length is wrong */
	CHECK(refusal("CN=#A003020101") != NULL);      /* context class */
	CHECK(refusal("CN=\xc3") != NULL);             /* truncated UTF-8 */
	CHECK(refusal("CN=\xc0\xaf") != NULL);         /* overlong */
	CHECK(refusal("CN=\xed\xa0\x80") != NULL);     /* surrogate */
	{
		char *out = NULL, err[128];

		CHECK(dn_parse("CN=a\0b", 6, &out, err, sizeof(err)) == -1);
		CHECK(out == NULL);
	}
}

static void
addraw(X509_NAME *n, const char *type, int vtype, const char *v, int len, int set)
{
	X509_NAME_ENTRY *e = X509_NAME_ENTRY_create_by_txt(NULL, type, vtype,
	    (const unsigned char *)v, len);

	CHECK(e != NULL);
	CHECK(e != NULL && X509_NAME_add_entry(n, e, -1, set) == 1);
	X509_NAME_ENTRY_free(e);
}

/* A one-attribute name whose value is the TLV v[0..n), from DER (X509_NAME_add_entry
 * re-encodes and would refuse what a certificate can still carry). */
static X509_NAME *
dername(const unsigned char *oid, size_t oidlen, const unsigned char *v, size_t n)
{
	unsigned char der[256], *p = der;
	const unsigned char *q = der;
	size_t ava = 2 + oidlen + n;

	*p++ = 0x30; *p++ = (unsigned char)(ava + 4);
	*p++ = 0x31; *p++ = (unsigned char)(ava + 2);
	*p++ = 0x30; *p++ = (unsigned char)ava;
	*p++ = 0x06; *p++ = (unsigned char)oidlen;
	memcpy(p, oid, oidlen);
	p += oidlen;
	memcpy(p, v, n);
	p += n;
	return d2i_X509_NAME(NULL, &q, p - der);
}

static X509_NAME *
mkname(const char *const *kv, int type)
{
	X509_NAME *n = X509_NAME_new();
	size_t i;

	for (i = 0; kv[i] != NULL; i += 2)
		X509_NAME_add_entry_by_txt(n, kv[i], type, (const unsigned char *)kv[i + 1],
		    -1, -1, 0);
	return n;
}

/* dn_format equals OpenSSL's XN_FLAG_RFC2253 output, and parsing that gives it back. */
static void
check_same_as_openssl(X509_NAME *n)
{
	char *mine = dn_format(n), *theirs = openssl_rfc2253(n), *again;

	CHECK_STR(mine, theirs);
	again = mine ? norm(mine) : NULL;
	CHECK_STR(again, mine);
	free(again);
	free(mine);
	free(theirs);
}

static void
test_format(void)
{
	static const char *const plain[] = { "O", "certgate", "CN", "research-bot", NULL };
	static const char *const odd[] = { "C", "DE", "O", "a,b+c\"d\\e<f>g;h=i",
		"OU", "#lead", "OU", " both ", "CN", "M\xc3\xbcller \xe2\x82\xac", NULL };
	static const char *const one[] = { "O", "#", "OU", " ", "CN", "x#", NULL };
	static const char *const ctl[] = { "CN", "a\x01" "b\x7f", NULL };
	X509_NAME *n;
	char *s;

	n = mkname(plain, MBSTRING_ASC);
	s = dn_format(n);
	CHECK_STR(s, "CN=research-bot,O=certgate");
	free(s);
	check_same_as_openssl(n);
	X509_NAME_free(n);

	check_same_as_openssl(n = mkname(odd, MBSTRING_UTF8));
	X509_NAME_free(n);
	check_same_as_openssl(n = mkname(one, MBSTRING_ASC));
	X509_NAME_free(n);
	check_same_as_openssl(n = mkname(ctl, MBSTRING_ASC));
	X509_NAME_free(n);

	/* BMPString / UniversalString / T61String values */
	n = X509_NAME_new();
	addraw(n, "CN", V_ASN1_BMPSTRING, "\x00" "a" "\x20\xac", 4, 0);
	addraw(n, "OU", V_ASN1_UNIVERSALSTRING, "\x00\x01\xf6\x00" "\x00\x00\x00" "b", 8, 0);
	addraw(n, "O", V_ASN1_T61STRING, "caf\xe9", 4, 0);
	check_same_as_openssl(n);
	X509_NAME_free(n);

	/* unknown OID, and a known type with a non-string value: #DER */
	n = X509_NAME_new();
	addraw(n, "1.2.3.4", V_ASN1_UTF8STRING, "abc", 3, 0);
	s = dn_format(n);
	CHECK_STR(s, "1.2.3.4=#0C03616263");
	free(s);
	check_same_as_openssl(n);
	X509_NAME_free(n);
	{
		static const unsigned char cn[] = { 0x55, 0x04, 0x03 };
		static const unsigned char seq[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };

		CHECK((n = dername(cn, 3, seq, sizeof(seq))) != NULL);
		s = dn_format(n);
		CHECK_STR(s, "CN=#3003020105");
		free(s);
		check_same_as_openssl(n);
		X509_NAME_free(n);
	}

	/* multi-valued: sorted, so both encodings give one form */
	n = X509_NAME_new();
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"x", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "UID", MBSTRING_ASC, (const unsigned char *)"b", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"a", -1, -1, -1);
	s = dn_format(n);
	CHECK_STR(s, "CN=a+UID=b,O=x");
	free(s);
	X509_NAME_free(n);

	/* empty name */
	n = X509_NAME_new();
	s = dn_format(n);
	CHECK_STR(s, "");
	free(s);
	X509_NAME_free(n);
	CHECK(dn_format(NULL) == NULL);
}

int
main(void)
{
	test_parse();
	test_refusals();
	test_format();
	CHECK_DONE();
}
