/* Where things are in a JSON text: every value's JSON path ("$.tls.key",
 * "$.agents[3].uri", "$[\"odd key\"]") mapped to the line it starts on, so that
 * a validator working on jansson's tree (which keeps no positions) can report
 * "FILE:LINE: $.path: message". Pure: reads only the text; thread-safe.
 *
 * Paths are built the same way here and by callers (jsonpos_key/jsonpos_index), so
 * lookups match byte for byte: ".key" for a plain identifier, ["key"] (JSON-escaped)
 * otherwise, "[N]" for array elements. */
#ifndef CERTGATE_JSONPOS_H
#define CERTGATE_JSONPOS_H
#include <stddef.h>

#include "buf.h"

#define JSONPOS_MAX_DEPTH 64    /* deeper nesting is not mapped */

struct jsonpos;

/* Maps text[0..len). *out is set whenever memory allows, also for malformed text
 * (then it holds what came before the error: enough to locate a duplicate key).
 * Returns 0, or -1 when the text is malformed or memory ran out (*out may be NULL
 * only then). */
int jsonpos_build(const char *text, size_t len, struct jsonpos **out);

/* The line (1-based) of path, or of its nearest ancestor present in the text (a
 * missing field is reported at the object that should hold it); 0 when even "$" is
 * unknown or m is NULL. */
int jsonpos_line(const struct jsonpos *m, const char *path);

/* A path that occurs twice in the text (a duplicate key), preferably one whose
 * second occurrence starts on line; NULL when none. The pointer lives as long as m. */
const char *jsonpos_duplicate(const struct jsonpos *m, int line);

void jsonpos_free(struct jsonpos *m);

/* Appends the path segment for object member key, or for array element i, to b.
 * Return 0/-1 (buf error). */
int jsonpos_key(struct buf *b, const char *key);
int jsonpos_index(struct buf *b, size_t i);

/* parent + the segment for key, malloc'd; NULL when out of memory. */
char *jsonpos_child(const char *parent, const char *key);

#endif
