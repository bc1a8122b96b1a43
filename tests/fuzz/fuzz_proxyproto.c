/* Fuzz target: proxyproto_parse fed the way conn.c feeds it (growing to what it asks
 * for), and cidr_parse on the same bytes as text. Invariants: the parser never asks
 * for fewer bytes than it has or more than PROXYPROTO_MAX_ADDR, a complete header is
 * at least 16 bytes and at least as long as what was read, and a non-local result
 * carries an IPv4 or IPv6 source. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto p;
	struct cidr r;
	const char *err;
	size_t have = size > 0 ? 1 : 0, need;
	char text[80];
	int rc;

	for (;;) {
		need = 0;
		rc = proxyproto_parse(data, have, &p, &need, &err);
		if (rc == -1) {
			if (err == NULL)
				abort();
			break;
		}
		if (rc == 1) {
			if (p.total < PROXYPROTO_HEAD || p.total < have)
				abort();
			if (!p.local && p.src.ss_family != 2 && p.src.ss_family != 10)
				abort();
			break;
		}
		if (need <= have || need > PROXYPROTO_MAX_ADDR)
			abort();
		if (need > size)
			break;
		have = need;
	}
	if (size < sizeof(text)) {
		memcpy(text, data, size);
		text[size] = '\0';
		if (cidr_parse(text, &r, &err) == 0 && (r.bits < 0 || r.bits > 128))
			abort();
	}
	return 0;
}
