/* Tool-argument rules (README "Tool arguments"): what the identity map's
 * "arguments" sections allow a tools/call to pass. Pure functions over jansson values;
 * no I/O. README "Tool-argument rules" is the user-facing grammar; in short:
 *
 *   "arguments": { "TOOL-GLOB": { "ARG": RULE, ... }, ... }
 *   RULE = { "path_under": "/dir" | ["/dir", ...], "glob": "PAT" | ["PAT", ...],
 *            "enum": [scalar, ...], "max_length": N, "pattern": "PCRE2",
 *            "optional": true | false }
 *
 * - A rule may combine several checks; every check must pass. "optional" is not a
 *   check: without "optional": true an absent argument is a refusal (so a tool that
 *   names the value differently, or lets it default, does not slip past the rule).
 * - The rules that apply to a call are those of every TOOL-GLOB (policy_glob) matching
 *   the tool name, in every set passed to argrule_check (the agent's own set and one per
 *   role). All of them must pass: a deny anywhere wins.
 * - ARG names a top-level member of params.arguments. When the value is an array,
 *   every element is checked (an empty array passes); an element that is an array or
 *   an object is refused.
 * - String checks (path_under, glob, max_length, pattern) refuse anything that is not
 *   a string, and any string holding a NUL.
 * - path_under: see argrule_path_normalize; the normalized path must equal one of the
 *   directories or lie under it at a segment boundary (/srv/data2 is not under
 *   /srv/data). Purely lexical, never touches the filesystem.
 * - glob: policy_glob over the whole value ('*' also matches '/').
 * - enum: the value equals one of the listed scalars, by type and value (strings
 *   byte for byte, numbers by numeric value so 1 equals 1.0, booleans, null).
 * - max_length: at most N Unicode code points (not bytes, not UTF-16 units).
 * - pattern: PCRE2 in UTF mode, anchored at both ends (the whole value must match),
 *   compiled once at map load; a match that exceeds the match, depth or heap limit is
 *   a refusal.
 *
 * Thread-safety: a parsed set is immutable and may be checked from any number of
 * threads at once (PCRE2 code and match context are only read; match data is
 * per call). */
#ifndef CERTGATE_ARGRULE_H
#define CERTGATE_ARGRULE_H
#include <jansson.h>
#include <stddef.h>

/* Longest path a path_under check accepts, in bytes (PATH_MAX). */
#define ARGRULE_PATH_MAX 4096
/* PCRE2 limits applied to every "pattern" match. */
#define ARGRULE_MATCH_LIMIT 100000
#define ARGRULE_DEPTH_LIMIT 10000
#define ARGRULE_HEAP_LIMIT_KIB 4096
/* Longest "pattern" accepted at load (bytes). */
#define ARGRULE_PATTERN_MAX 4096

/* The compiled rules of one owner (a role or an agent). Opaque, immutable. */
struct argrule_set;

/* Parses and compiles an "arguments" object. owner names it in messages and in
 * results, e.g. "role \"fs-reader\"" or "agent \"bot\"" (copied). On success returns 0
 * and *out (NULL when the object is empty: nothing to check). On failure returns -1
 * with a message in err naming owner, tool glob, argument and the problem, e.g.
 *   role "fs": arguments: tool "read_*": argument "path": path_under: "srv" is not an
 *   absolute directory
 * Refused: a non-object, empty tool globs or argument names, control characters in
 * them, a rule that is not an object or has no check, unknown keys, wrong types,
 * path_under directories that are not absolute normalized paths (no "." or ".."
 * segments, no '%', '\\' or control characters), empty glob lists, an enum that is
 * empty or holds arrays or objects, max_length < 0, patterns PCRE2 cannot compile
 * (with its message and offset) or longer than ARGRULE_PATTERN_MAX. Any thread. */
int argrule_set_parse(json_t *arguments, const char *owner, struct argrule_set **out,
    char *err, size_t errlen);

/* NULL is a no-op. Only when no thread is checking against the set any more. */
void argrule_set_free(struct argrule_set *s);

/* Number of TOOL-GLOB entries in the set (0 for NULL). */
size_t argrule_set_count(const struct argrule_set *s);

/* Upper bound of detail below. */
#define ARGRULE_DETAIL_MAX 320

struct argrule_result {
	int allow;                /* 1 allow, 0 deny */
	const char *reason;       /* "argument rule" on deny, NULL on allow (static) */
	const char *rule;         /* on deny: "path_under", "glob", "enum", "max_length",
	                           * "pattern", or "arguments" when params.arguments is not
	                           * an object (static) */
	const char *owner;        /* on deny: the owner of the failing rule, borrowed from
	                           * the set (lives as long as the set) */
	const char *tool_glob;    /* on deny: the TOOL-GLOB of the failing rule, borrowed */
	/* On deny, for the JSON-RPC error message and the audit record: the check, the
	 * argument (with the array index when an element failed) and why, e.g.
	 *   path_under /srv/data: arguments.path: resolves outside the directory
	 *   max_length 64: arguments.query: 80 characters
	 *   enum: arguments.sortBy: not one of the 2 allowed values
	 *   path_under /srv/data: arguments.path: missing (not optional)
	 * Never contains the argument's value. */
	char detail[ARGRULE_DETAIL_MAX];
};

/* Checks the arguments (params.arguments of a tools/call: an object, or NULL when the
 * call has none, which counts as {}) of tool `tool` against every set in sets[0..nsets)
 * (NULL entries are skipped). Returns 0 with *res filled: allow when no applicable
 * rule fails, else the first failure in order (sets in the order given, then tool
 * globs and arguments in document order). A NULL tool with any set present is a deny.
 * An internal failure (no memory for PCRE2 match data) is a deny too. Any thread. */
int argrule_check(struct argrule_set *const *sets, size_t nsets, const char *tool,
    json_t *arguments, struct argrule_result *res);

/* The lexical path check behind path_under (exposed for tests and fuzzing).
 * Refuses (returns -1, *why set to a static phrase): an empty value, more than
 * ARGRULE_PATH_MAX bytes, NUL, ASCII control characters and DEL, C1 controls
 * (U+0080-U+009F), invalid UTF-8, any '\\', any '%' (no percent-decoding is done, so
 * %2e, %2f and every other escape is refused rather than interpreted), Unicode
 * characters whose compatibility form is a dot, slash or backslash (U+2024-U+2026,
 * U+FE19, U+FE30, U+FE52, U+FE68, U+FF0E, U+FF0F, U+FF3C), and anything not starting
 * with '/' (relative paths, "~", "file:" URIs). Then resolves "." and ".." segments and
 * collapses repeated slashes (RFC 3986 section 5.2.4; ".." at the root stays at the root
 * as in POSIX) and writes the result to out (at most len + 1 bytes; outlen must be at
 * least len + 1), without a trailing slash except for "/". Returns 0. */
int argrule_path_normalize(const char *in, size_t len, char *out, size_t outlen,
    const char **why);

/* 1 when normalized path p equals normalized directory dir or lies under it. */
int argrule_path_under(const char *p, const char *dir);

#endif
