/* Fuzz target: enrollment token parsing (agent_token_parse). The properties: a token
 * is accepted only in the exact cg1.<64 hex>.<43 base64url> shape, and an error
 * message never shows the secret part of the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char fp[AGENT_TOKEN_FP_LEN];
	char *s, err[256], hex[65];
	int rc;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	memset(err, 'x', sizeof(err));
	rc = agent_token_parse(s, fp, err, sizeof(err));
	if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	if (rc == 0) {
		if (strlen(s) != AGENT_TOKEN_LEN || strncmp(s, "cg1.", 4) != 0 || s[68] != '.')
			abort();
		agent_token_hex(fp, hex);
		if (memcmp(hex, s + 4, 64) != 0)
			abort();
	} else if (strlen(s) > 80 && strstr(err, s + 69) != NULL)
		abort();
	free(s);
	return 0;
}
