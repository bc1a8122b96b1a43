/* schema.c: the JSON Schema subset against the real inputSchemas of
 * @modelcontextprotocol/server-everything and server-filesystem (tests/unit/data), and
 * synthetic schemas for every keyword, compile errors and the validation limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "schema.h"

static json_t *everything, *filesystem;

static json_t *
load_listing(const char *name)
{
	const char *dir = getenv("CERTGATE_SOURCE_DIR");
	char path[1024];
	json_t *j;

	snprintf(path, sizeof(path), "%s/tests/unit/data/%s", dir ? dir : ".", name);
	if ((j = json_load_file(path, 0, NULL)) == NULL)
		fprintf(stderr, "cannot load %s\n", path);
	return j;
}

static json_t *
tool_schema(json_t *listing, const char *tool)
{
	json_t *t;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(listing, "result"), "tools"), i, t)
		if (strcmp(json_string_value(json_object_get(t, "name")), tool) == 0)
			return json_object_get(t, "inputSchema");
	return NULL;
}

/* Every listed schema compiles. */
static void
test_real_compile(void)
{
	json_t *listings[2] = { everything, filesystem }, *t;
	struct schema *s;
	char err[256];
	size_t i, k, n = 0;

	for (k = 0; k < 2; k++)
		json_array_foreach(json_object_get(json_object_get(listings[k], "result"), "tools"),
		    i, t) {
			CHECK(schema_compile(json_object_get(t, "inputSchema"), &s, err,
			    sizeof(err)) == 0);
			CHECK(schema_nodes(s) >= 1 && schema_bytes(s) > 0);
			schema_free(s);
			n++;
		}
	CHECK(n >= 25);
}

struct real_case {
	int fs;               /* 0 server-everything, 1 server-filesystem */
	const char *tool;
	const char *args;
	const char *err;      /* NULL: valid */
};

static const struct real_case real_cases[] = {
	{ 0, "echo", "{\"message\": \"hi\"}", NULL },
	{ 0, "echo", "{\"message\": \"hi\", \"extra\": 1}", NULL },  /* no additionalProperties */
	{ 0, "echo", "{}", "arguments: missing required property \"message\"" },
	{ 0, "echo", "{\"message\": 5}", "arguments.message: expected string, got number" },
	{ 0, "echo", "{\"message\": null}", "arguments.message: expected string, got null" },
	{ 0, "echo", "{\"message\": [\"hi\"]}", "arguments.message: expected string, got array" },
	{ 0, "echo", "[]", "arguments: expected object, got array" },
	{ 0, "echo", "\"hi\"", "arguments: expected object, got string" },
	{ 0, "get-sum", "{\"a\": 1, \"b\": 2.5}", NULL },
	{ 0, "get-sum", "{\"a\": \"1\", \"b\": 2}", "arguments.a: expected number, got string" },
	{ 0, "get-sum", "{\"a\": 1}", "arguments: missing required property \"b\"" },
	{ 0, "get-sum", "{\"a\": true, \"b\": 2}", "arguments.a: expected number, got boolean" },
	{ 0, "get-resource-links", "{}", NULL },
	{ 0, "get-resource-links", "{\"count\": 10}", NULL },
	{ 0, "get-resource-links", "{\"count\": 11}", "arguments.count: 11 is greater than the maximum 10" },
	{ 0, "get-resource-links", "{\"count\": 0.5}", "arguments.count: 0.5 is less than the minimum 1" },
	{ 0, "get-annotated-message", "{\"messageType\": \"debug\", \"includeImage\": true}", NULL },
	{ 0, "get-annotated-message", "{\"messageType\": \"warn\"}",
	  "arguments.messageType: not one of the allowed values" },
	{ 0, "get-annotated-message", "{\"messageType\": \"error\", \"includeImage\": \"yes\"}",
	  "arguments.includeImage: expected boolean, got string" },
	{ 0, "get-structured-content", "{\"location\": \"Chicago\"}", NULL },
	{ 0, "get-structured-content", "{\"location\": \"chicago\"}",
	  "arguments.location: not one of the allowed values" },
	{ 0, "gzip-file-as-resource", "{\"outputType\": \"resource\", \"data\": \"not a uri\"}", NULL },  /* format ignored */
	{ 0, "get-env", "{}", NULL },
	{ 1, "read_file", "{\"path\": \"/tmp/x\", \"head\": 3}", NULL },
	{ 1, "read_file", "{\"path\": \"/tmp/x\", \"head\": \"3\"}", "arguments.head: expected number, got string" },
	{ 1, "read_multiple_files", "{\"paths\": [\"/a\", \"/b\"]}", NULL },
	{ 1, "read_multiple_files", "{\"paths\": []}", "arguments.paths: fewer than 1 items" },
	{ 1, "read_multiple_files", "{\"paths\": [\"/a\", 1]}", "arguments.paths[1]: expected string, got number" },
	{ 1, "read_multiple_files", "{\"paths\": \"/a\"}", "arguments.paths: expected array, got string" },
	{ 1, "edit_file", "{\"path\": \"/x\", \"edits\": [{\"oldText\": \"a\", \"newText\": \"b\"}]}", NULL },
	{ 1, "edit_file", "{\"path\": \"/x\", \"edits\": [{\"oldText\": \"a\"}]}",
	  "arguments.edits[0]: missing required property \"newText\"" },
	{ 1, "edit_file", "{\"path\": \"/x\", \"edits\": [{\"oldText\": \"a\", \"newText\": \"b\"}, "
	  "{\"oldText\": \"a\", \"newText\": null}]}", "arguments.edits[1].newText: expected string, got null" },
	{ 1, "edit_file", "{\"path\": \"/x\", \"edits\": [5]}", "arguments.edits[0]: expected object, got number" },
	{ 1, "list_directory_with_sizes", "{\"path\": \"/\", \"sortBy\": \"date\"}",
	  "arguments.sortBy: not one of the allowed values" },
	{ 1, "move_file", "{\"source\": \"/a\"}", "arguments: missing required property \"destination\"" },
};

