/* JSON-lines appends: one JSON object per line, written with one write(2) on an
 * O_APPEND descriptor so lines from several processes or threads never interleave
 * and nothing waits in a user-space buffer when the process dies. Used by every
 * audit trail (the gateway's request log keeps its descriptor open and formats its
 * own lines for speed, then writes them with jsonl_write). Thread-safe. */
#ifndef CERTGATE_JSONL_H
#define CERTGATE_JSONL_H
#include <jansson.h>
#include <stddef.h>

/* Writes line[0..len) (which must end with '\n') to fd in one write(2). Returns 0,
 * or -1 (errno; EIO for a short write). */
int jsonl_write(int fd, const char *line, size_t len);

/* Appends obj as one compact line (keys in insertion order) to path, created 0600,
 * fsync'd when sync is set. Returns 0/-1 (errno). obj is borrowed. */
int jsonl_append(const char *path, json_t *obj, int sync);
/* Appends objs[0..n) as n lines in one write(2) (one fsync when sync is set). */
int jsonl_append_many(const char *path, json_t *const *objs, size_t n, int sync);

#endif
