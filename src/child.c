/* Child processes: pipes, environment, PATH lookup, posix_spawn (include/child.h). */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Moves fd above 2, so that the child's dup2 onto 0-2 never meets itself (dup2(fd, fd)
 * would leave FD_CLOEXEC set). */
static int
child_fd_high(int fd)
{
	int nfd;

	if (fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

int
child_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) == -1)
		return -1;
	fds[0] = child_fd_high(fds[0]);
	fds[1] = child_fd_high(fds[1]);
	if (fds[0] == -1 || fds[1] == -1) {
		if (fds[0] != -1)
			close(fds[0]);
		if (fds[1] != -1)
			close(fds[1]);
		return -1;
	}
	return 0;
}

void
child_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The value of NAME in a "NAME=VALUE" list, or NULL. */
const char *
child_env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);

	for (; env != NULL && *env != NULL; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

/* The child's environment: PATH and HOME (the gateway's, or defaults), then conf's
 * entries, which override them. The strings in *owned are to be freed. */
char **
child_env(char *const *conf_env, char **owned, size_t nowned)
{
	const char *path, *home;
	size_t n = 0, i;
	char **envp;

	for (i = 0; conf_env != NULL && conf_env[i] != NULL; i++)
		n++;
	if ((envp = calloc(n + 3, sizeof(*envp))) == NULL)
		return NULL;
	memset(owned, 0, nowned * sizeof(*owned));
	n = 0;
	if (child_env_get(conf_env, "PATH") == NULL) {
		path = getenv("PATH");
		if (asprintf(&owned[0], "PATH=%s", path != NULL && *path != '\0' ? path :
		    CHILD_DEFAULT_PATH) < 0)
			goto fail;
		envp[n++] = owned[0];
	}
	if (child_env_get(conf_env, "HOME") == NULL) {
		home = getenv("HOME");
		if (asprintf(&owned[1], "HOME=%s", home != NULL && *home == '/' ? home : "/") < 0)
			goto fail;
		envp[n++] = owned[1];
	}
	for (i = 0; conf_env != NULL && conf_env[i] != NULL; i++)
		envp[n++] = conf_env[i];
	envp[n] = NULL;
	return envp;
fail:
	free(owned[0]);
	owned[0] = NULL;
	free(envp);
	return NULL;
}

/* The program to exec: as given when it has a '/', else the first executable regular
 * file of that name in path. NULL with errno ENOENT when none. */
char *
child_resolve(const char *prog, const char *path)
{
	const char *d, *e;
	struct stat st;
	char *cand;

	if (strchr(prog, '/') != NULL)
		return strdup(prog);
	for (d = path; d != NULL; d = e != NULL ? e + 1 : NULL) {
		e = strchr(d, ':');
		if (asprintf(&cand, "%.*s/%s", e != NULL ? (int)(e - d) : (int)strlen(d), d,
		    prog) < 0)
			return NULL;
		if (cand[0] == '/' && stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(cand, X_OK) == 0)
			return cand;
		free(cand);
	}
	errno = ENOENT;
	return NULL;
}

/* posix_spawn with the process group, signal state, descriptors and directory the
 * header describes. Returns 0 and *pid, or an errno value. */
int
child_exec(const char *prog, char *const *argv, char *const *envp, const char *cwd,
    int in_r, int out_w, int err_w, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int rc;

	if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
		return rc;
	if ((rc = posix_spawnattr_init(&attr)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if ((rc = posix_spawn_file_actions_adddup2(&fa, in_r, 0)) != 0 ||
	    (rc = posix_spawn_file_actions_adddup2(&fa, out_w, 1)) != 0 ||
	    (rc = posix_spawn_file_actions_adddup2(&fa, err_w, 2)) != 0 ||
	    (rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) != 0 ||
	    (rc = posix_spawn_file_actions_addchdir_np(&fa, cwd)) != 0 ||
	    (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0 ||
	    (rc = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
	    (rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
	    (rc = posix_spawnattr_setsigdefault(&attr, &all)) != 0)
		goto done;
	rc = posix_spawn(pid, prog, &fa, &attr, argv, envp);
done:
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}