static void
test_real(void)
{
	struct schema *s;
	json_t *args;
	char err[256];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(real_cases) / sizeof(real_cases[0]); i++) {
		const struct real_case *c = &real_cases[i];
		json_t *sch = tool_schema(c->fs ? filesystem : everything, c->tool);

		CHECK(sch != NULL);
		args = json_loads(c->args, JSON_DECODE_ANY, NULL);
		CHECK(args != NULL);
		if (sch == NULL || args == NULL || schema_compile(sch, &s, err, sizeof(err)) != 0) {
			fprintf(stderr, "real case %zu: setup failed\n", i);
			CHECK(0);
			json_decref(args);
			continue;
		}
		rc = schema_validate(s, args, "arguments", err, sizeof(err));
		if ((c->err == NULL) != (rc == 0) || (c->err != NULL && strcmp(err, c->err) != 0))
			fprintf(stderr, "real case %zu (%s %s): rc %d \"%s\"\n", i, c->tool, c->args,
			    rc, err);
		if (c->err == NULL)
			CHECK(rc == 0);
		else {
			CHECK(rc == -1);
			CHECK_STR(err, c->err);
		}
		schema_free(s);
		json_decref(args);
	}
}

struct syn_case {
	const char *schema;
	const char *inst;
	const char *err;      /* NULL: valid */
};

