/* MCP JSON-RPC inspection of requests: bodies against the agent's scopes and argument
 * rules, protocol versions, media types and refusal bodies. The filtering of listing
 * responses (JSON bodies and text/event-stream) is mcp_list.c's; both implement
 * include/mcp.h. */
#include "mcp.h"

#include "argrule.h"
#include "buf.h"
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Newest last; add a revision here when MCP publishes one. */
static const char *const mcp_versions[] = {
	"2024-11-05",
	"2025-03-26",
	"2025-06-18",
	"2025-11-25",
};

/* Methods whose results list names that policy_filter_listing narrows. */
static const char *const mcp_listing_methods[] = {
	"tools/list",
	"prompts/list",
	"resources/list",
	"resources/templates/list",
};


/* RFC 9110 tchar */
static int
mcp_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *
mcp_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static const char *
mcp_token(const char *p)
{
	while (mcp_tchar((unsigned char)*p))
		p++;
	return p;
}

enum mcp_media
mcp_media_kind(const char *v)
{
	const char *p, *t, *slash, *end;
	enum mcp_media kind;
	size_t n;

	if (v == NULL)
		return MCP_MEDIA_OTHER;
	p = mcp_ows(v);
	t = p;
	if ((slash = mcp_token(p)) == p || *slash != '/')
		return MCP_MEDIA_OTHER;
	if ((end = mcp_token(slash + 1)) == slash + 1)
		return MCP_MEDIA_OTHER;
	n = (size_t)(end - t);
	if (n == 16 && strncasecmp(t, "application/json", n) == 0)
		kind = MCP_MEDIA_JSON;
	else if (n == 17 && strncasecmp(t, "text/event-stream", n) == 0)
		kind = MCP_MEDIA_SSE;
	else
		return MCP_MEDIA_OTHER;
	/* *( OWS ";" OWS [ token "=" ( token / quoted-string ) ] ) OWS */
	for (p = mcp_ows(end); *p != '\0'; p = mcp_ows(p)) {
		if (*p++ != ';')
			return MCP_MEDIA_OTHER;
		p = mcp_ows(p);
		if (*p == ';' || *p == '\0')
			continue;
		if ((t = mcp_token(p)) == p || *t != '=')
			return MCP_MEDIA_OTHER;
		p = t + 1;
		if (*p == '"') {
			for (p++; *p != '"'; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				else if (*p == '\0' || ((unsigned char)*p < 0x20 && *p != '\t'))
					return MCP_MEDIA_OTHER;
			}
			p++;
		} else if ((t = mcp_token(p)) == p)
			return MCP_MEDIA_OTHER;
		else
			p = t;
	}
	return kind;
}

int
mcp_protocol_version_known(const char *v)
{
	size_t i;

	if (v == NULL)
		return 0;
	for (i = 0; i < sizeof(mcp_versions) / sizeof(mcp_versions[0]); i++)
		if (strcmp(v, mcp_versions[i]) == 0)
			return 1;
	return 0;
}

static const char *
mcp_listing_method(const char *m)
{
	size_t i;

	if (m == NULL)
		return NULL;
	for (i = 0; i < sizeof(mcp_listing_methods) / sizeof(mcp_listing_methods[0]); i++)
		if (strcmp(m, mcp_listing_methods[i]) == 0)
			return mcp_listing_methods[i];
	return NULL;
}

/* New reference to {"jsonrpc":"2.0","id":id|null,"error":{"code","message"}}. */
json_t *
mcp_error_obj(json_t *id, int code, const char *message)
{
	return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0",
	    "id", id != NULL ? id : json_null(), "error", "code", code,
	    "message", message != NULL ? message : "error");
}

