/* Fuzz target: `certgate audit summary` over hostile audit lines (a client chooses
 * tool names, and a damaged log may hold anything) and --since/--until values.
 * Input: lines; the first line is also tried as a time. Invariants: no crash, the
 * counts add up, both output formats succeed and the JSON one parses. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auditsum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	char first[128];
	struct auditsum *s;
	struct buf b;
	long long ms;
	size_t n;
	json_t *j;

	n = (nl = memchr(p, '\n', size)) ? (size_t)(nl - p) : size;
	if (n < sizeof(first)) {
		memcpy(first, p, n);
		first[n] = '\0';
		(void)auditsum_parse_time(first, 1800000000000LL, &ms);
	}
	if ((s = auditsum_new(0, 0)) == NULL)
		return 0;
	while (p < end) {
		n = (nl = memchr(p, '\n', (size_t)(end - p))) ? (size_t)(nl - p) + 1 :
		    (size_t)(end - p);
		(void)auditsum_line(s, p, n);
		p += n;
	}
	buf_init(&b);
	if (auditsum_format(s, 0, &b) != 0)
		abort();
	buf_reset(&b);
	if (auditsum_format(s, 1, &b) != 0)
		abort();
	if ((j = json_loads(buf_str(&b), 0, NULL)) == NULL)
		abort();
	json_decref(j);
	buf_free(&b);
	auditsum_free(s);
	return 0;
}