static const struct syn_case syn_cases[] = {
	/* additionalProperties */
	{ "{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1}", NULL },
	{ "{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1,\"b\":2}",
	  "arguments.b: property not allowed" },
	{ "{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a b\":1}",
	  "arguments[\"a b\"]: property not allowed" },
	{ "{\"additionalProperties\":false}", "{\"x\\ny\":1}", "arguments[\"x\\x0ay\"]: property not allowed" },
	{ "{\"additionalProperties\":{\"type\":\"string\"}}", "{\"x\":\"s\"}", NULL },
	{ "{\"additionalProperties\":{\"type\":\"string\"}}", "{\"x\":1}", "arguments.x: expected string, got number" },
	{ "{\"patternProperties\":{\"^n_\":{\"type\":\"number\"}},\"additionalProperties\":false}",
	  "{\"n_a\":1}", NULL },
	{ "{\"patternProperties\":{\"^n_\":{\"type\":\"number\"}},\"additionalProperties\":false}",
	  "{\"n_a\":\"1\"}", "arguments.n_a: expected number, got string" },
	{ "{\"patternProperties\":{\"^n_\":{\"type\":\"number\"}},\"additionalProperties\":false}",
	  "{\"s_a\":1}", "arguments.s_a: property not allowed" },
	{ "{\"propertyNames\":{\"maxLength\":3}}", "{\"abc\":1}", NULL },
	{ "{\"propertyNames\":{\"maxLength\":3}}", "{\"abcd\":1}",
	  "arguments.abcd: property name not allowed (propertyNames)" },
	{ "{\"minProperties\":1,\"maxProperties\":2}", "{}", "arguments: fewer than 1 properties" },
	{ "{\"minProperties\":1,\"maxProperties\":2}", "{\"a\":1,\"b\":2,\"c\":3}", "arguments: more than 2 properties" },
	/* types */
	{ "{\"type\":[\"string\",\"null\"]}", "null", NULL },
	{ "{\"type\":[\"string\",\"null\"]}", "1", "arguments: expected null or string, got number" },
	{ "{\"type\":\"integer\"}", "3", NULL },
	{ "{\"type\":\"integer\"}", "3.0", NULL },
	{ "{\"type\":\"integer\"}", "3.5", "arguments: expected integer, got number" },
	{ "{\"type\":\"number\"}", "3", NULL },
	{ "{\"type\":\"boolean\"}", "false", NULL },
	{ "{\"type\":\"object\"}", "null", "arguments: expected object, got null" },
	/* numbers */
	{ "{\"minimum\":1,\"exclusiveMinimum\":true}", "1", "arguments: 1 is not greater than the minimum 1" },
	{ "{\"exclusiveMinimum\":1}", "1.5", NULL },
	{ "{\"exclusiveMinimum\":1}", "1", "arguments: 1 is not greater than the minimum 1" },
	{ "{\"exclusiveMaximum\":10}", "10", "arguments: 10 is not less than the maximum 10" },
	{ "{\"maximum\":10,\"exclusiveMaximum\":false}", "10", NULL },
	{ "{\"multipleOf\":3}", "9", NULL },
	{ "{\"multipleOf\":3}", "10", "arguments: 10 is not a multiple of 3" },
	{ "{\"multipleOf\":0.5}", "2.5", NULL },
	{ "{\"multipleOf\":0.5}", "2.25", "arguments: 2.25 is not a multiple of 0.5" },
	{ "{\"minimum\":0}", "\"-1\"", NULL },   /* numeric keywords ignore strings */
	/* strings */
	{ "{\"minLength\":2,\"maxLength\":3}", "\"日本語\"", NULL },
	{ "{\"minLength\":2,\"maxLength\":3}", "\"日本語x\"", "arguments: longer than 3 characters" },
	{ "{\"minLength\":2,\"maxLength\":3}", "\"😀\"", "arguments: shorter than 2 characters" },
	{ "{\"pattern\":\"^[a-z]+$\"}", "\"abc\"", NULL },
	{ "{\"pattern\":\"^[a-z]+$\"}", "\"ab1\"", "arguments: does not match the pattern \"^[a-z]+$\"" },
	{ "{\"pattern\":\"^[a-z]+$\"}", "\"abc\\n\"", "arguments: does not match the pattern \"^[a-z]+$\"" },
	{ "{\"pattern\":\"b\"}", "\"abc\"", NULL },           /* unanchored */
	{ "{\"pattern\":\"^\\\\u0041$\"}", "\"A\"", NULL },    /* ECMAScript \\u escape */
	{ "{\"pattern\":\"^[^]$\"}", "\"x\"", NULL },           /* ECMAScript [^] */
	{ "{\"pattern\":\"^.$\"}", "\"é\"", NULL },             /* UTF mode */
	/* enum / const */
	{ "{\"enum\":[1,\"a\",null,[1,2],{\"k\":true}]}", "1.0", NULL },
	{ "{\"enum\":[1,\"a\",null,[1,2],{\"k\":true}]}", "[1,2.0]", NULL },
	{ "{\"enum\":[1,\"a\",null,[1,2],{\"k\":true}]}", "{\"k\":true}", NULL },
	{ "{\"enum\":[1,\"a\",null,[1,2],{\"k\":true}]}", "{\"k\":false}", "arguments: not one of the allowed values" },
	{ "{\"enum\":[1,\"a\",null,[1,2],{\"k\":true}]}", "\"A\"", "arguments: not one of the allowed values" },
	{ "{\"enum\":[]}", "1", "arguments: not one of the allowed values" },
	{ "{\"const\":\"x\"}", "\"x\"", NULL },
	{ "{\"const\":\"x\"}", "\"y\"", "arguments: not the required constant" },
	{ "{\"const\":null}", "null", NULL },
	/* arrays */
	{ "{\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":2}", "[\"a\"]", NULL },
	{ "{\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":2}", "[\"a\",\"b\",\"c\"]", "arguments: more than 2 items" },
	{ "{\"items\":[{\"type\":\"string\"},{\"type\":\"number\"}],\"additionalItems\":false}", "[\"a\",1]", NULL },
	{ "{\"items\":[{\"type\":\"string\"},{\"type\":\"number\"}],\"additionalItems\":false}", "[\"a\",\"b\"]",
	  "arguments[1]: expected number, got string" },
	{ "{\"items\":[{\"type\":\"string\"},{\"type\":\"number\"}],\"additionalItems\":false}", "[\"a\",1,2]",
	  "arguments[2]: no value is allowed here" },
	{ "{\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":\"number\"}}", "[\"a\",1,2]", NULL },
	{ "{\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":\"number\"}}", "[\"a\",1,\"x\"]",
	  "arguments[2]: expected number, got string" },
	{ "{\"uniqueItems\":true}", "[1,2,3]", NULL },
	{ "{\"uniqueItems\":true}", "[1,2,1.0]", "arguments: items 0 and 2 are equal" },
	{ "{\"uniqueItems\":true}", "[{\"a\":[1]},{\"a\":[1]}]", "arguments: items 0 and 1 are equal" },
	{ "{\"contains\":{\"const\":2}}", "[1,2,3]", NULL },
	{ "{\"contains\":{\"const\":2}}", "[1,3]", "arguments: no item matches \"contains\"" },
	/* combinators */
	{ "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"number\"}]}", "1", NULL },
	{ "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"number\"}]}", "true",
	  "arguments: does not match any of the allowed alternatives (anyOf)" },
	{ "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1.5", NULL },
	{ "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1",
	  "arguments: matches 2 of the oneOf alternatives, not exactly one" },
	{ "{\"allOf\":[{\"minimum\":1},{\"maximum\":3}]}", "2", NULL },
	{ "{\"allOf\":[{\"minimum\":1},{\"maximum\":3}]}", "4", "arguments: 4 is greater than the maximum 3" },
	{ "{\"not\":{\"type\":\"null\"}}", "1", NULL },
	{ "{\"not\":{\"type\":\"null\"}}", "null", "arguments: matches a schema it must not match (not)" },
	{ "{\"if\":{\"properties\":{\"k\":{\"const\":\"n\"}}},\"then\":{\"properties\":{\"v\":{\"type\":\"number\"}}},"
	  "\"else\":{\"properties\":{\"v\":{\"type\":\"string\"}}}}", "{\"k\":\"n\",\"v\":1}", NULL },
	{ "{\"if\":{\"properties\":{\"k\":{\"const\":\"n\"}}},\"then\":{\"properties\":{\"v\":{\"type\":\"number\"}}},"
	  "\"else\":{\"properties\":{\"v\":{\"type\":\"string\"}}}}", "{\"k\":\"s\",\"v\":1}",
	  "arguments.v: expected string, got number" },
	/* nested anyOf as zod emits for unions, with the error inside an object */
	{ "{\"type\":\"object\",\"properties\":{\"o\":{\"type\":\"object\",\"properties\":{\"u\":{\"anyOf\":"
	  "[{\"type\":\"string\"},{\"type\":\"array\",\"items\":{\"type\":\"string\"}}]}},\"required\":[\"u\"],"
	  "\"additionalProperties\":false}}}", "{\"o\":{\"u\":[\"a\",2]}}",
	  "arguments.o.u: does not match any of the allowed alternatives (anyOf)" },
	{ "{\"type\":\"object\",\"properties\":{\"o\":{\"type\":\"object\",\"properties\":{\"u\":{\"anyOf\":"
	  "[{\"type\":\"string\"},{\"type\":\"array\",\"items\":{\"type\":\"string\"}}]}},\"required\":[\"u\"],"
	  "\"additionalProperties\":false}}}", "{\"o\":{\"u\":\"a\",\"w\":1}}", "arguments.o.w: property not allowed" },
	/* $ref */
	{ "{\"definitions\":{\"s\":{\"type\":\"string\"}},\"properties\":{\"a\":{\"$ref\":\"#/definitions/s\"}}}",
	  "{\"a\":1}", "arguments.a: expected string, got number" },
	{ "{\"$defs\":{\"s\":{\"type\":\"string\"}},\"properties\":{\"a\":{\"$ref\":\"#/$defs/s\"}}}",
	  "{\"a\":\"x\"}", NULL },
	{ "{\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{\"$ref\":\"#/properties/a\"}}}",
	  "{\"b\":false}", "arguments.b: expected string, got boolean" },
	{ "{\"$defs\":{\"a~b/c\":{\"type\":\"string\"}},\"properties\":{\"a\":{\"$ref\":\"#/$defs/a~0b~1c\"}}}",
	  "{\"a\":1}", "arguments.a: expected string, got number" },
	{ "{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}},"
	  "\"additionalProperties\":false}", "{\"kids\":[{\"kids\":[{\"kids\":[]}]}]}", NULL },
	{ "{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}},"
	  "\"additionalProperties\":false}", "{\"kids\":[{\"kids\":[{\"kid\":[]}]}]}",
	  "arguments.kids[0].kids[0].kid: property not allowed" },
	/* boolean schemas */
	{ "true", "{\"anything\":[1]}", NULL },
	{ "false", "1", "arguments: no value is allowed here" },
	{ "{\"properties\":{\"a\":false}}", "{\"a\":1}", "arguments.a: no value is allowed here" },
	{ "{\"properties\":{\"a\":false}}", "{\"b\":1}", NULL },
	/* unknown and ignored keywords */
	{ "{\"format\":\"email\",\"x-vendor\":1,\"dependentRequired\":{\"a\":[\"b\"]},\"title\":\"t\"}",
	  "{\"a\":1}", NULL },
};

