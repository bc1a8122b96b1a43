/* agent_msg.c: classification of JSON-RPC messages (table), ids, single-line
 * framing, error lines, id replacement. */
#include <stdlib.h>
#include <string.h>

#include "agent_msg.h"
#include "check.h"
#include "mcp.h"

struct msg_case {
	const char *in;
	int ok;
	enum agent_msg_kind kind;
	int code;             /* on failure */
	size_t nreq, nresp;
	int init, inited;
	const char *method;
};

/* Bodies of gateway refusals: is it the one for a certificate not in the map? */
static const struct { const char *in; int want; } unmapped[] = {
	{ "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,\"message\":"
	  "\"certgate: certificate is not mapped to an agent\"}}", 1 },
	{ "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32001,\"message\":"
	  "\"certgate: certificate is not mapped to an agent\"}}\n", 1 },
	{ "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32001,\"message\":"
	  "\"certgate: agent may not call tools/call echo\"}}", 0 },
	{ "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32001,\"message\":"
	  "\"certificate is not mapped to an agent\"}}", 0 },
	{ "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"message\":"
	  "\"certgate: certificate is not mapped to an agent\"}}", 0 },
	{ "{\"error\":{\"message\":7}}", 0 },
	{ "{\"error\":{\"message\":\"certgate: certificate is not mapped to an agent\"}}", 0 },
	{ "certgate: certificate is not mapped to an agent", 0 },
	{ "", 0 },
	{ "[]", 0 },
};

