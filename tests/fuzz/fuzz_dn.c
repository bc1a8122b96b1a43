/* Fuzz target: dn.c. The input is used twice:
 * - as RFC 4514 text: dn_parse either refuses with a message or gives a normalized
 *   form that parses again to itself (a fixed point), with no raw byte outside
 *   printable ASCII;
 * - as a DER Name: when OpenSSL decodes it and prints it (XN_FLAG_RFC2253) and no
 *   RDN is multi-valued (dn sorts those), dn_format gives the same string, and that
 *   string parses back to itself (what agent-list prints is what the map accepts). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "dn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fixed_point(const char *s)
{
	char *again = NULL, err[256];
	const char *c;

	for (c = s; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			abort();
	if (dn_parse(s, strlen(s), &again, err, sizeof(err)) == -1) {
		if (*s != '\0')
			abort();
		return;
	}
	if (strcmp(again, s) != 0)
		abort();
	free(again);
}

static int
multi_valued(const X509_NAME *n)
{
	int i;

	for (i = 1; i < X509_NAME_entry_count(n); i++)
		if (X509_NAME_ENTRY_set(X509_NAME_get_entry(n, i)) ==
		    X509_NAME_ENTRY_set(X509_NAME_get_entry(n, i - 1)))
			return 1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	char *out = NULL, err[256], *mine, *theirs;
	X509_NAME *n;
	BIO *b;
	long len;

	err[0] = '\0';
	if (dn_parse((const char *)data, size, &out, err, sizeof(err)) == 0) {
		fixed_point(out);
		free(out);
	} else if (err[0] == '\0')
		abort();
	if ((n = d2i_X509_NAME(NULL, &p, (long)size)) == NULL)
		return 0;
	mine = dn_format(n);
	if (mine != NULL && *mine != '\0')
		fixed_point(mine);
	if (!multi_valued(n) && (b = BIO_new(BIO_s_mem())) != NULL) {
		if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
		    (len = BIO_get_mem_data(b, &theirs)) >= 0) {
			if (mine == NULL || strlen(mine) != (size_t)len ||
			    memcmp(mine, theirs, (size_t)len) != 0)
				abort();
		}
		BIO_free(b);
	}
	free(mine);
	X509_NAME_free(n);
	return 0;
}