static void
test_synthetic(void)
{
	struct schema *s;
	json_t *sch, *inst;
	char err[256];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(syn_cases) / sizeof(syn_cases[0]); i++) {
		const struct syn_case *c = &syn_cases[i];

		sch = json_loads(c->schema, JSON_DECODE_ANY, NULL);
		inst = json_loads(c->inst, JSON_DECODE_ANY, NULL);
		if (sch == NULL || inst == NULL || schema_compile(sch, &s, err, sizeof(err)) != 0) {
			fprintf(stderr, "syn case %zu: setup failed: %s\n", i, sch && inst ? err : "json");
			CHECK(0);
			json_decref(sch);
			json_decref(inst);
			continue;
		}
		rc = schema_validate(s, inst, "arguments", err, sizeof(err));
		if ((c->err == NULL) != (rc == 0) || (c->err != NULL && strcmp(err, c->err) != 0))
			fprintf(stderr, "syn case %zu (%s / %s): rc %d \"%s\"\n", i, c->schema,
			    c->inst, rc, err);
		if (c->err == NULL)
			CHECK(rc == 0);
		else {
			CHECK(rc == -1);
			CHECK_STR(err, c->err);
		}
		schema_free(s);
		json_decref(sch);
		json_decref(inst);
	}
}

struct bad_case {
	const char *schema;
	const char *err;      /* exact message */
};