static const struct msg_case cases[] = {
	{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", 1, AGENT_MSG_REQUEST, 0, 1, 0, 0, 0, "ping" },
	{ "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"initialize\",\"params\":{}}", 1, AGENT_MSG_REQUEST, 0, 1, 0, 1, 0, "initialize" },
	{ "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", 1, AGENT_MSG_NOTIFICATION, 0, 0, 0, 0, 1, "notifications/initialized" },
	{ "{\"jsonrpc\":\"2.0\",\"method\":\"initialize\"}", 1, AGENT_MSG_NOTIFICATION, 0, 0, 0, 0, 0, "initialize" },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", 1, AGENT_MSG_RESPONSE, 0, 0, 1, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":1,\"message\":\"m\"}}", 1, AGENT_MSG_RESPONSE, 0, 0, 1, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", 1, AGENT_MSG_REQUEST, 0, 1, 0, 0, 0, "x" },
	{ "{\"jsonrpc\":\"2.0\",\"id\":123456789012345678901234567890,\"method\":\"big\"}", 1, AGENT_MSG_REQUEST, 0, 1, 0, 0, 0, "big" },
	{ "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"},{\"jsonrpc\":\"2.0\",\"method\":\"n\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":0}]", 1, AGENT_MSG_BATCH, 0, 1, 1, 0, 0, "a" },
	{ "  \n{\"jsonrpc\":\"2.0\",\n\"id\":1,\"method\":\"ping\"}\r\n", 1, AGENT_MSG_REQUEST, 0, 1, 0, 0, 0, "ping" },
	{ "not json", 0, AGENT_MSG_INVALID, -32700, 0, 0, 0, 0, NULL },
	{ "", 0, AGENT_MSG_INVALID, -32700, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\"", 0, AGENT_MSG_INVALID, -32700, 0, 0, 0, 0, NULL },
	{ "{\"id\":1,\"method\":\"ping\"}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"x\"}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"result\":1}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"id\":1}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "{\"jsonrpc\":\"2.0\",\"result\":1}", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "[]", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "[1]", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "\"str\"", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
	{ "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"},{\"id\":2}]", 0, AGENT_MSG_INVALID, -32600, 0, 0, 0, 0, NULL },
};

int
main(void)
{
	struct agent_msg m;
	struct buf b;
	char err[256];
	json_t *id;
	size_t i;
	int code;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct msg_case *c = &cases[i];
		int rc = agent_msg_parse(c->in, strlen(c->in), &m, &code, err, sizeof(err));

		if ((rc == 0) != c->ok)
			fprintf(stderr, "case %zu: rc %d (%s)\n", i, rc, err);
		CHECK((rc == 0) == c->ok);
		if (rc == 0) {
			CHECK(m.kind == c->kind);
			CHECK(json_array_size(m.request_ids) == c->nreq);
			CHECK(json_array_size(m.response_ids) == c->nresp);
			CHECK(m.initialize == c->init);
			CHECK(m.initialized == c->inited);
			CHECK(c->method == NULL ? m.method == NULL :
			    m.method != NULL && strcmp(m.method, c->method) == 0);
		} else {
			CHECK(code == c->code);
			CHECK(err[0] != '\0');
		}
		agent_msg_free(&m);
	}
	/* The id of an invalid message is kept for the error answer. */
	CHECK(agent_msg_parse("{\"id\":42,\"method\":\"x\"}", 22, &m, &code, err, sizeof(err)) == -1);
	CHECK(json_integer_value(m.id) == 42);
	agent_msg_free(&m);
	/* Ids match by value and type; a huge integer is read as a double. */
	CHECK(agent_msg_parse(cases[7].in, strlen(cases[7].in), &m, &code, err, sizeof(err)) == 0);
	CHECK(json_is_real(m.id));
	agent_msg_free(&m);
	CHECK(agent_msg_parse(cases[8].in, strlen(cases[8].in), &m, &code, err, sizeof(err)) == 0);
	id = json_integer(1);
	CHECK(agent_msg_id_index(m.request_ids, id) == 0);
	json_decref(id);
	id = json_string("1");
	CHECK(agent_msg_id_index(m.request_ids, id) == -1);
	json_decref(id);
	id = json_integer(2);
	CHECK(agent_msg_id_index(m.response_ids, id) == 0);
	CHECK(agent_msg_id_index(NULL, id) == -1);
	CHECK(agent_msg_id_index(m.response_ids, NULL) == -1);
	json_decref(id);
	agent_msg_free(&m);

	/* protocolVersion of the answer to initialize, single and in a batch */
	{
		const char *r = "{\"jsonrpc\":\"2.0\",\"id\":\"i\",\"result\":{\"protocolVersion\":\"2025-06-18\"}}";
		const char *rb = "[{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}},{\"jsonrpc\":\"2.0\",\"id\":\"i\",\"result\":{\"protocolVersion\":\"2025-11-25\"}}]";
		json_t *iid = json_string("i"), *other = json_string("j");

		CHECK(agent_msg_parse(r, strlen(r), &m, &code, err, sizeof(err)) == 0);
		CHECK_STR(agent_msg_protocol_version(&m, iid), "2025-06-18");
		CHECK(agent_msg_protocol_version(&m, other) == NULL);
		CHECK(agent_msg_protocol_version(&m, NULL) == NULL);
		agent_msg_free(&m);
		CHECK(agent_msg_parse(rb, strlen(rb), &m, &code, err, sizeof(err)) == 0);
		CHECK_STR(agent_msg_protocol_version(&m, iid), "2025-11-25");
		agent_msg_free(&m);
		json_decref(iid);
		json_decref(other);
	}

	/* One line: structural CR/LF become spaces, one LF at the end. */
	buf_init(&b);
	CHECK(agent_msg_line("{\n\"a\":\r\n1}\n\n  ", 14, &b) == 0);
	CHECK_STR(buf_str(&b), "{ \"a\":  1}\n");
	buf_reset(&b);
	CHECK(agent_msg_line("{}", 2, &b) == 0);
	CHECK_STR(buf_str(&b), "{}\n");
	buf_reset(&b);
	CHECK(agent_msg_line("{\"s\":\"a\\nb\"}", 12, &b) == 0);
	CHECK_STR(buf_str(&b), "{\"s\":\"a\\nb\"}\n");
	buf_reset(&b);
	/* error lines */
	id = json_integer(5);
	CHECK(agent_msg_error_line(id, -32003, "gone\nnow", &b) == 0);
	CHECK(strchr(b.p, '\n') == b.p + b.len - 1);
	CHECK(agent_msg_parse(b.p, b.len, &m, &code, err, sizeof(err)) == 0);
	CHECK(m.kind == AGENT_MSG_RESPONSE && json_integer_value(m.id) == 5);
	agent_msg_free(&m);
	buf_reset(&b);
	CHECK(agent_msg_error_line(NULL, -32700, "bad", &b) == 0);
	CHECK(strstr(b.p, "\"id\":null") != NULL);
	json_decref(id);
	buf_reset(&b);
	/* id replacement for replaying initialize */
	CHECK(agent_msg_parse(cases[1].in, strlen(cases[1].in), &m, &code, err, sizeof(err)) == 0);
	id = json_string("certgate-agent-reinit-1");
	CHECK(agent_msg_with_id(&m, id, &b) == 0);
	CHECK(strstr(b.p, "\"id\":\"certgate-agent-reinit-1\"") != NULL);
	CHECK(strstr(b.p, "\"method\":\"initialize\"") != NULL);
	CHECK(strchr(b.p, '\n') == NULL);
	CHECK(json_is_string(m.id) && strcmp(json_string_value(m.id), "x") == 0);
	agent_msg_free(&m);
	CHECK(agent_msg_parse(cases[2].in, strlen(cases[2].in), &m, &code, err, sizeof(err)) == 0);
	CHECK(agent_msg_with_id(&m, id, &b) == -1);
	agent_msg_free(&m);
	json_decref(id);
	buf_free(&b);
	for (i = 0; i < sizeof(unmapped) / sizeof(unmapped[0]); i++) {
		int got = agent_msg_unmapped(unmapped[i].in, strlen(unmapped[i].in));

		if (got != unmapped[i].want)
			fprintf(stderr, "unmapped case %zu: got %d\n", i, got);
		CHECK(got == unmapped[i].want);
	}
	/* the body the gateway makes for its refusal */
	{
		char *body = mcp_error_body(NULL, MCP_ERR_FORBIDDEN, "certgate: "
		    MCP_REASON_UNMAPPED);

		CHECK(body != NULL && agent_msg_unmapped(body, strlen(body)) == 1);
		free(body);
	}
	CHECK(agent_msg_unmapped(NULL, 0) == 0);
	CHECK_DONE();
}
