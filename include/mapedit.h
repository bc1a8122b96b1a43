/* Edits of the identity map (agents.json) made by the CA: add an agent or update its
 * uri, roles and scopes. One parser decides what a valid map is: the edited text is
 * accepted only when identity_map_parse() (the gateway's own parser) accepts it, and
 * the input is read with duplicate keys refused, so an edit never collapses or
 * invents anything. Other members of an agent (rate, subject, arguments, ...) and of
 * the map are kept as they are.
 *
 * mapedit_set_agent and mapedit_check are pure; mapedit_read/mapedit_write do the
 * file I/O (the caller holds the CA lock, cadb.h). Thread-safe (no shared state).
 * Messages in err never contain the whole map. */
#ifndef CERTGATE_MAPEDIT_H
#define CERTGATE_MAPEDIT_H
#include <stddef.h>

/* Largest map read (the same limit as the gateway's). */
#define MAPEDIT_MAX_FILE (64u * 1024 * 1024)

struct mapedit_agent {
	const char *id;
	const char *uri;               /* SAN URI the agent is matched on */
	const char *const *roles;      /* role names, each must exist in the map */
	size_t nroles;
	int set_roles;                 /* 0: keep the agent's roles ([] for a new agent) */
	const char *const *scopes;     /* extra scopes (policy_scope_valid) */
	size_t nscopes;
	int set_scopes;                /* 0: keep the agent's scopes ([] for a new agent) */
};

/* Applies a to the map text (text NULL: no map yet, start from empty roles and
 * agents) and returns the new text in *out (malloc'd, NUL-terminated, 2-space
 * indent, final newline). Refused with a message in err, *out NULL:
 *   the input is not JSON or has a duplicate key; roles/agents of the wrong type;
 *   an unknown role or an invalid scope; the uri used by another agent; the result
 *   rejected by identity_map_parse.
 * Returns 0/-1. */
int mapedit_set_agent(const char *text, size_t len, const struct mapedit_agent *a,
    char **out, size_t *outlen, char *err, size_t errlen);

/* 0 when identity_map_parse accepts text, else -1 with its message. */
int mapedit_check(const char *text, size_t len, char *err, size_t errlen);

/* Reads path into *text (NULL with *len 0 when the file does not exist). 0/-1 err. */
int mapedit_read(const char *path, char **text, size_t *len, char *err, size_t errlen);
/* Validates text (mapedit_check) and replaces path atomically (mode 0644). 0/-1 err;
 * on failure the file is untouched. */
int mapedit_write(const char *path, const char *text, size_t len, char *err, size_t errlen);

#endif
