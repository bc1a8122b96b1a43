/* JSON Schema checks of tools/call arguments against a tool's advertised inputSchema
 * (README "Tool arguments", mcp.validate_arguments). Pure functions over jansson
 * values; no I/O.
 *
 * The subset is what MCP servers generate (zod, pydantic, hand-written draft-07 /
 * 2020-12 schemas):
 *   type (a name or an array of names; "integer" accepts 1.0), enum, const,
 *   minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, or the draft-04
 *   booleans), multipleOf, minLength, maxLength (Unicode code points), pattern,
 *   items (a schema, or an array of schemas: a tuple), prefixItems, additionalItems,
 *   minItems, maxItems, uniqueItems, contains, properties, patternProperties,
 *   additionalProperties (boolean or schema), required, minProperties, maxProperties,
 *   propertyNames, allOf, anyOf, oneOf, not, if/then/else, $ref to a JSON pointer in the
 *   same document ("#", "#/definitions/X", "#/$defs/X", "#/properties/a/items", ...),
 *   and the boolean schemas true and false.
 * Every other keyword is ignored (so the check may accept what the upstream refuses,
 * but never the reverse except at the limits below): $schema, $id, $comment, $anchor,
 * title, description, default, examples, format, readOnly, writeOnly, deprecated,
 * content*, dependencies, dependentRequired, dependentSchemas, unevaluated*,
 * minContains, maxContains, $dynamicRef, $recursiveRef, and unknown names. Keywords
 * next to $ref apply as well (2019-09 semantics).
 * pattern and patternProperties are ECMA-262 regular expressions run by PCRE2 in UTF
 * mode, unanchored (a match anywhere in the string), with $ matching only at the very
 * end, \uXXXX escapes and the ECMAScript [^] class; a pattern PCRE2 cannot compile
 * makes the schema fail to compile.
 *
 * Limits, so that a hostile upstream cannot make the gateway slow: a schema has at most
 * SCHEMA_MAX_NODES subschemas and SCHEMA_MAX_DEPTH nesting; a validation performs at
 * most SCHEMA_MAX_STEPS steps (one per subschema applied to a value, per enum or
 * uniqueItems comparison, per object member) and recurses at most
 * SCHEMA_MAX_RECURSION deep, else the arguments are refused as too complex; every
 * pattern match has PCRE2 match, depth and heap limits.
 *
 * Thread-safety: a compiled schema is immutable and may be used by any number of
 * threads at once. */
#ifndef CERTGATE_SCHEMA_H
#define CERTGATE_SCHEMA_H
#include <jansson.h>
#include <stddef.h>

#define SCHEMA_MAX_NODES 10000
#define SCHEMA_MAX_DEPTH 64
#define SCHEMA_MAX_STEPS 200000
#define SCHEMA_MAX_RECURSION 128
#define SCHEMA_PATTERN_MAX 4096   /* bytes of one pattern */

struct schema;

/* Compiles a JSON Schema (an object or a boolean). The schema is not referenced after
 * the call (enum/const values are copied). Returns 0 and *out, or -1 with a message in
 * err such as
 *   $.properties.path.type: unknown type "strng"
 *   $.properties.q.pattern: PCRE2: missing closing parenthesis at offset 3
 *   $ref "http://x/y": only references into the same document ("#...") are supported
 *   more than 10000 subschemas
 * Refused besides: keywords of the supported set with the wrong JSON type, negative
 * lengths or counts, multipleOf <= 0, $ref targets that do not exist or are not
 * schemas. Any thread. */
int schema_compile(json_t *schema, struct schema **out, char *err, size_t errlen);

/* NULL is a no-op. */
void schema_free(struct schema *s);

/* Number of compiled subschemas, and an estimate of the memory they use (for the
 * per-session accounting of tooltab.h). */
size_t schema_nodes(const struct schema *s);
size_t schema_bytes(const struct schema *s);

/* Validates instance (may be NULL: treated as an absent value, which only the schema
 * `true` accepts) against s. root names the instance in messages ("arguments").
 * Returns 0 when valid; -1 when not, with the first problem in err as
 * "PATH: MESSAGE", where PATH is root followed by .name or ["odd name"] and [index]
 * steps (names longer than 64 bytes are cut, control bytes shown as \xNN), e.g.
 *   arguments.path: expected string, got number
 *   arguments: missing required property "message"
 *   arguments.extra: property not allowed
 *   arguments.edits[0].oldText: expected string, got null
 *   arguments.count: 11 is greater than the maximum 10
 *   arguments: too complex to validate (step limit)
 * The value is not echoed except numbers in range messages. Any thread. */
int schema_validate(const struct schema *s, json_t *instance, const char *root, char *err,
    size_t errlen);

#endif
