/* JSON-RPC messages for the stdio bridge (see include/agent_msg.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_msg.h"
#include "mcp.h"

static json_t *
agent_msg_load(const char *p, size_t n, json_error_t *je)
{
	json_t *root;

	root = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, je);
	if (root == NULL && strstr(je->text, "too big") != NULL)
		root = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL |
		    JSON_DECODE_INT_AS_REAL, je);
	return root;
}

static int
agent_msg_valid_id(json_t *id)
{
	return json_is_string(id) || json_is_integer(id) || json_is_real(id);
}

/* Classifies one object; err set on failure. */
static enum agent_msg_kind
agent_msg_one(json_t *o, json_t **idp, const char **methodp, char *err, size_t errlen)
{
	json_t *v, *id, *method;
	int has_result, has_error;

	*idp = NULL;
	*methodp = NULL;
	if (!json_is_object(o)) {
		snprintf(err, errlen, "a JSON-RPC message must be an object");
		return AGENT_MSG_INVALID;
	}
	id = json_object_get(o, "id");
	if (id != NULL && agent_msg_valid_id(id))
		*idp = id;
	v = json_object_get(o, "jsonrpc");
	if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0) {
		snprintf(err, errlen, "\"jsonrpc\" must be \"2.0\"");
		return AGENT_MSG_INVALID;
	}
	method = json_object_get(o, "method");
	has_result = json_object_get(o, "result") != NULL;
	has_error = json_object_get(o, "error") != NULL;
	if (method != NULL) {
		if (!json_is_string(method)) {
			snprintf(err, errlen, "\"method\" must be a string");
			return AGENT_MSG_INVALID;
		}
		if (has_result || has_error) {
			snprintf(err, errlen, "a request has no \"result\" or \"error\"");
			return AGENT_MSG_INVALID;
		}
		*methodp = json_string_value(method);
		if (id == NULL)
			return AGENT_MSG_NOTIFICATION;
		if (!agent_msg_valid_id(id)) {
			snprintf(err, errlen, "a request id must be a string or a number");
			return AGENT_MSG_INVALID;
		}
		return AGENT_MSG_REQUEST;
	}
	if (has_result == has_error) {
		snprintf(err, errlen, "a message needs \"method\", or exactly one of "
		    "\"result\" and \"error\"");
		return AGENT_MSG_INVALID;
	}
	if (id == NULL || (!agent_msg_valid_id(id) && !json_is_null(id))) {
		snprintf(err, errlen, "a response needs an \"id\" (string, number or null)");
		return AGENT_MSG_INVALID;
	}
	*idp = id;
	return AGENT_MSG_RESPONSE;
}

static int
agent_msg_note(struct agent_msg *m, enum agent_msg_kind k, json_t *id, const char *method)
{
	if (k == AGENT_MSG_REQUEST && json_array_append(m->request_ids, id) == -1)
		return -1;
	if (k == AGENT_MSG_RESPONSE && json_array_append(m->response_ids, id) == -1)
		return -1;
	if (method != NULL && k == AGENT_MSG_REQUEST && strcmp(method, "initialize") == 0)
		m->initialize = 1;
	if (method != NULL && k == AGENT_MSG_NOTIFICATION &&
	    strcmp(method, "notifications/initialized") == 0)
		m->initialized = 1;
	if (m->method == NULL)
		m->method = method;
	return 0;
}

