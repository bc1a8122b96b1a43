/* Fuzz target: JSON-RPC messages as the stdio bridge reads them (agent_msg.c). Any
 * input: the classification is consistent, its one-line framing has exactly one LF
 * (at the end) and no CR, the error answer made for it is itself a valid
 * single-line response, and only a JSON-RPC response is ever taken for the gateway's
 * refusal of an unmapped certificate. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_msg m, e;
	struct buf line, err1;
	char err[256];
	int code, rc;

	rc = agent_msg_parse((const char *)data, size, &m, &code, err, sizeof(err));
	if (rc == 0) {
		if (m.kind == AGENT_MSG_INVALID || m.root == NULL)
			abort();
		if (m.kind == AGENT_MSG_REQUEST && json_array_size(m.request_ids) != 1)
			abort();
		if (m.kind == AGENT_MSG_RESPONSE && json_array_size(m.response_ids) != 1)
			abort();
		if (m.kind == AGENT_MSG_NOTIFICATION && (json_array_size(m.request_ids) ||
		    json_array_size(m.response_ids) || m.method == NULL))
			abort();
	} else if ((code != -32700 && code != -32600) || err[0] == '\0')
		abort();
	buf_init(&line);
	if (agent_msg_line((const char *)data, size, &line) == 0) {
		if (line.len == 0 || line.p[line.len - 1] != '\n' ||
		    memchr(line.p, '\n', line.len - 1) != NULL ||
		    memchr(line.p, '\r', line.len) != NULL)
			abort();
	}
	buf_free(&line);
	buf_init(&err1);
	if (agent_msg_error_line(m.id, code, err, &err1) == 0) {
		if (memchr(err1.p, '\n', err1.len - 1) != NULL)
			abort();
		if (agent_msg_parse(err1.p, err1.len, &e, &code, err, sizeof(err)) != 0 ||
		    e.kind != AGENT_MSG_RESPONSE)
			abort();
		agent_msg_free(&e);
	}
	buf_free(&err1);
	if (agent_msg_unmapped((const char *)data, size) && (rc != 0 ||
	    m.kind != AGENT_MSG_RESPONSE))
		abort();
	agent_msg_free(&m);
	return 0;
}