char *
mcp_error_body(json_t *id, int code, const char *message)
{
	json_t *o;
	char *s;

	if ((o = mcp_error_obj(id, code, message)) == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

void
mcp_inspect_free(struct mcp_inspect *in)
{
	size_t i;

	if (in == NULL)
		return;
	for (i = 0; i < in->nlists; i++)
		json_decref(in->lists[i].id);
	for (i = 0; in->detail != NULL && i < in->n; i++)
		free(in->detail[i]);
	free(in->detail);
	free(in->lists);
	free(in->res);
	free(in->error_body);
	json_decref(in->root);
	memset(in, 0, sizeof(*in));
}

static json_t *
mcp_message(const struct mcp_inspect *in, size_t i)
{
	return in->batch ? json_array_get(in->root, i) : in->root;
}

/* Sets a refusal; body may be NULL only when allocation failed. */
static int
mcp_refuse(struct mcp_inspect *in, int status, const char *reason, char *body)
{
	in->status = status;
	in->reason = reason;
	in->error_body = body;
	return body != NULL ? 0 : -1;
}

/* The id of a message that failed validation, when it is usable in a reply. */
static json_t *
mcp_salvage_id(json_t *msg)
{
	json_t *id = json_object_get(msg, "id");

	return json_is_string(id) || json_is_number(id) ? id : NULL;
}

static int
mcp_check_headers(struct mcp_inspect *in, const char *mcp_method, const char *mcp_name)
{
	const struct policy_result *r;
	size_t i;

	for (i = 0; i < in->n; i++) {
		r = &in->res[i];
		if (mcp_method != NULL && (r->method == NULL || strcmp(r->method, mcp_method) != 0))
			return mcp_refuse(in, 400, "Mcp-Method header mismatch",
			    mcp_error_body(in->batch ? NULL : r->id, MCP_ERR_INVALID,
			    "Mcp-Method header does not match the request body")) == -1 ? -1 : 1;
		if (mcp_name != NULL && (r->name == NULL || strcmp(r->name, mcp_name) != 0))
			return mcp_refuse(in, 400, "Mcp-Name header mismatch",
			    mcp_error_body(in->batch ? NULL : r->id, MCP_ERR_INVALID,
			    "Mcp-Name header does not match the request body")) == -1 ? -1 : 1;
	}
	return 0;
}

/* A refused request's error: -32602 for arguments its schema refuses, -32001 else. */
static json_t *
mcp_denial(const struct mcp_inspect *in, size_t i)
{
	const struct policy_result *r = &in->res[i];
	const char *detail = in->detail != NULL ? in->detail[i] : NULL;
	char msg[768];

	if (detail != NULL && r->reason != NULL && strcmp(r->reason, "argument rule") != 0) {
		snprintf(msg, sizeof(msg), "Invalid params: %.600s", detail);
		return mcp_error_obj(r->id, MCP_ERR_PARAMS, msg);
	}
	snprintf(msg, sizeof(msg), "certgate: agent may not call %.100s%s%.200s (%s%s%.400s)",
	    r->method != NULL ? r->method : "?", r->name != NULL ? " " : "",
	    r->name != NULL ? r->name : "", r->reason != NULL ? r->reason : "denied",
	    detail != NULL ? ": " : "", detail != NULL ? detail : "");
	return mcp_error_obj(r->id, MCP_ERR_FORBIDDEN, msg);
}

/* The HTTP status of a refusal caused by message i. */
static int
mcp_denial_status(const struct mcp_inspect *in, size_t i)
{
	const struct policy_result *r = &in->res[i];

	return in->detail != NULL && in->detail[i] != NULL && r->reason != NULL &&
	    strcmp(r->reason, "argument rule") != 0 ? 400 : 403;
}

/* Builds the 403 body: a single error for a single message, else one error per denied
 * request id (a lone null-id error when only notifications were denied). */
static int
mcp_refuse_denied(struct mcp_inspect *in, size_t first)
{
	json_t *arr = NULL, *e;
	char *body;
	size_t i;

	if (!in->batch) {
		if ((e = mcp_denial(in, first)) == NULL)
			return -1;
		body = json_dumps(e, JSON_COMPACT);
		json_decref(e);
		return mcp_refuse(in, mcp_denial_status(in, first), in->res[first].reason, body);
	}
	if ((arr = json_array()) == NULL)
		return -1;
	for (i = 0; i < in->n; i++) {
		if (in->res[i].allow || in->res[i].id == NULL)
			continue;
		if (json_array_append_new(arr, mcp_denial(in, i)) == -1)
			goto fail;
	}
	if (json_array_size(arr) == 0)
		body = mcp_error_body(NULL, MCP_ERR_FORBIDDEN, "certgate: agent may not send "
		    "this notification (missing scope)");
	else
		body = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return mcp_refuse(in, mcp_denial_status(in, first), in->res[first].reason, body);
fail:
	json_decref(arr);
	return -1;
}

static int
mcp_record_lists(struct mcp_inspect *in)
{
	const char *lm;
	size_t i;
	int pass;

	in->only_notifications = 1;
	/* Listings first (their indexes are what a filter marks answered), then every
	 * other request with an id. */
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < in->n; i++) {
			if (!in->res[i].is_request)
				continue;
			in->only_notifications = 0;
			if (pass == 0 && strcmp(in->res[i].method, "initialize") == 0)
				in->has_initialize = 1;
			lm = mcp_listing_method(in->res[i].method);
			if ((pass == 0) != (lm != NULL))
				continue;
			if (in->lists == NULL &&
			    (in->lists = calloc(in->n, sizeof(*in->lists))) == NULL)
				return -1;
			in->lists[in->nlists].id = json_incref(in->res[i].id);
			in->lists[in->nlists].method = lm;
			in->lists[in->nlists].first_page = json_object_get(json_object_get(
			    mcp_message(in, i), "params"), "cursor") == NULL;
			in->nlists++;
			in->nlisting += lm != NULL;
		}
	}
	return 0;
}