int
agent_msg_parse(const char *p, size_t n, struct agent_msg *m, int *code, char *err,
    size_t errlen)
{
	enum agent_msg_kind k;
	json_error_t je;
	json_t *id;
	const char *method;
	size_t i;

	memset(m, 0, sizeof(*m));
	*code = MCP_ERR_INVALID;
	err[0] = '\0';
	if ((m->root = agent_msg_load(p, n, &je)) == NULL) {
		*code = MCP_ERR_PARSE;
		snprintf(err, errlen, "not JSON: %s (at byte %d)", je.text, je.position);
		return -1;
	}
	if ((m->request_ids = json_array()) == NULL ||
	    (m->response_ids = json_array()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!json_is_array(m->root)) {
		k = agent_msg_one(m->root, &id, &method, err, errlen);
		m->id = id;
		if (k == AGENT_MSG_INVALID)
			return -1;
		m->kind = k;
		if (agent_msg_note(m, k, id, method) == -1) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (json_array_size(m->root) == 0) {
		snprintf(err, errlen, "an empty batch");
		return -1;
	}
	for (i = 0; i < json_array_size(m->root); i++) {
		k = agent_msg_one(json_array_get(m->root, i), &id, &method, err, errlen);
		if (k == AGENT_MSG_INVALID) {
			char tmp[200];

			snprintf(tmp, sizeof(tmp), "%s", err);
			snprintf(err, errlen, "batch element %zu: %s", i, tmp);
			return -1;
		}
		if (agent_msg_note(m, k, id, method) == -1) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	m->kind = AGENT_MSG_BATCH;
	return 0;
}

void
agent_msg_free(struct agent_msg *m)
{
	if (m == NULL)
		return;
	json_decref(m->root);
	json_decref(m->request_ids);
	json_decref(m->response_ids);
	memset(m, 0, sizeof(*m));
}

int
agent_msg_id_index(json_t *ids, json_t *id)
{
	size_t i;

	if (ids == NULL || id == NULL)
		return -1;
	for (i = 0; i < json_array_size(ids); i++)
		if (json_equal(json_array_get(ids, i), id))
			return (int)i;
	return -1;
}

const char *
agent_msg_protocol_version(const struct agent_msg *m, json_t *init_id)
{
	json_t *o, *v;
	size_t i;

	if (m->root == NULL || init_id == NULL)
		return NULL;
	for (i = 0; i < (json_is_array(m->root) ? json_array_size(m->root) : 1); i++) {
		o = json_is_array(m->root) ? json_array_get(m->root, i) : m->root;
		if (!json_is_object(o) || !json_equal(json_object_get(o, "id"), init_id))
			continue;
		v = json_object_get(json_object_get(o, "result"), "protocolVersion");
		if (json_is_string(v))
			return json_string_value(v);
	}
	return NULL;
}

int
agent_msg_line(const char *p, size_t n, struct buf *out)
{
	size_t i, start = out->len;

	for (i = 0; i < n; i++)
		buf_addc(out, p[i] == '\r' || p[i] == '\n' ? ' ' : p[i]);
	if (buf_failed(out))
		return -1;
	while (out->len > start && (out->p[out->len - 1] == ' ' ||
	    out->p[out->len - 1] == '\t'))
		out->len--;
	return buf_addc(out, '\n');
}

int
agent_msg_error_line(json_t *id, int code, const char *message, struct buf *out)
{
	char *s;
	int rv;

	if ((s = mcp_error_body(id, code, message)) == NULL)
		return -1;
	rv = buf_adds(out, s);
	free(s);
	if (rv == 0)
		rv = buf_addc(out, '\n');
	return rv;
}

int
agent_msg_with_id(const struct agent_msg *m, json_t *id, struct buf *out)
{
	json_t *copy;
	char *s;
	int rv = -1;

	if (m->kind != AGENT_MSG_REQUEST || id == NULL)
		return -1;
	if ((copy = json_deep_copy(m->root)) == NULL)
		return -1;
	if (json_object_set(copy, "id", id) == 0 &&
	    (s = json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL) {
		rv = buf_adds(out, s);
		free(s);
	}
	json_decref(copy);
	return rv;
}

int
agent_msg_unmapped(const char *p, size_t n)
{
	struct agent_msg m;
	json_t *msg;
	char err[64];
	int code, rv = 0;

	if (p == NULL || n == 0 || n > 64 * 1024)
		return 0;
	if (agent_msg_parse(p, n, &m, &code, err, sizeof(err)) == 0 &&
	    m.kind == AGENT_MSG_RESPONSE) {
		msg = json_object_get(json_object_get(m.root, "error"), "message");
		rv = json_is_string(msg) &&
		    strcmp(json_string_value(msg), "certgate: " MCP_REASON_UNMAPPED) == 0;
	}
	agent_msg_free(&m);
	return rv;
}
