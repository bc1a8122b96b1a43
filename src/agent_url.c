/* URLs and addresses for certgate agent (see include/agent_url.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "agent_url.h"

void
agent_url_free(struct agent_url *u)
{
	if (u == NULL)
		return;
	free(u->origin);
	free(u->host);
	free(u->path);
	memset(u, 0, sizeof(*u));
}

int
agent_url_parse(const char *url, struct agent_url *u, char *err, size_t errlen)
{
	CURLU *h = NULL;
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	char *user = NULL, *frag = NULL;
	size_t n;
	int rv = -1;

	memset(u, 0, sizeof(*u));
	if ((h = curl_url()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK) {
		snprintf(err, errlen, "'%s' is not a URL (want https://HOST:PORT[/PATH])", url);
		goto fail;
	}
	if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    strcasecmp(scheme, "https") != 0) {
		snprintf(err, errlen, "'%s': the gateway is reached over https:// only", url);
		goto fail;
	}
	if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		snprintf(err, errlen, "'%s': no user name or password in the URL", url);
		goto fail;
	}
	if (curl_url_get(h, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
		snprintf(err, errlen, "'%s': no #fragment in the URL", url);
		goto fail;
	}
	if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		snprintf(err, errlen, "'%s': no host", url);
		goto fail;
	}
	if (curl_url_get(h, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
		query = NULL;
	u->port = atoi(port);
	n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		u->host = strndup(host + 1, n - 2);
		if (asprintf(&u->origin, "https://%s:%d", host, u->port) == -1)
			u->origin = NULL;
	} else {
		u->host = strdup(host);
		if (asprintf(&u->origin, "https://%s:%d", host, u->port) == -1)
			u->origin = NULL;
	}
	if (asprintf(&u->path, "%s%s%s", *path ? path : "/", query ? "?" : "",
	    query ? query : "") == -1)
		u->path = NULL;
	if (u->host == NULL || u->origin == NULL || u->path == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	rv = 0;
fail:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_free(user);
	curl_free(frag);
	curl_url_cleanup(h);
	return rv;
}

int
agent_url_listen_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
    char *err, size_t errlen)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char host[128];
	const char *colon, *h;
	char *end;
	size_t hl;
	long port;

	memset(ss, 0, sizeof(*ss));
	if ((colon = strrchr(s, ':')) == NULL || colon == s) {
		snprintf(err, errlen, "'%s': want HOST:PORT, e.g. 127.0.0.1:8081", s);
		return -1;
	}
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
		snprintf(err, errlen, "'%s': the port must be 1..65535", s);
		return -1;
	}
	h = s;
	hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		snprintf(err, errlen, "'%s': bad host", s);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (strcasecmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((unsigned short)port);
		*sslen = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
		*sslen = sizeof(*in6);
		return 0;
	}
	snprintf(err, errlen, "'%s': the host must be an IP address or localhost", s);
	return -1;
}

int
agent_url_sockaddr_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	const unsigned char *b;

	if (sa->sa_family == AF_INET)
		return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return 0;
	if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
		return 1;
	b = in6->sin6_addr.s6_addr;
	return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
}

/* 1 when host[0..n) is a loopback host as written in a URL authority. */
static int
agent_url_name_loopback(const char *host, size_t n)
{
	struct in_addr a4;
	struct in6_addr a6;
	char tmp[64];

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof(tmp))
			return 0;
		memcpy(tmp, host + 1, n - 2);
		tmp[n - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return 0;
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	}
	if (n == 0 || n >= sizeof(tmp))
		return 0;
	memcpy(tmp, host, n);
	tmp[n] = '\0';
	if (strcasecmp(tmp, "localhost") == 0 || strcasecmp(tmp, "localhost.") == 0)
		return 1;
	if (inet_pton(AF_INET, tmp, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return 0;
}

/* Length of the host part of an authority "host[:port]" ("[v6]:port" too), or
 * (size_t)-1 when the port part is not digits. */
static size_t
agent_url_authority_host(const char *a)
{
	const char *p, *colon;

	if (a[0] == '[') {
		if ((p = strchr(a, ']')) == NULL)
			return (size_t)-1;
		colon = p[1] == ':' ? p + 1 : NULL;
		if (p[1] != '\0' && colon == NULL)
			return (size_t)-1;
	} else
		colon = strchr(a, ':');
	if (colon == NULL)
		return strlen(a);
	for (p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return (size_t)-1;
	if (colon[1] == '\0')
		return (size_t)-1;
	return (size_t)(colon - a);
}

int
agent_url_host_loopback(const char *host)
{
	size_t n;

	if (host == NULL || (n = agent_url_authority_host(host)) == (size_t)-1)
		return 0;
	return agent_url_name_loopback(host, n);
}

int
agent_url_origin_loopback(const char *origin)
{
	const char *a;
	size_t n;

	if (origin == NULL)
		return 0;
	if (strncasecmp(origin, "http://", 7) == 0)
		a = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		a = origin + 8;
	else
		return 0;
	if (strpbrk(a, "/?#@") != NULL)
		return 0;
	if ((n = agent_url_authority_host(a)) == (size_t)-1)
		return 0;
	return agent_url_name_loopback(a, n);
}
