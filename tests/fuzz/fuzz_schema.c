/* Fuzz target: JSON Schema compile + validate, and the tool table. The input is a JSON
 * object {"schema": S, "instance": I} and/or a tools/list response
 * {"result": {"tools": [...]}, "instance": I}: S is compiled and I validated against it;
 * the tools are learnt and I is checked against each. Messages must stay bounded
 * and free of control bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "tooltab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_clean(const char *s, size_t max)
{
	size_t i;

	if (memchr(s, '\0', max) == NULL)
		abort();
	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tooltab_result res;
	struct tooltab *t;
	struct schema *s = NULL;
	json_t *root, *inst, *tool;
	char err[256];
	size_t i;

	root = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
	if (!json_is_object(root))
		goto done;
	inst = json_object_get(root, "instance");
	if (json_object_get(root, "schema") != NULL) {
		err[0] = '\0';
		if (schema_compile(json_object_get(root, "schema"), &s, err, sizeof(err)) == 0) {
			if (schema_nodes(s) == 0 || schema_nodes(s) > SCHEMA_MAX_NODES)
				abort();
			if (schema_validate(s, inst, "arguments", err, sizeof(err)) == -1)
				fuzz_clean(err, sizeof(err));
			schema_free(s);
		} else if (s != NULL || err[0] == '\0')
			abort();
		else
			fuzz_clean(err, sizeof(err));
	}
	if ((t = tooltab_new(64, 1 << 20)) == NULL)
		goto done;
	if (tooltab_learn(t, root, 1) >= 0) {
		json_array_foreach(json_object_get(json_object_get(root, "result"), "tools"), i,
		    tool) {
			tooltab_check(t, json_string_value(json_object_get(tool, "name")), inst, &res);
			if (res.allow != 0 && res.allow != 1)
				abort();
			if (!res.allow)
				fuzz_clean(res.detail, sizeof(res.detail));
		}
		tooltab_learn(t, root, 0);
		tooltab_clear(t);
	}
	tooltab_free(t);
done:
	json_decref(root);
	return 0;
}
