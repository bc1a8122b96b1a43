/* Identity map edits validated by the gateway's own parser (mapedit.h). */
#include "mapedit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "file.h"
#include "identity.h"
#include "policy.h"

int
mapedit_check(const char *text, size_t len, char *err, size_t errlen)
{
	struct identity_map *m = NULL;

	if (identity_map_parse(text, len, &m, err, errlen) == -1)
		return -1;
	identity_map_free(m);
	return 0;
}

static json_t *
mapedit_strarray(const char *const *v, size_t n)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; arr != NULL && i < n; i++)
		if (json_array_append_new(arr, json_string(v[i])) == -1) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

static int
mapedit_dump_cb(const char *p, size_t n, void *arg)
{
	return buf_add(arg, p, n);
}

/* Checks the request against the document before anything changes. */
static int
mapedit_precheck(json_t *root, const struct mapedit_agent *a, json_t **agentsp,
    json_t **agentp, char *err, size_t errlen)
{
	json_t *roles, *agents, *v, *uri;
	const char *id;
	size_t i;

	*agentp = NULL;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "the identity map must be a JSON object");
		return -1;
	}
	roles = json_object_get(root, "roles");
	if (roles != NULL && !json_is_object(roles)) {
		snprintf(err, errlen, "\"roles\" must be an object");
		return -1;
	}
	for (i = 0; a->set_roles && i < a->nroles; i++)
		if (roles == NULL || json_object_get(roles, a->roles[i]) == NULL) {
			snprintf(err, errlen, "unknown role '%.100s' (not in the identity map)",
			    a->roles[i]);
			return -1;
		}
	for (i = 0; a->set_scopes && i < a->nscopes; i++)
		if (!policy_scope_valid(a->scopes[i])) {
			snprintf(err, errlen, "invalid scope '%.200s' (want *, mcp:GLOB, tools:GLOB, "
			    "resources:GLOB or prompts:GLOB)", a->scopes[i]);
			return -1;
		}
	agents = json_object_get(root, "agents");
	if (agents != NULL && !json_is_array(agents)) {
		snprintf(err, errlen, "\"agents\" must be an array");
		return -1;
	}
	json_array_foreach(agents, i, v) {
		id = json_string_value(json_object_get(v, "id"));
		uri = json_object_get(v, "uri");
		if (id != NULL && strcmp(id, a->id) == 0) {
			if (*agentp != NULL) {
				snprintf(err, errlen, "agent '%.100s' appears twice in the identity map",
				    a->id);
				return -1;
			}
			*agentp = v;
		} else if (json_is_string(uri) && strcmp(json_string_value(uri), a->uri) == 0) {
			snprintf(err, errlen, "agent '%.100s' in the identity map already uses "
			    "URI %.200s", id ? id : "?", a->uri);
			return -1;
		}
	}
	*agentsp = agents;
	return 0;
}

int
mapedit_set_agent(const char *text, size_t len, const struct mapedit_agent *a, char **out,
    size_t *outlen, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = NULL, *agents = NULL, *ag = NULL, *arr;
	struct buf b;
	char why[512];

	*out = NULL;
	buf_init(&b);
	if (text == NULL)
		root = json_pack("{s:{}, s:[]}", "roles", "agents");
	else if ((root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		snprintf(err, errlen, "the identity map is not valid (line %d column %d: %s); "
		    "fix it first", jerr.line, jerr.column, jerr.text);
		return -1;
	}
	if (root == NULL)
		goto oom;
	if (mapedit_precheck(root, a, &agents, &ag, err, errlen) == -1)
		goto fail;
	if (agents == NULL &&
	    json_object_set_new(root, "agents", agents = json_array()) == -1)
		goto oom;
	if (ag == NULL) {
		if ((ag = json_object()) == NULL || json_array_append_new(agents, ag) == -1 ||
		    json_object_set_new(ag, "id", json_string(a->id)) == -1)
			goto oom;
	}
	if (json_object_set_new(ag, "uri", json_string(a->uri)) == -1)
		goto oom;
	if (a->set_roles || json_object_get(ag, "roles") == NULL) {
		if ((arr = mapedit_strarray(a->roles, a->set_roles ? a->nroles : 0)) == NULL ||
		    json_object_set_new(ag, "roles", arr) == -1)
			goto oom;
	}
	if (a->set_scopes || json_object_get(ag, "scopes") == NULL) {
		if ((arr = mapedit_strarray(a->scopes, a->set_scopes ? a->nscopes : 0)) == NULL ||
		    json_object_set_new(ag, "scopes", arr) == -1)
			goto oom;
	}
	if (json_dump_callback(root, mapedit_dump_cb, &b, JSON_INDENT(2) |
	    JSON_PRESERVE_ORDER) != 0 || buf_addc(&b, '\n') == -1)
		goto oom;
	/* The gateway's parser is the judge: an edit it would reject is never written. */
	if (mapedit_check(b.p, b.len, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "the edited identity map would be invalid: %s", why);
		goto fail;
	}
	if (outlen != NULL)
		*outlen = b.len;
	if ((*out = buf_detach(&b, NULL)) == NULL)
		goto oom;
	json_decref(root);
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	buf_free(&b);
	json_decref(root);
	return -1;
}

int
mapedit_read(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
	*text = NULL;
	*len = 0;
	if (file_read(path, MAPEDIT_MAX_FILE, text, len) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
	return -1;
}

int
mapedit_write(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
	char why[512];

	if (mapedit_check(text, len, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "%s: refusing to write an invalid identity map: %s", path, why);
		return -1;
	}
	if (file_write_atomic(path, text, len, 0644) == -1) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
