/* Paths, lexically: request targets before they are forwarded, and file paths that
 * argument rules compare against a directory. Pure functions (no I/O, no filesystem
 * access), thread-safe.
 *
 * Why refuse rather than decode: an upstream may decode %2e, %2f or %5c and a
 * backslash differently from us (some treat '\' as '/', some decode twice), so any
 * spelling whose meaning depends on the reader is refused, and what is forwarded
 * has one meaning to every reader. */
#ifndef CERTGATE_PATH_H
#define CERTGATE_PATH_H
#include <stddef.h>

/* RFC 3986 §5.2.4 remove_dot_segments on an absolute path (starting with '/') of n
 * bytes, written NUL-terminated to out (outlen >= n + 1 always suffices). ".." at the
 * root stays at the root, as the RFC says. Returns the output length, or -1 when
 * the input is not absolute or out is too small. */
long path_remove_dots(const char *in, size_t n, char *out, size_t outlen);

/* Normalizes a request target in origin form ("/path?query") for forwarding:
 * refuses a target that does not start with '/', a '#', a backslash, "//" (an
 * empty segment that some stacks read as an authority or collapse), percent
 * escapes that are malformed, NUL (%00), or encode '/', '\' or '.' (%2F %5C %2E in
 * any case); then removes dot segments from the path. The query is kept as sent.
 * Writes the result to out (outlen >= strlen(target) + 1 suffices). Returns 0, or
 * -1 with *why set to a short static reason (for the 400 and the audit record). */
int path_target_normalize(const char *target, char *out, size_t outlen, const char **why);

/* Maps a normalized target below the upstream's path prefix (upstream.path, e.g.
 * "/mcp"; "/" or "" means no prefix): a target already at or under the prefix (on a
 * segment boundary: "/mcpx" is not under "/mcp") is used as is, any other is
 * appended to it ("/x" -> "/mcp/x"). Since the target has no dot segments left the
 * result cannot leave the prefix. Returns the length written to out (NUL-terminated)
 * or -1 when out is too small. */
long path_under_prefix(const char *prefix, const char *target, char *out, size_t outlen);

/* 1 when path (absolute, already normalized) is dir or below it on a segment
 * boundary ("/srv/data" and "/srv/data/x" are under "/srv/data", "/srv/data2" is
 * not; dir "/" contains every absolute path). dir may end with '/'. */
int path_is_under(const char *path, const char *dir);

#endif
