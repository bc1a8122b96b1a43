/* Fuzz target: EST certs-only answers (agent_est_certs) and the search for the leaf
 * of a key (agent_est_leaf), on anything a server might send. A parse that succeeds
 * holds certificates; a leaf found carries the key; its chain has no loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "agent_est.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EVP_PKEY *key;
	STACK_OF(X509) *certs, *chain = NULL;
	X509 *leaf = NULL;
	char err[300];

	if (key == NULL && (key = EVP_EC_gen("P-256")) == NULL)
		abort();
	err[0] = '\0';
	certs = agent_est_certs((const char *)data, size, err, sizeof(err));
	if (certs == NULL) {
		if (err[0] == '\0')
			abort();
		return 0;
	}
	if (sk_X509_num(certs) < 1)
		abort();
	if (agent_est_leaf(certs, key, &leaf, &chain, err, sizeof(err)) == 0) {
		if (leaf == NULL || chain == NULL || sk_X509_num(chain) >= sk_X509_num(certs))
			abort();
		X509_free(leaf);
		sk_X509_pop_free(chain, X509_free);
	} else if (leaf != NULL || chain != NULL)
		abort();
	sk_X509_pop_free(certs, X509_free);
	return 0;
}
