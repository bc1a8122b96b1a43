/* Fuzz target: /proc/PID/stat parsing. Invariant: no crash, no read past the
 * input (the text is not NUL-terminated here). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "procstat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct procstat ps;
	char *copy;

	/* Exactly size bytes, so ASan catches a read past the end. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	(void)procstat_parse_stat(copy, size, 100, 4096, 1.7e9, &ps);
	free(copy);
	return 0;
}