static const struct bad_case bad_cases[] = {
	{ "\"x\"", "$: a schema must be an object or a boolean" },
	{ "{\"properties\":{\"path\":{\"type\":\"strng\"}}}", "$.properties.path: unknown type \"strng\"" },
	{ "{\"type\":[]}", "$: type must be a type name or a non-empty array of them" },
	{ "{\"type\":5}", "$: type must be a type name or a non-empty array of them" },
	{ "{\"properties\":{\"q\":{\"pattern\":\"(a\"}}}",
	  "$.properties.q: pattern: PCRE2: missing closing parenthesis at offset 2" },
	{ "{\"pattern\":5}", "$: pattern must be a string" },
	{ "{\"$ref\":\"http://example.com/s.json\"}",
	  "$: $ref \"http://example.com/s.json\": only references into the same document (\"#...\") are supported" },
	{ "{\"$ref\":\"#/definitions/nope\"}", "$: $ref \"#/definitions/nope\": no schema there" },
	{ "{\"$ref\":\"#foo\"}", "$: $ref \"#foo\": no schema there" },
	{ "{\"a\":[1],\"$ref\":\"#/a/0\"}", "$: $ref \"#/a/0\": no schema there" },
	{ "{\"$ref\":5}", "$: $ref must be a string" },
	{ "{\"minLength\":-1}", "$: minLength must be a non-negative integer" },
	{ "{\"maxItems\":1.5}", "$: maxItems must be a non-negative integer" },
	{ "{\"multipleOf\":0}", "$: multipleOf must be a number > 0" },
	{ "{\"minimum\":\"1\"}", "$: minimum must be a number" },
	{ "{\"exclusiveMaximum\":\"1\"}", "$: exclusiveMaximum must be a number or a boolean" },
	{ "{\"required\":true}", "$: required must be an array of property names" },
	{ "{\"required\":[1]}", "$: required[0] must be a string" },
	{ "{\"enum\":1}", "$: enum must be an array" },
	{ "{\"anyOf\":[]}", "$.anyOf: must be a non-empty array of schemas" },
	{ "{\"allOf\":[{\"type\":\"x\"}]}", "$.allOf.0: unknown type \"x\"" },
	{ "{\"items\":5}", "$.items: a schema must be an object or a boolean" },
	{ "{\"properties\":[]}", "$.properties: must be an object of schemas" },
	{ "{\"uniqueItems\":1}", "$: uniqueItems must be a boolean" },
	{ "{\"patternProperties\":{\"(\":{}}}", "$.patternProperties.(: pattern: PCRE2: missing closing parenthesis at offset 1" },
	{ "{\"properties\":{\"a\\u0001\":{\"type\":\"x\"}}}", "$.properties.a?: unknown type \"x\"" },
};

