/* RFC 9440 Client-Cert / Client-Cert-Chain values (clientcert.h). */
#include "clientcert.h"

#include <openssl/crypto.h>

#include "base64.h"
#include "buf.h"

/* Appends ':' base64(DER of x) ':' to b. */
static int
clientcert_item(struct buf *b, X509 *x)
{
	unsigned char *der = NULL;
	int n, rc = -1;

	if ((n = i2d_X509(x, &der)) <= 0)
		goto out;
	buf_addc(b, ':');
	if (base64_encode(b, der, (size_t)n, 0, 0) == -1)
		goto out;
	buf_addc(b, ':');
	rc = buf_failed(b) ? -1 : 0;
out:
	OPENSSL_free(der);
	return rc;
}

char *
clientcert_field(X509 *cert)
{
	struct buf b;

	buf_init(&b);
	if (cert == NULL || clientcert_item(&b, cert) == -1) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b, NULL);
}

char *
clientcert_chain_field(STACK_OF(X509) *chain)
{
	struct buf b;
	int i, n = chain != NULL ? sk_X509_num(chain) : 0;

	buf_init(&b);
	for (i = 1; i < n; i++) {
		if (i > 1)
			buf_add(&b, ", ", 2);
		if (clientcert_item(&b, sk_X509_value(chain, i)) == -1) {
			buf_free(&b);
			return NULL;
		}
	}
	return buf_detach(&b, NULL);     /* NULL after an append failed */
}
