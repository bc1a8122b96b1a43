/* Fuzz target: argument rules. The raw input is a path for argrule_path_normalize
 * (whose output must be canonical and idempotent); when the input is a JSON object
 * {"rules": {...}, "tool": "NAME", "arguments": ...} the rules are compiled and the
 * call is checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argrule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_path(const char *p, size_t n)
{
	char *out, *again;
	const char *why = NULL;
	size_t olen;

	if ((out = malloc(n + 1)) == NULL || (again = malloc(n + 1)) == NULL) {
		free(out);
		return;
	}
	if (argrule_path_normalize(p, n, out, n + 1, &why) == 0) {
		olen = strlen(out);
		/* canonical: absolute, no empty, "." or ".." segment, no trailing slash */
		if (out[0] != '/' || olen > n || strstr(out, "//") != NULL ||
		    strstr(out, "/./") != NULL || strstr(out, "/../") != NULL ||
		    (olen > 1 && out[olen - 1] == '/') ||
		    (olen >= 2 && strcmp(out + olen - 2, "/.") == 0) ||
		    (olen >= 3 && strcmp(out + olen - 3, "/..") == 0) ||
		    memchr(p, '%', n) != NULL || memchr(p, '\\', n) != NULL)
			abort();
		/* idempotent, and under itself */
		if (argrule_path_normalize(out, olen, again, n + 1, &why) != 0 ||
		    strcmp(out, again) != 0 || !argrule_path_under(out, out) ||
		    !argrule_path_under(out, "/"))
			abort();
	} else if (why == NULL)
		abort();
	free(out);
	free(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct argrule_set *s = NULL;
	struct argrule_result res;
	json_t *root, *tool;
	char err[512];

	fuzz_path((const char *)data, size);
	root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);
	if (!json_is_object(root))
		goto done;
	err[0] = '\0';
	if (argrule_set_parse(json_object_get(root, "rules"), "fuzz", &s, err,
	    sizeof(err)) == -1) {
		if (s != NULL || err[0] == '\0')
			abort();
		goto done;
	}
	tool = json_object_get(root, "tool");
	argrule_check(&s, 1, json_string_value(tool), json_object_get(root, "arguments"), &res);
	if (res.allow != 0 && res.allow != 1)
		abort();
	if (!res.allow && (res.reason == NULL || res.detail[0] == '\0' ||
	    memchr(res.detail, '\0', sizeof(res.detail)) == NULL))
		abort();
	argrule_set_free(s);
done:
	json_decref(root);
	return 0;
}
