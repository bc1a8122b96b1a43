/* MCP authorization: scopes against JSON-RPC messages (README "Scopes").
 * Pure functions over jansson values; no I/O, no allocation except in
 * policy_filter_listing (which edits the caller's JSON in place). */
#include "policy.h"

#include <string.h>

/* Where each listing method keeps its entries and which field names them. */
struct policy_listing {
	const char *method;
	const char *array;
	const char *field;
	const char *kind;
};

static const struct policy_listing policy_listings[] = {
	{ "tools/list", "tools", "name", "tools" },
	{ "prompts/list", "prompts", "name", "prompts" },
	{ "resources/list", "resources", "uri", "resources" },
	{ "resources/templates/list", "resourceTemplates", "uriTemplate", "resources" },
};

/*
 * Two-pointer matcher with a single backtrack point: on a mismatch only the most
 * recent '*' is retried one character further, so the cost is O(len(p) * len(s))
 * in the worst case and never exponential.
 */
int
policy_glob(const char *p, const char *s)
{
	const char *star = NULL, *retry = NULL;

	if (p == NULL || s == NULL)
		return 0;
	while (*s != '\0') {
		if (*p == '*') {
			star = p++;
			retry = s;
		} else if (*p != '\0' && (*p == '?' || *p == *s)) {
			p++;
			s++;
		} else if (star != NULL) {
			p = star + 1;
			s = ++retry;
		} else
			return 0;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

static const char *const policy_prefixes[] = { "mcp:", "tools:", "resources:", "prompts:" };

/* A scope ends up in the X-Agent-Scopes header (space-separated), so bytes that
 * would break that header or the list format are refused here once and for all. */
int
policy_scope_valid(const char *scope)
{
	const unsigned char *c;
	size_t i, n;

	if (scope == NULL)
		return 0;
	if (strcmp(scope, "*") == 0)
		return 1;
	for (i = 0; i < sizeof(policy_prefixes) / sizeof(policy_prefixes[0]); i++) {
		n = strlen(policy_prefixes[i]);
		if (strncmp(scope, policy_prefixes[i], n) != 0)
			continue;
		if (scope[n] == '\0')
			return 0;
		for (c = (const unsigned char *)scope + n; *c != '\0'; c++)
			if (*c <= 0x20 || *c == 0x7f)
				return 0;
		return 1;
	}
	return 0;
}

/* 1 when some "prefix:GLOB" scope matches s. */
static int
policy_match_prefixed(char *const *scopes, size_t nscopes, const char *prefix, const char *s)
{
	size_t i, n = strlen(prefix);

	for (i = 0; i < nscopes; i++) {
		if (scopes[i] == NULL || strncmp(scopes[i], prefix, n) != 0 ||
		    scopes[i][n] != ':')
			continue;
		if (policy_glob(scopes[i] + n + 1, s))
			return 1;
	}
	return 0;
}

static int
policy_has_star(char *const *scopes, size_t nscopes)
{
	size_t i;

	for (i = 0; i < nscopes; i++)
		if (scopes[i] != NULL && strcmp(scopes[i], "*") == 0)
			return 1;
	return 0;
}

/* A URI that a server might normalise into something else: any percent-escape or a
 * ".." path segment. Globs cannot be trusted with those (a star after "/pub/" would
 * match file:///pub/../secret), so only a literal scope grants them. */
static int
policy_uri_suspicious(const char *uri)
{
	const char *seg, *c;

	if (strchr(uri, '%') != NULL)
		return 1;
	seg = uri;
	for (c = uri;; c++) {
		/* ':' counts too, so "file:.." and "urn:x:.." are caught */
		if (*c == '\0' || strchr("/\\?#:", *c) != NULL) {
			if (c - seg == 2 && seg[0] == '.' && seg[1] == '.')
				return 1;
			if (*c == '\0')
				return 0;
			seg = c + 1;
		}
	}
}

static int
policy_literal_resource(char *const *scopes, size_t nscopes, const char *uri)
{
	size_t i;

	for (i = 0; i < nscopes; i++)
		if (scopes[i] != NULL && strncmp(scopes[i], "resources:", 10) == 0 &&
		    strcmp(scopes[i] + 10, uri) == 0)
			return 1;
	return 0;
}

/* The method that calling `name` of `kind` amounts to; an mcp: scope granting that
 * method grants every name of the kind. */
static const char *
policy_kind_method(const char *kind)
{
	if (strcmp(kind, "tools") == 0)
		return "tools/call";
	if (strcmp(kind, "prompts") == 0)
		return "prompts/get";
	if (strcmp(kind, "resources") == 0)
		return "resources/read";
	return NULL;
}

int
policy_allows_name(char *const *scopes, size_t nscopes, const char *kind, const char *name)
{
	const char *method;

	if (kind == NULL || name == NULL || (method = policy_kind_method(kind)) == NULL)
		return 0;
	if (policy_has_star(scopes, nscopes))
		return 1;
	if (policy_match_prefixed(scopes, nscopes, "mcp", method))
		return 1;
	if (strcmp(kind, "resources") == 0 && policy_uri_suspicious(name))
		return policy_literal_resource(scopes, nscopes, name);
	return policy_match_prefixed(scopes, nscopes, kind, name);
}

static int
policy_id_valid(json_t *id)
{
	return json_is_string(id) || json_is_number(id) || json_is_null(id);
}

/* Structural JSON-RPC 2.0 checks; fills the message kind into res. */
static int
policy_classify(json_t *msg, struct policy_result *res)
{
	json_t *v, *method, *id, *params, *result, *error;

	if (!json_is_object(msg))
		return -1;
	v = json_object_get(msg, "jsonrpc");
	if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0)
		return -1;
	method = json_object_get(msg, "method");
	id = json_object_get(msg, "id");
	params = json_object_get(msg, "params");
	result = json_object_get(msg, "result");
	error = json_object_get(msg, "error");
	if (id != NULL && !policy_id_valid(id))
		return -1;
	if (method != NULL) {
		if (!json_is_string(method) || result != NULL || error != NULL)
			return -1;
		if (params != NULL && !json_is_object(params) && !json_is_array(params))
			return -1;
		res->method = json_string_value(method);
		res->id = id;
		res->is_request = id != NULL;
		res->is_notification = id == NULL;
		return 0;
	}
	if ((result == NULL) == (error == NULL) || id == NULL)
		return -1;
	res->is_response = 1;
	return 0;
}

static const char *
policy_param_string(json_t *msg, const char *key)
{
	json_t *v = json_object_get(json_object_get(msg, "params"), key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int
policy_is_lifecycle(const struct policy_result *res)
{
	if (strcmp(res->method, "initialize") == 0 || strcmp(res->method, "ping") == 0)
		return 1;
	/* "notifications/..." only as real notifications: a "notifications/x" request with
	 * an id is an ordinary method and needs a scope. */
	return res->is_notification && strncmp(res->method, "notifications/", 14) == 0;
}

static int
policy_is_resource_method(const char *m)
{
	return strcmp(m, "resources/read") == 0 || strcmp(m, "resources/subscribe") == 0 ||
	    strcmp(m, "resources/unsubscribe") == 0;
}

static void
policy_deny(struct policy_result *res, const char *reason)
{
	res->allow = 0;
	res->reason = reason;
}

/*
 * Order of grants: lifecycle, "*", an mcp: scope matching the method, then the
 * kind-specific scopes for tools/call, prompts/get and resources/read|subscribe|unsubscribe.
 * Listing methods (tools/list, prompts/list, resources/list, resources/templates/list)
 * are ordinary methods here: tools:… scopes alone do NOT grant tools/list. An agent
 * limited to tools:echo that should list needs mcp:tools/list as well; the listing it
 * then receives is filtered to what its tools:… scopes allow (policy_filter_listing).
 */
int
policy_check_message(char *const *scopes, size_t nscopes, json_t *msg,
    struct policy_result *res)
{
	const char *m;

	memset(res, 0, sizeof(*res));
	if (policy_classify(msg, res) == -1) {
		policy_deny(res, "invalid request");
		return -1;
	}
	res->allow = 1;
	if (res->is_response)
		return 0;
	m = res->method;
	if (strcmp(m, "tools/call") == 0 || strcmp(m, "prompts/get") == 0)
		res->name = policy_param_string(msg, "name");
	else if (policy_is_resource_method(m))
		res->name = policy_param_string(msg, "uri");
	if (policy_is_lifecycle(res) || policy_has_star(scopes, nscopes) ||
	    policy_match_prefixed(scopes, nscopes, "mcp", m))
		return 0;
	if (strcmp(m, "tools/call") == 0) {
		if (res->name == NULL)
			policy_deny(res, "missing tool name");
		else if (!policy_match_prefixed(scopes, nscopes, "tools", res->name))
			policy_deny(res, "missing scope");
	} else if (strcmp(m, "prompts/get") == 0) {
		if (res->name == NULL)
			policy_deny(res, "missing prompt name");
		else if (!policy_match_prefixed(scopes, nscopes, "prompts", res->name))
			policy_deny(res, "missing scope");
	} else if (policy_is_resource_method(m)) {
		if (res->name == NULL)
			policy_deny(res, "missing resource uri");
		else if (policy_uri_suspicious(res->name)) {
			if (!policy_literal_resource(scopes, nscopes, res->name))
				policy_deny(res, "path traversal");
		} else if (!policy_match_prefixed(scopes, nscopes, "resources", res->name))
			policy_deny(res, "missing scope");
	} else
		policy_deny(res, "missing scope");
	return 0;
}

/* 1 when the listing entry may stay. Entries whose key is missing cannot be
 * checked and are dropped. */
static int
policy_entry_allowed(char *const *scopes, size_t nscopes, const struct policy_listing *l,
    json_t *entry)
{
	json_t *key = json_object_get(entry, l->field);

	/* responses are parsed with NUL escapes allowed: a name the C string would
	 * truncate is not the name the client sees */
	if (!json_is_string(key) || strlen(json_string_value(key)) != json_string_length(key))
		return 0;
	return policy_allows_name(scopes, nscopes, l->kind, json_string_value(key));
}

int
policy_filter_listing(char *const *scopes, size_t nscopes, const char *method,
    json_t *response)
{
	const struct policy_listing *l = NULL;
	json_t *result, *arr;
	size_t i, n;
	int removed = 0;

	if (method == NULL || !json_is_object(response))
		return -1;
	for (i = 0; i < sizeof(policy_listings) / sizeof(policy_listings[0]); i++)
		if (strcmp(method, policy_listings[i].method) == 0)
			l = &policy_listings[i];
	if (l == NULL)
		return -1;
	result = json_object_get(response, "result");
	if (result == NULL)
		return json_object_get(response, "error") != NULL ? 0 : -1;
	if (!json_is_object(result))
		return -1;
	arr = json_object_get(result, l->array);
	if (arr == NULL)
		return 0;
	if (!json_is_array(arr))
		return -1;
	n = json_array_size(arr);
	for (i = 0; i < n;) {
		if (policy_entry_allowed(scopes, nscopes, l, json_array_get(arr, i))) {
			i++;
			continue;
		}
		if (json_array_remove(arr, i) == -1)
			return -1;
		n--;
		removed++;
	}
	return removed;
}
