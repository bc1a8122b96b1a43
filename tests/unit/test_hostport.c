/* hostport.h: HOST:PORT and http(s) URLs as certgate.json writes them, and child.h's
 * PATH lookup. Table-driven: each row is an input and what must come out of it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "child.h"
#include "hostport.h"

static const struct { const char *in, *host; int port; } hostports[] = {
	{ "127.0.0.1:8443", "127.0.0.1", 8443 },
	{ "localhost:1", "localhost", 1 },
	{ "gw_1.example.com:65535", "gw_1.example.com", 65535 },
	{ "[::1]:8443", "::1", 8443 },
	{ "[fe80::1]:80", "fe80::1", 80 },
	{ "127.0.0.1", NULL, 0 },              /* port missing */
	{ "127.0.0.1:", NULL, 0 },
	{ "127.0.0.1:0", NULL, 0 },
	{ "127.0.0.1:65536", NULL, 0 },
	{ "127.0.0.1:123456", NULL, 0 },
	{ "127.0.0.1:8a", NULL, 0 },
	{ "::1:8443", NULL, 0 },               /* IPv6 without brackets */
	{ "[::1]8443", NULL, 0 },
	{ "[nothex]:8443", NULL, 0 },
	{ "[]:8443", NULL, 0 },
	{ ":8443", NULL, 0 },
	{ "bad host:8443", NULL, 0 },
	{ "h/x:8443", NULL, 0 },
};

static const struct { const char *in, *host, *path; int port, tls; } urls[] = {
	{ "http://127.0.0.1:9000/mcp", "127.0.0.1", "/mcp", 9000, 0 },
	{ "https://up.example.com/mcp/v1", "up.example.com", "/mcp/v1", 443, 1 },
	{ "HTTP://h", "h", "/", 80, 0 },
	{ "https://[::1]:8443/", "::1", "/", 8443, 1 },
	{ "https://[::1]/x", "::1", "/x", 443, 1 },
	{ "ftp://h/x", NULL, NULL, 0, 0 },
	{ "h:80/x", NULL, NULL, 0, 0 },
	{ "http://h/x?q=1", NULL, NULL, 0, 0 },
	{ "http://h/x#f", NULL, NULL, 0, 0 },
	{ "http://user:pw@h/x", NULL, NULL, 0, 0 },
	{ "http://h:0/x", NULL, NULL, 0, 0 },
	{ "http://[::1/x", NULL, NULL, 0, 0 },
	{ "http://[::1]x/", NULL, NULL, 0, 0 },
	{ "http:///x", NULL, NULL, 0, 0 },
};

static const struct { const char *in, *host; int port, db; } redis[] = {
	{ "redis://127.0.0.1:6380/2", "127.0.0.1", 6380, 2 },
	{ "redis://r.example", "r.example", 6379, 0 },
	{ "redis://r:1/", "r", 1, 0 },
	{ "redis://[::1]:7000/15", "::1", 7000, 15 },
	{ "redis://[::1]", "::1", 6379, 0 },
	{ "rediss://h:1", NULL, 0, 0 },
	{ "http://h:1", NULL, 0, 0 },
	{ "redis://", NULL, 0, 0 },
	{ "redis://:6379", NULL, 0, 0 },
	{ "redis://h:0", NULL, 0, 0 },
	{ "redis://h:99999", NULL, 0, 0 },
	{ "redis://h/x", NULL, 0, 0 },
	{ "redis://h/-1", NULL, 0, 0 },
	{ "redis://h/10001", NULL, 0, 0 },
	{ "redis://h/1/2", NULL, 0, 0 },
	{ "redis://pw@h", NULL, 0, 0 },
	{ "redis://::1:6379", NULL, 0, 0 },
};

int
main(void)
{
	const char *why;
	char *host, *r;
	struct hostport_url u;
	uint16_t port;
	size_t i;
	char *env[] = { "A=1", "PATH=/nowhere:/bin", NULL };

	for (i = 0; i < sizeof(hostports) / sizeof(hostports[0]); i++) {
		host = strdup("old");
		port = 7;
		why = NULL;
		if (hostports[i].host != NULL) {
			CHECK(hostport_parse(hostports[i].in, &host, &port, &why) == 0);
			CHECK_STR(host, hostports[i].host);
			CHECK(port == hostports[i].port);
		} else {
			CHECK(hostport_parse(hostports[i].in, &host, &port, &why) == -1);
			CHECK(why != NULL && *why != '\0');
			CHECK_STR(host, "old");    /* nothing changed on failure */
			CHECK(port == 7);
		}
		free(host);
	}
	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		memset(&u, 0, sizeof(u));
		why = NULL;
		if (urls[i].host != NULL) {
			CHECK(hostport_parse_url(urls[i].in, &u, &why) == 0);
			CHECK_STR(u.host, urls[i].host);
			CHECK_STR(u.path, urls[i].path);
			CHECK(u.port == urls[i].port);
			CHECK(u.tls == urls[i].tls);
		} else {
			CHECK(hostport_parse_url(urls[i].in, &u, &why) == -1);
			CHECK(why != NULL && *why != '\0');
		}
		hostport_url_free(&u);
	}

	for (i = 0; i < sizeof(redis) / sizeof(redis[0]); i++) {
		int db = -7;

		host = NULL;
		port = 7;
		why = NULL;
		if (redis[i].host != NULL) {
			CHECK(hostport_parse_redis(redis[i].in, &host, &port, &db, &why) == 0);
			CHECK_STR(host, redis[i].host);
			CHECK(port == redis[i].port);
			CHECK(db == redis[i].db);
		} else {
			CHECK(hostport_parse_redis(redis[i].in, &host, &port, &db, &why) == -1);
			CHECK(why != NULL && *why != '\0');
			CHECK(host == NULL && port == 7 && db == -7);
		}
		free(host);
	}

	/* child.h: the environment lookup and the PATH walk both the config check and
	 * the spawn use */
	CHECK_STR(child_env_get(env, "PATH"), "/nowhere:/bin");
	CHECK(child_env_get(env, "PAT") == NULL);
	CHECK(child_env_get(NULL, "PATH") == NULL);
	CHECK((r = child_resolve("sh", "/nowhere:/bin")) != NULL && strcmp(r, "/bin/sh") == 0);
	free(r);
	CHECK(child_resolve("certgate-no-such-program", "/bin:/usr/bin") == NULL);
	CHECK((r = child_resolve("./rel/prog", "/bin")) != NULL && strcmp(r, "./rel/prog") == 0);
	free(r);
	CHECK(child_resolve("sh", "relative:dirs") == NULL);   /* only absolute dirs */
	CHECK_DONE();
}
