/* Addresses as certgate.json writes them: "HOST:PORT", "[V6]:PORT" and
 * http[s]://host[:port][/path]. Lexical only (no name resolution, no I/O),
 * thread-safe. Errors come back as a short static reason in *why, which the config
 * loader prefixes with the file, line and key. */
#ifndef CERTGATE_HOSTPORT_H
#define CERTGATE_HOSTPORT_H
#include <stdint.h>

struct hostport_url {
	char *host;     /* without brackets, malloc'd */
	char *path;     /* "/" when the URL has none, malloc'd */
	uint16_t port;  /* the URL's, else 443 for https and 80 for http */
	int tls;        /* 1 for https */
};

/* Parses "HOST:PORT" or "[V6]:PORT" (host names: letters, digits, '-', '.', '_';
 * ports 1-65535). On success replaces *host (freeing the old one) and sets *port;
 * returns 0, or -1 with *why set and nothing changed. */
int hostport_parse(const char *s, char **host, uint16_t *port, const char **why);

/* Parses an http:// or https:// URL without user info, query or fragment into u
 * (which it fills; free with hostport_url_free). Returns 0, or -1 with *why. */
int hostport_parse_url(const char *url, struct hostport_url *u, const char **why);
void hostport_url_free(struct hostport_url *u);

/* Parses "redis://HOST[:PORT][/DB]" (port default 6379, DB 0..10000, default 0) into
 * a malloc'd *host, *port and *db. Returns 0, or -1 with *why and nothing set. */
int hostport_parse_redis(const char *url, char **host, uint16_t *port, int *db,
    const char **why);

#endif
