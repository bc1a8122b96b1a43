/* head.h: which received fields are forwarded, and the heads certgate writes. The
 * identity headers (XFCC, RFC 9440) a client sends never reach the upstream in any
 * spelling; those certgate sets appear once, as configured. Table-driven. */
#include <string.h>

#include <http_parser.h>

#include "buf.h"
#include "check.h"
#include "head.h"
#include "http.h"

static struct http_header hdrs[] = {
	{ "Content-Type", "application/json" },
	{ "Client-Cert", ":ZXZpbA==:" },
	{ "client-cert-chain", ":ZXZpbA==:" },
	{ "Client_Cert", ":eA==:" },
	{ "X-Forwarded-Client-Cert", "Hash=evil" },
	{ "x_agent_id", "admin" },
	{ "Connection", "keep-alive, X-Custom" },
	{ "X-Custom", "hop" },
	{ "Accept", "application/json, text/event-stream" },
	{ "Mcp-Session-Id", "abc" },
	{ "Transfer-Encoding", "chunked" },
	{ "Proxy-Authorization", "x" },
};

static const struct { const char *name; int up, down; } drops[] = {
	{ "Client-Cert", 1, 0 }, { "CLIENT-CERT-CHAIN", 1, 0 }, { "client_cert", 1, 0 },
	{ "X-Forwarded-Client-Cert", 1, 0 }, { "X-Agent-Id", 1, 0 }, { "X_Agent_Scopes", 1, 0 },
	{ "X-Forwarded-For", 1, 0 }, { "Forwarded", 1, 0 }, { "Host", 1, 0 },
	{ "Accept-Encoding", 1, 0 }, { "Connection", 1, 1 }, { "X-Custom", 1, 1 },
	{ "Transfer-Encoding", 1, 1 }, { "Content-Length", 1, 1 }, { "Proxy-Foo", 1, 1 },
	{ "Strict-Transport-Security", 0, 1 }, { "Mcp-Session-Id", 0, 0 },
	{ "Content-Type", 0, 0 }, { "Accept", 0, 0 },
};

static size_t
count(const char *s, const char *needle)
{
	size_t n = 0;

	for (; (s = strstr(s, needle)) != NULL; s++)
		n++;
	return n;
}

int
main(void)
{
	struct http_msg m = { .is_request = 1, .method = HTTP_POST, .method_str = "POST",
	    .url = "/mcp", .major = 1, .minor = 1, .h = hdrs,
	    .nh = sizeof(hdrs) / sizeof(hdrs[0]), .content_length = -1 };
	struct head_ident id = { .agent = "a1", .scopes = "tools:*", .xfcc = "Hash=ab",
	    .client_cert = ":AAEC:", .client_cert_chain = ":AwQ=:, :BQY=:",
	    .peer_ip = "192.0.2.7" };
	struct buf b;
	const char *s;
	size_t i;

	for (i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
		if (head_drop(&m, drops[i].name, HEAD_TO_UPSTREAM) != drops[i].up ||
		    head_drop(&m, drops[i].name, HEAD_TO_CLIENT) != drops[i].down) {
			CHECK(!"head_drop");
			fprintf(stderr, "  %s: expected up %d down %d\n", drops[i].name,
			    drops[i].up, drops[i].down);
		}
	}

	/* both forms */
	buf_init(&b);
	CHECK(head_request(&b, &m, "/mcp", "up:80", &id, 2) == 0);
	s = buf_str(&b);
	CHECK(strncmp(s, "POST /mcp HTTP/1.1\r\nHost: up:80\r\n", 33) == 0);
	CHECK(strstr(s, "\r\nClient-Cert: :AAEC:\r\n") != NULL);
	CHECK(strstr(s, "\r\nClient-Cert-Chain: :AwQ=:, :BQY=:\r\n") != NULL);
	CHECK(strstr(s, "\r\nX-Forwarded-Client-Cert: Hash=ab\r\n") != NULL);
	CHECK(strstr(s, "\r\nX-Agent-Id: a1\r\n") != NULL);
	CHECK(strstr(s, "\r\nX-Forwarded-For: 192.0.2.7\r\n") != NULL);
	CHECK(strstr(s, "evil") == NULL && strstr(s, ":eA==:") == NULL);
	CHECK(strstr(s, "admin") == NULL && strstr(s, "X-Custom") == NULL);
	CHECK(strstr(s, "chunked") == NULL && strstr(s, "Proxy-") == NULL);
	CHECK(count(s, "\nClient-Cert:") == 1 && count(s, "\nClient-Cert-Chain:") == 1);
	CHECK(strstr(s, "\r\nContent-Length: 2\r\n\r\n") != NULL);
	CHECK(strstr(s, "\r\nMcp-Session-Id: abc\r\n") != NULL);
	buf_free(&b);

	/* xfcc only (the default): no RFC 9440 fields */
	id.client_cert = id.client_cert_chain = NULL;
	buf_init(&b);
	CHECK(head_request(&b, &m, "/mcp", "up:80", &id, 0) == 0);
	s = buf_str(&b);
	CHECK(strstr(s, "\nClient-Cert") == NULL);
	CHECK(count(s, "X-Forwarded-Client-Cert:") == 1);
	CHECK(strstr(s, "\r\nContent-Length: 0\r\n") != NULL);     /* POST always has one */
	buf_free(&b);

	/* rfc9440 only, no chain (a resumed session whose CA left the store): no
	 * Client-Cert-Chain, and never a chain without Client-Cert */
	id.xfcc = NULL;
	id.client_cert = ":AAEC:";
	id.client_cert_chain = "";
	buf_init(&b);
	CHECK(head_request(&b, &m, "/mcp", "up:80", &id, 0) == 0);
	s = buf_str(&b);
	CHECK(strstr(s, "X-Forwarded-Client-Cert") == NULL);
	CHECK(count(s, "\nClient-Cert:") == 1 && strstr(s, "Client-Cert-Chain") == NULL);
	buf_free(&b);
	id.client_cert = NULL;
	id.client_cert_chain = ":AwQ=:";
	buf_init(&b);
	CHECK(head_request(&b, &m, "/mcp", "up:80", &id, 0) == 0);
	CHECK(strstr(buf_str(&b), "Client-Cert") == NULL);
	buf_free(&b);

	/* values from certificates cannot split the head */
	id.client_cert = ":A\r\nX-Agent-Id: root:";
	buf_init(&b);
	CHECK(head_request(&b, &m, "/mcp", "up:80", &id, 0) == 0);
	CHECK(count(buf_str(&b), "\nX-Agent-Id:") == 1 && count(buf_str(&b), "\r\n") == 12);
	buf_free(&b);
	CHECK_DONE();
}
