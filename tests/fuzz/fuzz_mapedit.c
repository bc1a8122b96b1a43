/* Fuzz target: identity map edits. Invariant (differential): an edit mapedit accepts
 * is accepted by the gateway's own parser and holds the agent with its URI. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "mapedit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const scopes[] = { "tools:x*" };
	static const char *const roles[] = { "guest" };
	struct mapedit_agent a = { .id = "fuzz-bot", .uri = "spiffe://certgate.local/agent/fuzz-bot",
	    .scopes = scopes, .nscopes = 1, .set_scopes = 1, .roles = roles, .nroles = 1 };
	struct identity_map *m = NULL;
	char err[512], *out = NULL;
	size_t n = 0, i;
	int found = 0;

	a.set_roles = size > 0 && (data[0] & 1);
	if (mapedit_set_agent((const char *)data, size, &a, &out, &n, err, sizeof(err)) != 0) {
		if (out != NULL)
			abort();
		return 0;
	}
	if (identity_map_parse(out, n, &m, err, sizeof(err)) != 0)
		abort();
	for (i = 0; i < m->nagents; i++)
		if (strcmp(m->agents[i].id, "fuzz-bot") == 0 && m->agents[i].uri != NULL &&
		    strcmp(m->agents[i].uri, a.uri) == 0)
			found = 1;
	if (!found)
		abort();
	identity_map_free(m);
	free(out);
	return 0;
}
