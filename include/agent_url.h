/* URLs and addresses for certgate agent: the gateway URLs given on the command line
 * (parsed with libcurl's URL API, the same parser that later connects), the
 * listener address of `agent listen`, and the loopback checks on Host and Origin
 * that keep web pages in a local browser from using the listener (DNS rebinding,
 * cross-site requests). Pure (no I/O, no name resolution), thread-safe. */
#ifndef CERTGATE_AGENT_URL_H
#define CERTGATE_AGENT_URL_H
#include <stddef.h>
#include <sys/socket.h>

struct agent_url {
	char *origin;   /* "https://host:port" (port always written), malloc'd */
	char *host;     /* host as written, without brackets, malloc'd */
	char *path;     /* path and query, at least "/", malloc'd */
	int port;
};

/* Parses an https:// URL of a gateway into u (zeroed first). Plain http, user
 * names, passwords and fragments are refused. Returns 0, or -1 with a message in err.
 * Free u with agent_url_free either way. */
int agent_url_parse(const char *url, struct agent_url *u, char *err, size_t errlen);
void agent_url_free(struct agent_url *u);

/* Parses a listen address "HOST:PORT" ("127.0.0.1:8080", "[::1]:8080",
 * "localhost:8080" which means 127.0.0.1) into *ss and *sslen. Names other than
 * localhost are refused (no resolution here). Returns 0 or -1 with err. */
int agent_url_listen_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
    char *err, size_t errlen);

/* 1 when sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
int agent_url_sockaddr_loopback(const struct sockaddr *sa);

/* 1 when the value of a Host header names a loopback host (127.x.y.z, localhost,
 * [::1], any port): a name that only resolves to loopback, as in DNS rebinding,
 * does not count. */
int agent_url_host_loopback(const char *host);

/* 1 when the value of an Origin header is an http or https origin on a loopback
 * host (a local tool's web UI); 0 for anything else, "null" included. */
int agent_url_origin_loopback(const char *origin);

#endif
