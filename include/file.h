/* Whole-file reads and crash-safe writes: the one place certgate reads a file into
 * memory or replaces one. No logging here: functions return 0/-1 with errno set
 * and the caller says what the file was for. Thread-safe (no shared state). */
#ifndef CERTGATE_FILE_H
#define CERTGATE_FILE_H
#include <stddef.h>
#include <sys/types.h>

/* Reads path whole into a malloc'd NUL-terminated buffer (*out, *len without the
 * NUL; len may be NULL). max > 0 refuses larger files with EFBIG, so a hostile or
 * corrupt file cannot exhaust memory. Returns 0/-1 (errno). */
int file_read(const char *path, size_t max, char **out, size_t *len);

/* Replaces path with data atomically: a temporary file in the same directory,
 * written, fsync'd, chmod'd to mode, renamed over path, and the directory fsync'd,
 * so a reader (or a crash) sees the old contents or the new ones, never a mix.
 * A path that names a device or a FIFO (/dev/null, /dev/stdout) is written to in
 * place instead; a directory is EISDIR. Returns 0/-1 (errno; the temporary file is
 * removed). */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* file_write_atomic without the directory's fsync: the file is fsync'd and renamed,
 * and the caller fsyncs the directory once (file_fsync_dir) after several files
 * in it (the CA's group commit, cabatch.h). Durable only after that fsync. */
int file_write_atomic_nodirsync(const char *path, const void *data, size_t len, mode_t mode);
/* Several replacements made durable together (the CA's group commit): each
 * file_stage_write writes a temporary file next to path and starts its writeback;
 * file_stage_commit fsyncs every one, then renames each over its path, so the
 * fsyncs one after the other cost about one disk flush. The directories are the
 * caller's to fsync (file_fsync_dir) afterwards. commit takes st[0..n), pointers. A path that is not a regular file
 * is written at once (as file_write_atomic). write: 0/-1 errno, nothing left behind.
 * commit: 0, or -1 errno with every stage not yet renamed discarded (those renamed
 * before the failure stay). discard: removes an uncommitted temporary file. A
 * zeroed struct file_stage is empty (tmp NULL: commit and discard skip it). */
struct file_stage {
	char *path, *tmp;
	int fd;
};
int file_stage_write(struct file_stage *st, const char *path, const void *data, size_t len,
    mode_t mode);
int file_stage_commit(struct file_stage *const *st, size_t n);
void file_stage_discard(struct file_stage *st);
/* fsync of a directory (after a rename or an unlink in it). 0/-1. */
int file_fsync_dir(const char *dir);

/* mkdir -p with mode for every directory created. 0/-1. */
int file_mkdirs(const char *path, mode_t mode);

/* Directory part of path ("." when none), malloc'd; NULL on ENOMEM. */
char *file_dirname(const char *path);

#endif