static void
test_bad(void)
{
	struct schema *s;
	json_t *sch;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		sch = json_loads(bad_cases[i].schema, JSON_DECODE_ANY, NULL);
		CHECK(sch != NULL);
		s = (struct schema *)1;
		err[0] = '\0';
		CHECK(schema_compile(sch, &s, err, sizeof(err)) == -1);
		CHECK(s == NULL);
		if (strcmp(err, bad_cases[i].err) != 0)
			fprintf(stderr, "bad case %zu: \"%s\"\n", i, err);
		CHECK_STR(err, bad_cases[i].err);
		json_decref(sch);
	}
}

/* Bounds: node count, nesting, exponential anyOf, ReDoS, deep instances. */
static void
test_limits(void)
{
	struct schema *s;
	json_t *sch, *inst, *cur, *arr;
	char err[256];
	clock_t t0;
	double secs;
	int i;

	/* more than SCHEMA_MAX_NODES subschemas */
	arr = json_array();
	for (i = 0; i < SCHEMA_MAX_NODES + 1; i++)
		json_array_append_new(arr, json_object());
	sch = json_pack("{s:o}", "allOf", arr);
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == -1);
	CHECK(strstr(err, "more than 10000 subschemas") != NULL);
	json_decref(sch);

	/* nesting deeper than SCHEMA_MAX_DEPTH */
	sch = json_object();
	for (i = 0; i < SCHEMA_MAX_DEPTH + 2; i++)
		sch = json_pack("{s:o}", "not", sch);
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == -1);
	CHECK(strstr(err, "nested more than 64 levels deep") != NULL);
	json_decref(sch);

	/* a reference cycle compiles (and is finite) */
	sch = json_loads("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},"
	    "\"$ref\":\"#/$defs/a\"}", 0, NULL);
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == 0);
	inst = json_integer(1);
	CHECK(schema_validate(s, inst, "arguments", err, sizeof(err)) == -1);
	CHECK_STR(err, "arguments: nested too deeply to validate");
	json_decref(inst);
	schema_free(s);
	json_decref(sch);

	/* two anyOf branches that both recurse: 2^depth without the step limit */
	sch = json_loads("{\"$ref\":\"#/$defs/d\",\"$defs\":{\"d\":{\"anyOf\":["
	    "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/d\"}}},"
	    "{\"type\":\"object\",\"minProperties\":1,\"properties\":{\"a\":{\"$ref\":\"#/$defs/d\"}}}]}}}",
	    0, NULL);
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == 0);
	cur = json_integer(5);
	for (i = 0; i < 25; i++)
		cur = json_pack("{s:o}", "a", cur);
	t0 = clock();
	CHECK(schema_validate(s, cur, "arguments", err, sizeof(err)) == -1);
	secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	CHECK(strstr(err, "too complex to validate (step limit)") != NULL);
	/* bounded work: far below a second even on a loaded machine */
	CHECK(secs < 5);
	json_decref(cur);
	schema_free(s);
	json_decref(sch);

	/* catastrophic backtracking is stopped by PCRE2's limits */
	sch = json_loads("{\"pattern\":\"^(a+)+$\"}", 0, NULL);
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == 0);
	inst = json_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
	CHECK(schema_validate(s, inst, "arguments", err, sizeof(err)) == -1);
	CHECK_STR(err, "arguments: pattern too costly to match (PCRE2 limit)");
	json_decref(inst);
	schema_free(s);
	json_decref(sch);

	/* uniqueItems over a big array runs into the step limit, not a quadratic stall */
	sch = json_loads("{\"uniqueItems\":true}", 0, NULL);
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == 0);
	inst = json_array();
	for (i = 0; i < 5000; i++)
		json_array_append_new(inst, json_integer(i));
	CHECK(schema_validate(s, inst, "arguments", err, sizeof(err)) == -1);
	CHECK(strstr(err, "step limit") != NULL);
	json_decref(inst);
	schema_free(s);
	json_decref(sch);

	/* no schema, NULL instance */
	CHECK(schema_validate(NULL, json_true(), "arguments", err, sizeof(err)) == -1);
	sch = json_object();
	CHECK(schema_compile(sch, &s, err, sizeof(err)) == 0);
	CHECK(schema_validate(s, NULL, "arguments", err, sizeof(err)) == -1);
	CHECK_STR(err, "arguments: missing");
	schema_free(s);
	schema_free(NULL);
	json_decref(sch);
}

int
main(void)
{
	everything = load_listing("tools_list_everything.json");
	filesystem = load_listing("tools_list_filesystem.json");
	CHECK(everything != NULL && filesystem != NULL);
	if (everything != NULL && filesystem != NULL) {
		test_real_compile();
		test_real();
	}
	test_synthetic();
	test_bad();
	test_limits();
	json_decref(everything);
	json_decref(filesystem);
	CHECK_DONE();
}
