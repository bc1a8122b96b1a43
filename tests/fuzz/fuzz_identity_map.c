/* Fuzz target: identity map parsing, lookups (issuer binding included) and XFCC on
 * whatever parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct identity_map *m = NULL;
	struct identity_peer p;
	const struct identity_agent *a;
	char err[256], *uris[2], *x;
	size_t i;

	if (identity_map_parse((const char *)data, size, &m, err, sizeof(err)) != 0) {
		if (m != NULL || memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		return 0;
	}
	for (i = 0; i < m->nagents; i++) {
		a = &m->agents[i];
		if (a->id == NULL || a->scopes_str == NULL)
			abort();
		memset(&p, 0, sizeof(p));
		memcpy(p.hash, "00ff", 5);
		p.subject = a->subject;
		/* the agent's issuer, or certgate's own CA for an agent without one */
		p.issuer = a->issuer;
		p.own_ca = a->issuer == NULL;
		if (a->uri != NULL) {
			uris[0] = "\001";   /* no map uri can hold a control byte */
			uris[1] = a->uri;
			p.uris = uris;
			p.nuris = 2;
		}
		/* uri and subject are unique per issuer, so the agent itself must come back */
		if (identity_lookup(m, &p) != a)
			abort();
		x = identity_xfcc(&p);
		free(x);
	}
	identity_map_free(m);
	return 0;
}
