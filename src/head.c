/* Message heads (head.h). */
#include "head.h"

#include <string.h>
#include <strings.h>

#include <http_parser.h>

/* Never forwarded, either way: hop-by-hop and framing. */
static const char *const head_hop[] = {
	"Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length", "Proxy-Connection", NULL
};
/* Not forwarded to the upstream: set by certgate (Host, identity), or meant for
 * certgate only (Expect is answered here; Accept-Encoding is dropped so listing
 * responses arrive unencoded and can be filtered). */
static const char *const head_up[] = {
	"Host", "Expect", "Accept-Encoding", NULL
};
static const char *const head_ident[] = {
	"X-Agent-Id", "X-Agent-Scopes", "X-Forwarded-Client-Cert", "X-Forwarded-For",
	"Forwarded", "X-Real-IP", "Client-Cert", "Client-Cert-Chain", NULL
};
/* Not forwarded to the client: set by certgate. */
static const char *const head_down[] = {
	"Strict-Transport-Security", NULL
};

static int
head_in(const char *const *tab, const char *name)
{
	for (; *tab != NULL; tab++)
		if (strcasecmp(name, *tab) == 0)
			return 1;
	return 0;
}

/* 1 when name is listed in one of m's Connection headers. */
static int
head_conn_listed(const struct http_msg *m, const char *name)
{
	size_t i, n = strlen(name);
	const char *p, *e;

	for (i = 0; i < m->nh; i++) {
		if (strcasecmp(m->h[i].name, "Connection") != 0)
			continue;
		for (p = m->h[i].value; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			for (e = p; *e != '\0' && *e != ','; e++)
				;
			while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if ((size_t)(e - p) == n && strncasecmp(p, name, n) == 0)
				return 1;
			while (*e != '\0' && *e != ',')
				e++;
		}
	}
	return 0;
}

/* conn: m has a Connection header (computed once per head, not once per field) */
static int
head_drop_conn(const struct http_msg *m, const char *name, enum head_dir dir, int conn)
{
	size_t i;

	if (head_in(head_hop, name) || strncasecmp(name, "Proxy-", 6) == 0 ||
	    strncasecmp(name, "Proxy_", 6) == 0)
		return 1;
	if (dir == HEAD_TO_UPSTREAM) {
		if (head_in(head_up, name))
			return 1;
		for (i = 0; head_ident[i] != NULL; i++)
			if (http_name_eq(name, head_ident[i]))
				return 1;
	} else if (head_in(head_down, name))
		return 1;
	return conn && head_conn_listed(m, name);
}

int
head_drop(const struct http_msg *m, const char *name, enum head_dir dir)
{
	return head_drop_conn(m, name, dir, http_msg_count(m, "Connection") > 0);
}

static void
head_field(struct buf *b, const char *name, const char *value)
{
	buf_adds(b, name);
	buf_add(b, ": ", 2);
	buf_adds(b, value);
	buf_add(b, "\r\n", 2);
}

/* "name: value" with control characters replaced: values we add come from
 * certificates and the identity map and must not split the head. */
static void
head_field_safe(struct buf *b, const char *name, const char *value)
{
	const unsigned char *v, *start;

	buf_adds(b, name);
	buf_add(b, ": ", 2);
	start = (const unsigned char *)(value != NULL ? value : "");
	for (v = start; *v != '\0'; v++) {
		if (*v >= 0x20 && *v != 0x7f)
			continue;
		buf_add(b, start, (size_t)(v - start));
		buf_addc(b, '?');
		start = v + 1;
	}
	buf_add(b, start, (size_t)(v - start));
	buf_add(b, "\r\n", 2);
}

int
head_request(struct buf *b, const struct http_msg *m, const char *target,
    const char *hostport, const struct head_ident *id, long long body_len)
{
	int conn = http_msg_count(m, "Connection") > 0;
	size_t i;

	buf_adds(b, m->method_str);
	buf_addc(b, ' ');
	buf_adds(b, target);
	buf_add(b, " HTTP/1.1\r\nHost: ", 17);
	buf_adds(b, hostport);
	buf_add(b, "\r\n", 2);
	for (i = 0; i < m->nh; i++)
		if (!head_drop_conn(m, m->h[i].name, HEAD_TO_UPSTREAM, conn))
			head_field(b, m->h[i].name, m->h[i].value);
	head_field_safe(b, "X-Agent-Id", id->agent);
	head_field_safe(b, "X-Agent-Scopes", id->scopes);
	if (id->xfcc != NULL)
		head_field_safe(b, "X-Forwarded-Client-Cert", id->xfcc);
	if (id->client_cert != NULL) {
		head_field_safe(b, "Client-Cert", id->client_cert);
		/* RFC 9440 §2.3: never without Client-Cert, and only when not empty */
		if (id->client_cert_chain != NULL && id->client_cert_chain[0] != '\0')
			head_field_safe(b, "Client-Cert-Chain", id->client_cert_chain);
	}
	head_field_safe(b, "X-Forwarded-For", id->peer_ip);
	if (body_len > 0 || m->method == HTTP_POST) {
		buf_add(b, "Content-Length: ", 16);
		buf_addu(b, (unsigned long long)(body_len > 0 ? body_len : 0));
		buf_add(b, "\r\n", 2);
	}
	buf_add(b, "\r\n", 2);
	return buf_failed(b) ? -1 : 0;
}

int
head_response(struct buf *b, const struct http_msg *m, int hsts_max_age,
    enum head_framing framing, long long length, int keep, int client_http10)
{
	int conn = http_msg_count(m, "Connection") > 0;
	size_t i;

	buf_add(b, "HTTP/1.1 ", 9);
	buf_addu(b, (unsigned long long)m->status);
	buf_addc(b, ' ');
	buf_adds(b, http_status_text(m->status));
	buf_add(b, "\r\n", 2);
	for (i = 0; i < m->nh; i++)
		if (!head_drop_conn(m, m->h[i].name, HEAD_TO_CLIENT, conn))
			head_field(b, m->h[i].name, m->h[i].value);
	buf_add(b, "Strict-Transport-Security: max-age=", 35);
	buf_addu(b, (unsigned long long)(hsts_max_age > 0 ? hsts_max_age : 0));
	buf_add(b, "; includeSubDomains\r\n", 21);
	if (framing == HEAD_CHUNKED)
		buf_adds(b, "Transfer-Encoding: chunked\r\n");
	else if (framing == HEAD_LENGTH && length >= 0) {
		buf_add(b, "Content-Length: ", 16);
		buf_addu(b, (unsigned long long)length);
		buf_add(b, "\r\n", 2);
	}
	if (!keep)
		buf_adds(b, "Connection: close\r\n");
	else if (client_http10)
		buf_adds(b, "Connection: keep-alive\r\n");
	buf_add(b, "\r\n", 2);
	return buf_failed(b) ? -1 : 0;
}
