/* Child processes, the parts that are not event-loop work: pipes whose ends stay
 * above 2, the child's environment, the PATH lookup, and posix_spawn with a clean
 * signal state. Used by stdioproc.c to start stdio MCP servers and by config.c to
 * tell the operator at load time that a command is not found, so both look a
 * program up the same way. No global state; thread-safe. */
#ifndef CERTGATE_CHILD_H
#define CERTGATE_CHILD_H
#include <sys/types.h>

/* PATH when neither the configured env nor the gateway's environment has one. */
#define CHILD_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* pipe2(O_CLOEXEC) with both ends moved above fd 2. Returns 0, or -1 with errno. */
int child_pipe(int fds[2]);

/* Closes *fd when it is open and sets it to -1. */
void child_close_fd(int *fd);

/* The value of NAME in a NULL-terminated "NAME=VALUE" list (env may be NULL), or NULL. */
const char *child_env_get(char *const *env, const char *name);

/* The child's environment: PATH and HOME (the gateway's, or CHILD_DEFAULT_PATH and
 * "/") unless conf_env sets them, then conf_env's entries. Returns a malloc'd array
 * (free it; its strings are conf_env's or in owned[0..1], to be freed too; nowned
 * >= 2), or NULL. */
char **child_env(char *const *conf_env, char **owned, size_t nowned);

/* The program to exec: prog itself when it contains '/', else the first executable
 * regular file of that name in path's directories. Returns a malloc'd string, or
 * NULL with errno (ENOENT when none). */
char *child_resolve(const char *prog, const char *path);

/* posix_spawn of prog in its own process group, default signal dispositions and an
 * empty mask, in_r/out_w/err_w as fds 0-2, every other descriptor closed, in cwd.
 * Returns 0 with *pid set, or an errno value. */
int child_exec(const char *prog, char *const *argv, char *const *envp, const char *cwd,
    int in_r, int out_w, int err_w, pid_t *pid);

#endif