/* Argument rules, then the schema, for a tools/call the scopes allowed. Returns 0
 * (res->allow cleared and a detail kept on refusal) or -1 out of memory. */
static int
mcp_check_arguments(struct mcp_inspect *in, size_t i, json_t *msg,
    const struct mcp_authz *az)
{
	struct policy_result *r = &in->res[i];
	struct argrule_result ar;
	json_t *args = json_object_get(json_object_get(msg, "params"), "arguments");
	const char *reason = NULL;
	char detail[512];

	if (!r->allow || r->method == NULL || strcmp(r->method, "tools/call") != 0)
		return 0;
	detail[0] = '\0';
	if (az->nrules > 0) {
		if (argrule_check(az->rules, az->nrules, r->name, args, &ar) == -1)
			return -1;
		if (!ar.allow) {
			reason = ar.reason;
			snprintf(detail, sizeof(detail), "%s", ar.detail);
		}
	}
	if (reason == NULL && az->validate != NULL &&
	    !az->validate(az->validate_arg, r->name, args, &reason, detail, sizeof(detail)))
		reason = reason != NULL ? reason : "invalid arguments";
	if (reason == NULL)
		return 0;
	r->allow = 0;
	r->reason = reason;
	if (in->detail == NULL && (in->detail = calloc(in->n, sizeof(*in->detail))) == NULL)
		return -1;
	if ((in->detail[i] = strdup(detail)) == NULL)
		return -1;
	return 0;
}

static int
mcp_inspect_messages(struct mcp_inspect *in, const struct mcp_authz *az,
    const char *mcp_method, const char *mcp_name)
{
	json_t *msg;
	size_t i, denied = SIZE_MAX;
	int r;

	if ((in->res = calloc(in->n, sizeof(*in->res))) == NULL)
		return -1;
	for (i = 0; i < in->n; i++) {
		msg = mcp_message(in, i);
		if (policy_check_message(az->scopes, az->nscopes, msg, &in->res[i]) == -1)
			return mcp_refuse(in, 400, in->res[i].reason,
			    mcp_error_body(in->batch ? NULL : mcp_salvage_id(msg),
			    MCP_ERR_INVALID, "Invalid Request: not a JSON-RPC 2.0 message"));
		if (mcp_check_arguments(in, i, msg, az) == -1)
			return -1;
		if (!in->res[i].allow && denied == SIZE_MAX)
			denied = i;
	}
	in->method = in->res[0].method;
	in->name = in->res[0].name;
	if ((r = mcp_check_headers(in, mcp_method, mcp_name)) != 0)
		return r == -1 ? -1 : 0;
	if (denied != SIZE_MAX)
		return mcp_refuse_denied(in, denied);
	return mcp_record_lists(in);
}

int
mcp_inspect_body(const char *body, size_t len, char *const *scopes, size_t nscopes,
    const char *mcp_method, const char *mcp_name, struct mcp_inspect *out)
{
	struct mcp_authz az;

	memset(&az, 0, sizeof(az));
	az.scopes = scopes;
	az.nscopes = nscopes;
	return mcp_inspect_request(body, len, &az, mcp_method, mcp_name, out);
}

int
mcp_inspect_request(const char *body, size_t len, const struct mcp_authz *az,
    const char *mcp_method, const char *mcp_name, struct mcp_inspect *out)
{
	json_error_t jerr;

	memset(out, 0, sizeof(*out));
	/* Without JSON_DECODE_ANY only an object or array is accepted; jansson stops at
	 * JSON_PARSER_MAX_DEPTH (2048) nesting levels, so deep input fails cleanly. */
	out->root = json_loadb(body != NULL ? body : "", len, 0, &jerr);
	if (out->root == NULL) {
		/* valid JSON that is neither object nor array is an invalid request */
		if ((out->root = json_loadb(body != NULL ? body : "", len, JSON_DECODE_ANY,
		    NULL)) != NULL) {
			json_decref(out->root);
			out->root = NULL;
			if (mcp_refuse(out, 400, "invalid request", mcp_error_body(NULL,
			    MCP_ERR_INVALID, "Invalid Request: not a JSON-RPC 2.0 message")) == -1)
				goto fail;
			return 0;
		}
		if (mcp_refuse(out, 400, "invalid json", mcp_error_body(NULL, MCP_ERR_PARSE,
		    "Parse error")) == -1)
			goto fail;
		return 0;
	}
	out->batch = json_is_array(out->root);
	out->n = out->batch ? json_array_size(out->root) : 1;
	if (out->n == 0) {
		if (mcp_refuse(out, 400, "empty batch", mcp_error_body(NULL, MCP_ERR_INVALID,
		    "Invalid Request: empty batch")) == -1)
			goto fail;
		return 0;
	}
	if (mcp_inspect_messages(out, az, mcp_method, mcp_name) == -1)
		goto fail;
	return 0;
fail:
	mcp_inspect_free(out);
	return -1;
}
