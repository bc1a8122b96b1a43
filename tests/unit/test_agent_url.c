/* agent_url.c: gateway URLs, listen addresses, the loopback checks on Host and
 * Origin (tables). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "agent_url.h"
#include "check.h"

struct url_case {
	const char *url;
	int ok;
	const char *origin, *host, *path;
	int port;
};

static const struct url_case urls[] = {
	{ "https://127.0.0.1:8443/mcp", 1, "https://127.0.0.1:8443", "127.0.0.1", "/mcp", 8443 },
	{ "https://gw.example/mcp?x=1", 1, "https://gw.example:443", "gw.example", "/mcp?x=1", 443 },
	{ "https://gw.example", 1, "https://gw.example:443", "gw.example", "/", 443 },
	{ "https://[::1]:9/a/b", 1, "https://[::1]:9", "::1", "/a/b", 9 },
	{ "HTTPS://Gw.Example:1/", 1, "https://Gw.Example:1", "Gw.Example", "/", 1 },
	{ "http://127.0.0.1:8443/mcp", 0, NULL, NULL, NULL, 0 },
	{ "https://user:pw@gw.example/", 0, NULL, NULL, NULL, 0 },
	{ "https://gw.example/#frag", 0, NULL, NULL, NULL, 0 },
	{ "gw.example:8443", 0, NULL, NULL, NULL, 0 },
	{ "", 0, NULL, NULL, NULL, 0 },
	{ "https://", 0, NULL, NULL, NULL, 0 },
	{ "ftp://x/", 0, NULL, NULL, NULL, 0 },
};

struct addr_case {
	const char *s;
	int ok, loopback;
};

static const struct addr_case addrs[] = {
	{ "127.0.0.1:8081", 1, 1 },
	{ "127.1.2.3:1", 1, 1 },
	{ "localhost:8081", 1, 1 },
	{ "LOCALHOST:8081", 1, 1 },
	{ "[::1]:8081", 1, 1 },
	{ "::1:8081", 1, 1 },
	{ "[::ffff:127.0.0.1]:80", 1, 1 },
	{ "0.0.0.0:8081", 1, 0 },
	{ "10.1.2.3:8081", 1, 0 },
	{ "[::]:8081", 1, 0 },
	{ "128.0.0.1:8081", 1, 0 },
	{ "127.0.0.1", 0, 0 },
	{ "127.0.0.1:", 0, 0 },
	{ "127.0.0.1:0", 0, 0 },
	{ "127.0.0.1:65536", 0, 0 },
	{ "127.0.0.1:80x", 0, 0 },
	{ ":8081", 0, 0 },
	{ "example.com:8081", 0, 0 },
	{ "[]:80", 0, 0 },
};

struct host_case {
	const char *v;
	int host, origin;   /* as a Host value, as an Origin value */
};

static const struct host_case hosts[] = {
	{ "127.0.0.1:8081", 1, 0 },
	{ "127.0.0.1", 1, 0 },
	{ "localhost:8081", 1, 0 },
	{ "[::1]:8081", 1, 0 },
	{ "[::1]", 1, 0 },
	{ "127.9.9.9", 1, 0 },
	{ "evil.example:8081", 0, 0 },
	{ "localhost.evil.example", 0, 0 },
	{ "127.0.0.1.nip.io", 0, 0 },
	{ "127.0.0.1:80x", 0, 0 },
	{ "127.0.0.1:", 0, 0 },
	{ "[::1", 0, 0 },
	{ "[::2]:80", 0, 0 },
	{ "", 0, 0 },
	{ "http://localhost:6274", 0, 1 },
	{ "http://127.0.0.1:3000", 0, 1 },
	{ "https://[::1]:3000", 0, 1 },
	{ "http://localhost", 0, 1 },
	{ "https://evil.example", 0, 0 },
	{ "http://localhost.evil.example", 0, 0 },
	{ "http://localhost:6274/path", 0, 0 },
	{ "http://user@localhost:6274", 0, 0 },
	{ "null", 0, 0 },
	{ "file://", 0, 0 },
	{ "chrome-extension://abc", 0, 0 },
};

int
main(void)
{
	struct sockaddr_storage ss;
	struct agent_url u;
	socklen_t sl;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		int rc = agent_url_parse(urls[i].url, &u, err, sizeof(err));

		if ((rc == 0) != urls[i].ok)
			fprintf(stderr, "url case %zu: rc %d %s\n", i, rc, err);
		CHECK((rc == 0) == urls[i].ok);
		if (rc == 0) {
			CHECK_STR(u.origin, urls[i].origin);
			CHECK_STR(u.host, urls[i].host);
			CHECK_STR(u.path, urls[i].path);
			CHECK(u.port == urls[i].port);
		} else
			CHECK(err[0] != '\0');
		agent_url_free(&u);
	}
	for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		int rc = agent_url_listen_addr(addrs[i].s, &ss, &sl, err, sizeof(err));

		if ((rc == 0) != addrs[i].ok)
			fprintf(stderr, "addr case %zu: rc %d %s\n", i, rc, err);
		CHECK((rc == 0) == addrs[i].ok);
		if (rc == 0)
			CHECK(agent_url_sockaddr_loopback((struct sockaddr *)&ss) == addrs[i].loopback);
	}
	CHECK(agent_url_listen_addr("127.0.0.1:8081", &ss, &sl, err, sizeof(err)) == 0);
	CHECK(ss.ss_family == AF_INET && sl == sizeof(struct sockaddr_in));
	CHECK(ntohs(((struct sockaddr_in *)&ss)->sin_port) == 8081);
	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		if (agent_url_host_loopback(hosts[i].v) != hosts[i].host ||
		    agent_url_origin_loopback(hosts[i].v) != hosts[i].origin)
			fprintf(stderr, "host case %zu (%s)\n", i, hosts[i].v);
		CHECK(agent_url_host_loopback(hosts[i].v) == hosts[i].host);
		CHECK(agent_url_origin_loopback(hosts[i].v) == hosts[i].origin);
	}
	CHECK(agent_url_host_loopback(NULL) == 0);
	CHECK(agent_url_origin_loopback(NULL) == 0);
	CHECK_DONE();
}
